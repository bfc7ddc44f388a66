"""Every default of the registry client in one place, and where insecure hosts come from.

Like go-containerregistry's ``remote/options.go``: one frozen value that the
client reads and that rejects conflicting choices when it is built.

Which registries may be spoken to without verified TLS:

* loopback registries (``localhost``, ``127.0.0.0/8``, ``::1``) always may
  use plain http — as docker and go-containerregistry allow;
* ``--insecure-registry HOST:PORT`` on the command line;
* buildkitd.toml ``[registry."HOST:PORT"]`` tables: ``http = true`` means
  plain http, ``insecure = true`` means https without certificate
  verification (and, as buildkit does, a fallback to plain http);
* the ``insecure-registries`` list of a docker ``daemon.json`` (names with
  ports, or CIDR ranges of IP addresses).
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from manyarch._version import __version__
from manyarch.errors import InvalidArgument, InvalidInput, ManyarchError

#: The host that ``docker.io`` references are pulled from.
DOCKER_HUB_API = "registry-1.docker.io"
#: The key docker.io credentials are stored under in ``config.json``.
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"


def _check_host(entry: str, what: str, error: type[ManyarchError] = InvalidArgument) -> str:
    entry = entry.strip()
    if "/" in entry and "://" not in entry:
        try:
            ipaddress.ip_network(entry, strict=False)
            return entry  # a CIDR range, as daemon.json allows
        except ValueError:
            pass
    if not entry or "://" in entry or "/" in entry.split("]")[-1]:
        raise error(
            f"invalid {what} {entry!r}",
            "write a registry as HOST or HOST:PORT, without scheme or path",
        )
    return entry


@dataclass(frozen=True)
class RegistryOptions:
    """Every knob of :class:`~manyarch.registry.RegistryClient`, with its default."""

    #: ``host[:port]`` entries (or CIDR ranges) that may use plain http.
    insecure: frozenset[str] = frozenset()
    #: ``host[:port]`` entries whose TLS certificate is not verified (they may also use http).
    skip_verify: frozenset[str] = frozenset()
    #: Blob transfers run in parallel.
    jobs: int = 4
    #: Attempts after the first one, for temporary failures.
    retries: int = 5
    #: First back-off delay in seconds; doubles at each retry, with jitter.
    backoff: float = 0.2
    #: Longest back-off delay (and longest ``Retry-After`` honoured), in seconds.
    backoff_max: float = 10.0
    #: Connect/write timeout of one request, and the idle timeout of a read
    #: (no byte at all for this long), in seconds.
    timeout: float = 60.0
    #: Slowest transfer accepted once an answer started, in bytes/s, averaged
    #: over :attr:`rate_window`: a registry dripping a byte every few seconds
    #: never trips the idle timeout, and would hold a pull for ever. 1 KiB/s is
    #: far below any working link (a 5 GB layer at 1 MiB/s passes), as git's
    #: ``http.lowSpeedLimit`` and curl's ``--speed-limit`` are.
    min_rate: int = 1024
    #: Seconds of reading over which :attr:`min_rate` is measured.
    rate_window: float = 30.0
    #: Size of one PATCH of a chunked upload.
    chunk_size: int = 16 * 2**20
    #: Blobs up to this size are uploaded in one PUT; larger ones in chunks.
    monolithic_max: int = 32 * 2**20
    #: Directory holding ``config.json``; default ``$DOCKER_CONFIG`` or ``~/.docker``.
    docker_config: Path | None = None
    #: Sent as ``User-Agent``.
    user_agent: str = f"manyarch/{__version__}"
    #: Resolve ``host.docker.internal`` to 127.0.0.1 when the system resolver does not know it.
    host_gateway: str = "127.0.0.1"

    def __post_init__(self) -> None:
        for name in ("insecure", "skip_verify"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise InvalidArgument(
                    f"RegistryOptions.{name} must be a set of hosts, not a string"
                )
            object.__setattr__(
                self, name, frozenset(_check_host(h, "insecure registry") for h in value)
            )
        if self.jobs < 1:
            raise InvalidArgument(f"jobs must be at least 1, not {self.jobs}")
        if self.retries < 0:
            raise InvalidArgument(f"retries cannot be negative ({self.retries})")
        if self.backoff <= 0 or self.backoff_max < self.backoff:
            raise InvalidArgument(
                f"back-off {self.backoff}s..{self.backoff_max}s is not a range",
                "the first delay must be positive and not above the longest one",
            )
        if self.timeout <= 0:
            raise InvalidArgument(f"timeout must be positive, not {self.timeout}")
        if self.min_rate < 0:
            raise InvalidArgument(f"the minimum rate cannot be negative ({self.min_rate})")
        if self.rate_window <= 0:
            raise InvalidArgument(f"the rate window must be positive, not {self.rate_window}")
        if self.chunk_size < 1:
            raise InvalidArgument(f"chunk size must be positive, not {self.chunk_size}")
        if self.monolithic_max < 0:
            raise InvalidArgument(f"monolithic_max cannot be negative ({self.monolithic_max})")

    def with_hosts(self, hosts: RegistryHosts) -> RegistryOptions:
        """A copy that also trusts the insecure hosts of a configuration file."""
        return replace(
            self,
            insecure=self.insecure | hosts.insecure,
            skip_verify=self.skip_verify | hosts.skip_verify,
        )

    def may_use_http(self, host: str) -> bool:
        """Whether plain http is allowed for ``host[:port]``."""
        return is_loopback(host) or _listed(host, self.insecure) or _listed(host, self.skip_verify)

    def verifies_tls(self, host: str) -> bool:
        """Whether the certificate of ``host[:port]`` is verified."""
        return not _listed(host, self.skip_verify)


@dataclass(frozen=True)
class RegistryHosts:
    """Insecure registries read from configuration files."""

    #: Hosts that speak plain http (buildkit ``http = true``, daemon.json).
    plain_http: frozenset[str] = frozenset()
    #: Hosts whose certificate is not verified (buildkit ``insecure = true``).
    skip_verify: frozenset[str] = frozenset()

    @property
    def insecure(self) -> frozenset[str]:
        """Every host that may use plain http."""
        return self.plain_http | self.skip_verify


def split_host(host: str) -> tuple[str, int | None]:
    """``("name", port)`` from ``name[:port]`` or ``[v6]:port``."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        return name, int(port) if port.isdigit() else None
    return host, None


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1, with or without a port."""
    name, _ = split_host(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _listed(host: str, entries: frozenset[str]) -> bool:
    if host in entries:
        return True
    name, _ = split_host(host)
    if name in entries:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    for entry in entries:
        if "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InvalidInput(f"cannot read {what} {path}: {e.strerror}") from e


def _registry_tables(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(_read(path, "buildkitd.toml").decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{path} is not valid TOML: {e}") from e
    registries = data.get("registry", {})
    if not isinstance(registries, dict):
        raise InvalidInput(f"{path}: [registry] is not a table")
    return registries


def load_registry_hosts(
    buildkitd_toml: Path | None = None, daemon_json: Path | None = None
) -> RegistryHosts:
    """Insecure registries from a buildkitd.toml and/or a docker daemon.json."""
    plain: set[str] = set()
    unverified: set[str] = set()
    if buildkitd_toml is not None:
        for host, table in _registry_tables(buildkitd_toml).items():
            if not isinstance(table, dict):
                continue
            if table.get("http") is True:
                plain.add(_check_host(host, f"registry in {buildkitd_toml}", InvalidInput))
            if table.get("insecure") is True:
                unverified.add(_check_host(host, f"registry in {buildkitd_toml}", InvalidInput))
    if daemon_json is not None:
        try:
            data = json.loads(_read(daemon_json, "daemon.json"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidInput(f"{daemon_json} is not valid JSON: {e}") from e
        entries = data.get("insecure-registries", []) if isinstance(data, dict) else None
        if not isinstance(entries, list) or not all(isinstance(x, str) for x in entries):
            raise InvalidInput(f"{daemon_json}: insecure-registries is not a list of strings")
        # dockerd tries https first and falls back to http for these: both apply.
        for entry in entries:
            host = _check_host(entry, f"insecure registry in {daemon_json}", InvalidInput)
            plain.add(host)
            unverified.add(host)
    return RegistryHosts(frozenset(plain), frozenset(unverified))


def load_insecure_hosts(
    buildkitd_toml: Path | None = None, daemon_json: Path | None = None
) -> frozenset[str]:
    """Every registry the configuration files allow to use plain http."""
    return load_registry_hosts(buildkitd_toml, daemon_json).insecure
