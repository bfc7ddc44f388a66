"""Where manyarch's settings come from, outside the calls themselves.

Registries (which may be spoken to over plain http, or without verifying
TLS), read as BuildKit and docker read them:

* ``insecure_registries`` given to the session (the CLI's
  ``--insecure-registry``): as docker's daemon.json ``insecure-registries``,
  plain http is allowed AND the TLS certificate is not verified;
* buildkitd.toml ``[registry."HOST:PORT"]`` tables (``http = true``,
  ``insecure = true``), read only where BuildKit reads them: the file given
  explicitly, else the current builder's (``create --config F --use``, as
  buildx keeps it) and ``/etc/buildkit/buildkitd.toml`` and
  ``$XDG_CONFIG_HOME/buildkit/buildkitd.toml``. Never from the current
  directory: a cloned repository could otherwise turn TLS verification off
  for any registry;
* docker's ``/etc/docker/daemon.json`` (or the one given) ``insecure-registries``.

And ``SOURCE_DATE_EPOCH``, the reproducible-builds clamp, for builds and bases.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from manyarch import builders
from manyarch.errors import InvalidArgument

if TYPE_CHECKING:  # the registry package loads httpx: only when a registry is used
    from manyarch.registry import RegistryOptions

#: BuildKit's system-wide configuration file.
SYSTEM_BUILDKITD = Path("/etc/buildkit/buildkitd.toml")
#: Docker's daemon configuration.
DAEMON_JSON = Path("/etc/docker/daemon.json")


def user_buildkitd() -> Path:
    """``$XDG_CONFIG_HOME/buildkit/buildkitd.toml`` (rootless BuildKit's file)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "buildkit" / "buildkitd.toml"


def buildkitd_configs(explicit: Path | None = None) -> list[Path]:
    """The buildkitd.toml files to read: ``explicit`` alone, else BuildKit's own places."""
    if explicit is not None:
        return [explicit]
    found: list[Path] = []
    builder = builders.current()
    if builder is not None and builder.config is not None:
        found.append(builder.config)
    found.extend(p for p in (SYSTEM_BUILDKITD, user_buildkitd()) if p.is_file())
    return found


def daemon_config(explicit: Path | None = None) -> Path | None:
    """The daemon.json to read: ``explicit``, else docker's when there is one."""
    if explicit is not None:
        return explicit
    return DAEMON_JSON if DAEMON_JSON.is_file() else None


def registry_options(
    *,
    insecure: Iterable[str] = (),
    buildkitd_config: str | Path | None = None,
    daemon_json: str | Path | None = None,
    jobs: int = 4,
) -> RegistryOptions:
    """The registry client's options: ``insecure`` hosts and what the configuration files say."""
    from manyarch.registry.options import RegistryOptions, load_registry_hosts

    hosts = frozenset(insecure)
    opts = RegistryOptions(insecure=hosts, skip_verify=hosts, jobs=jobs)
    configs = buildkitd_configs(Path(buildkitd_config) if buildkitd_config is not None else None)
    daemon = daemon_config(Path(daemon_json) if daemon_json is not None else None)
    for i, cfg in enumerate(configs or [None]):
        opts = opts.with_hosts(load_registry_hosts(cfg, daemon if i == 0 else None))
    return opts


def source_date_epoch(environ: Mapping[str, str] | None = None) -> int | None:
    """``SOURCE_DATE_EPOCH`` as a number of seconds, None when unset.

    A value that is not a number is an error, as the reproducible-builds
    specification asks, rather than a build that is silently not reproducible.
    """
    text = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError as e:
        raise InvalidArgument(
            f"SOURCE_DATE_EPOCH={text!r} is not a number of seconds",
            "set it to an integer, e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)",
        ) from e
    if value < 0:
        raise InvalidArgument(f"SOURCE_DATE_EPOCH={text!r} is before 1970")
    return value
