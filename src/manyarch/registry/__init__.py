"""OCI Distribution client on httpx: auth, blobs, manifests, tags, retries.

``RegistryClient`` speaks to registries; ``RegistryOptions`` holds every
default; ``load_insecure_hosts`` / ``load_registry_hosts`` read which
registries may use plain http (buildkitd.toml, daemon.json);
``run_parallel`` runs blob transfers side by side.
"""

from manyarch.registry.auth import Challenge, parse_challenge
from manyarch.registry.client import RegistryClient, api_host
from manyarch.registry.credentials import Credentials, lookup
from manyarch.registry.diagnostics import redact_url
from manyarch.registry.options import (
    RegistryHosts,
    RegistryOptions,
    is_loopback,
    load_insecure_hosts,
    load_registry_hosts,
)
from manyarch.registry.parallel import run_parallel

__all__ = [
    "Challenge",
    "Credentials",
    "RegistryClient",
    "RegistryHosts",
    "RegistryOptions",
    "api_host",
    "is_loopback",
    "load_insecure_hosts",
    "load_registry_hosts",
    "lookup",
    "parse_challenge",
    "redact_url",
    "run_parallel",
]
