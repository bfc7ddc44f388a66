"""What a base image is made of: suite, mirror, packages, platforms; one place for defaults."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from manyarch._version import __version__
from manyarch.debian.archs import debian_arch
from manyarch.errors import InvalidArgument, InvalidInput
from manyarch.oci.platform import Platform

DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: Installed in every base: identity files, users, certificates, time zones, /etc/services.
ALWAYS = ("base-files", "base-passwd", "ca-certificates", "netbase", "tzdata")
#: Named package sets; ``python`` gives python3, pip, venv, the ``python`` command, and
#: /bin/sh with coreutils so that ``RUN`` steps written for the official image work.
PRESETS: Mapping[str, tuple[str, ...]] = {
    "minimal": (),
    "python": ("coreutils", "dash", "python-is-python3", "python3", "python3-pip", "python3-venv"),
    # python:3.X-slim: debian:SUITE-slim (the required set, apt) plus Python with its headers
    "python-slim": (
        "adduser",
        "apt",
        "libpython3-dev",
        "python-is-python3",
        "python3",
        "python3-pip",
        "python3-venv",
    ),
}
#: Presets whose maintainer scripts run (``dpkg --configure``), with Debian's required
#: set as ``debian:SUITE-slim`` has it: a system apt, adduser and PAM work in.
CONFIGURED: Mapping[str, tuple[str, ...]] = {"python-slim": ("?priority(required)",)}
NONROOT_ID = 65532
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: python:3.X-slim's PATH: ``ENV PATH /usr/local/bin:$PATH`` over debian's.
OFFICIAL_PYTHON_PATH = "/usr/local/bin:" + DEFAULT_PATH
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
LABEL_PREFIX = "dev.manyarch.base."
#: Bumped whenever what is done to a rootfs changes, so older cache entries are not reused.
RECIPE = 2
#: The same for what is done to a configured rootfs (``baseimage/slim.py``).
CONFIGURED_RECIPE = 2
MERGED_USR_HOOK = Path("/usr/share/mmdebstrap/hooks/merged-usr/setup00.sh")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_SUITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

#: ``progress(platform, step, seconds)`` after each step of one platform.
BaseProgress = Callable[[Platform, str, float], None]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/manyarch/base`` (``~/.cache`` when unset)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg) if xdg else Path.home() / ".cache"
    return root / "manyarch" / "base"


@dataclass(frozen=True)
class BaseOptions:
    """Everything a base image is made of; invalid combinations are refused here."""

    platforms: tuple[Platform, ...]
    suite: str = DEFAULT_SUITE
    mirror: str = DEFAULT_MIRROR
    include: tuple[str, ...] = ()
    preset: str = "minimal"
    epoch: int | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    use_cache: bool = True
    #: Seconds allowed for the mirror check (the first request to the mirror).
    mirror_timeout: float = 15.0

    def __post_init__(self) -> None:
        if not self.platforms:
            raise InvalidArgument("no platform given", "give one, for instance linux/amd64")
        seen: set[str] = set()
        for p in self.platforms:
            arch = debian_arch(p)
            if arch in seen:
                raise InvalidArgument(f"platform {p} is given twice (Debian architecture {arch})")
            seen.add(arch)
        if self.preset not in PRESETS:
            raise InvalidArgument(
                f"unknown preset {self.preset!r}", f"presets: {', '.join(sorted(PRESETS))}"
            )
        if not _SUITE.match(self.suite):
            raise InvalidInput(
                f"invalid suite name {self.suite!r}", "a suite looks like bookworm or trixie"
            )
        for name in self.include:
            if not _PACKAGE.match(name):
                raise InvalidInput(
                    f"invalid Debian package name {name!r}",
                    "package names are lowercase letters, digits, '+', '-' and '.'",
                )
        scheme = urlsplit(self.mirror).scheme
        if scheme not in ("http", "https", "file"):
            raise InvalidInput(
                f"invalid mirror {self.mirror!r}",
                f"a mirror is a URL such as {DEFAULT_MIRROR}",
            )
        if self.epoch is not None and self.epoch < 0:
            raise InvalidInput(
                f"invalid SOURCE_DATE_EPOCH {self.epoch}", "it is seconds since 1970"
            )

    @property
    def configured(self) -> bool:
        """Whether the packages' maintainer scripts run (a system apt works in the image)."""
        return self.preset in CONFIGURED

    @property
    def patterns(self) -> tuple[str, ...]:
        """apt patterns installed besides :attr:`packages` (Debian's required set)."""
        return CONFIGURED.get(self.preset, ())

    @property
    def packages(self) -> tuple[str, ...]:
        """The packages asked for (their dependencies come along), sorted and unique."""
        return tuple(sorted({*ALWAYS, *PRESETS[self.preset], *self.include}))

    def cache_key(self, platform: Platform) -> str:
        """The cache entry of one platform: a hash of every input that shapes it."""
        inputs = {
            "suite": self.suite,
            "mirror": self.mirror.rstrip("/"),
            "arch": debian_arch(platform),
            "platform": str(platform),
            "packages": list(self.packages),
            "preset": self.preset,
            # without SOURCE_DATE_EPOCH the base is dated by its newest package
            "epoch": self.epoch if self.epoch is not None else "packages",
            "manyarch": __version__,
            "recipe": RECIPE,
        }
        if self.configured:
            inputs["patterns"] = list(self.patterns)
            inputs["configured"] = CONFIGURED_RECIPE
        blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()
