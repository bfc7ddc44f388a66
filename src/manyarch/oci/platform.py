"""Platforms: parse, format, normalise and match, following containerd's rules.

containerd/platforms ``database.go`` normalises names (``aarch64`` -> ``arm64``,
``x86_64`` -> ``amd64``, ``arm64/v8`` == ``arm64``) and ``compare.go`` gives the
order in which a host falls back (``amd64/v3`` -> ``v2`` -> ``v1``;
``arm/v7`` -> ``v6`` -> ``v5``; ``arm64`` -> ``arm/v8`` ... ``arm/v5``).
"""

from __future__ import annotations

import platform as _pyplatform
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from manyarch.errors import InvalidPlatform

_COMPONENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_KNOWN_OS = frozenset(
    {
        "linux",
        "windows",
        "darwin",
        "freebsd",
        "netbsd",
        "openbsd",
        "solaris",
        "illumos",
        "aix",
        "android",
        "ios",
        "plan9",
        "js",
        "wasip1",
        "unknown",
    }
)


def normalize_os(os: str) -> str:
    """Lower-case an OS name; ``macos`` is ``darwin``."""
    os = os.lower()
    return "darwin" if os == "macos" else os


def normalize_arch(arch: str, variant: str = "") -> tuple[str, str]:
    """Normalise an architecture and variant the way containerd does."""
    arch = arch.lower()
    variant = variant.lower()
    if arch in ("i386", "i486", "i586", "i686"):
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant in ("", "v1") else variant
    if arch in ("aarch64", "arm64"):
        if variant in ("", "8", "v8", "v8.0"):
            return "arm64", ""
        if variant in ("9", "9.0", "v9.0"):
            return "arm64", "v9"
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if re.match(r"^armv[5-8]", arch):  # uname -m on 32-bit ARM: armv7l, armv6l
        return "arm", "v" + arch[4]
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
        return "arm", variant
    if arch == "ppc64el":
        return "ppc64le", variant
    return arch, variant


@dataclass(frozen=True, order=True)
class Platform:
    """An OCI platform; ``str(p)`` is ``os/arch[/variant]`` and parses back to ``p``."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = field(default="", compare=True)
    os_features: tuple[str, ...] = ()

    @classmethod
    def of(cls, os: str, architecture: str, variant: str = "") -> Platform:
        """A normalised platform from its parts."""
        arch, var = normalize_arch(architecture, variant)
        return cls(normalize_os(os), arch, var)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]``; ``arch`` alone means ``linux/arch``.

        ``local`` is the host platform, as in buildx.
        """
        spec = text.strip()
        if spec == "local":
            return host_platform()
        parts = spec.split("/")
        if not spec or len(parts) > 3 or not all(p and _COMPONENT.match(p) for p in parts):
            raise InvalidPlatform(
                f"invalid platform {text!r}",
                "a platform looks like linux/amd64 or linux/arm64 or linux/arm/v7",
            )
        if len(parts) == 1:
            if normalize_os(parts[0]) in _KNOWN_OS:
                raise InvalidPlatform(
                    f"invalid platform {text!r}: an architecture is missing",
                    f"say for instance {parts[0]}/amd64 or {parts[0]}/arm64",
                )
            return cls.of("linux", parts[0])
        os = normalize_os(parts[0])
        if os not in _KNOWN_OS:
            raise InvalidPlatform(
                f"unknown operating system {parts[0]!r} in platform {text!r}",
                "a platform looks like linux/amd64 or linux/arm64",
            )
        return cls.of(os, parts[1], parts[2] if len(parts) == 3 else "")

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Platform:
        """From the ``platform`` object of a descriptor or an image config."""
        try:
            os = str(obj["os"])
            arch = str(obj["architecture"])
        except KeyError as e:
            raise InvalidPlatform(f"platform object lacks {e.args[0]!r}") from e
        feats = obj.get("os.features") or ()
        return cls(
            normalize_os(os),
            *normalize_arch(arch, str(obj.get("variant") or "")),
            os_version=str(obj.get("os.version") or ""),
            os_features=tuple(str(f) for f in feats),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``platform`` object, keys in the spec's order, empty ones left out."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base

    @property
    def is_unknown(self) -> bool:
        """``unknown/unknown``: how buildx marks attestation manifests."""
        return self.os == "unknown" and self.architecture == "unknown"

    def normalized(self) -> Platform:
        """The same platform with containerd's normalisation applied."""
        arch, var = normalize_arch(self.architecture, self.variant)
        return Platform(normalize_os(self.os), arch, var, self.os_version, self.os_features)

    def same(self, other: Platform) -> bool:
        """True when both name the same os/arch/variant after normalisation."""
        a, b = self.normalized(), other.normalized()
        return (a.os, a.architecture, a.variant) == (b.os, b.architecture, b.variant)

    def fallbacks(self) -> list[Platform]:
        """This platform and those it can also run, best first (containerd's vector)."""
        p = self.normalized()
        vector: list[Platform] = [Platform(p.os, p.architecture, p.variant)]
        if p.architecture == "amd64":
            level = _version(p.variant)
            for v in range(int(level) - 1 if level else 0, 0, -1):
                vector.append(Platform.of(p.os, "amd64", f"v{v}"))
        elif p.architecture == "arm64":
            vector = []
            variant = p.variant or "v8"
            major, minor = _major_minor(variant)
            while (major, minor) >= (8, 0):
                vector.append(
                    Platform.of(p.os, "arm64", f"v{major}.{minor}" if minor else f"v{major}")
                )
                if minor == 0:
                    if major == 9:
                        major, minor = 8, 5  # v9.0 implements v8.5
                    else:
                        break
                else:
                    minor -= 1
            vector.extend(Platform.of(p.os, "arm", "v8").fallbacks())
        elif p.architecture == "arm":
            level = _version(p.variant)
            if level:
                for v in range(int(level) - 1, 4, -1):
                    vector.append(Platform(p.os, "arm", f"v{v}"))
        out: list[Platform] = []
        for cand in vector:
            if not any(cand.same(o) for o in out):
                out.append(cand)
        return out


def _version(variant: str) -> float:
    try:
        return float(variant.lstrip("v")) if variant else 0.0
    except ValueError:
        return 0.0


def _major_minor(variant: str) -> tuple[int, int]:
    m = re.match(r"^v(\d+)(?:\.(\d+))?$", variant)
    if not m:
        return 8, 0
    return int(m.group(1)), int(m.group(2) or 0)


def parse_platforms(text: str | Iterable[str]) -> list[Platform]:
    """Parse a comma-separated list (or several), dropping duplicates, keeping order."""
    items = [text] if isinstance(text, str) else list(text)
    out: list[Platform] = []
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            p = Platform.parse(part)
            if not any(p.same(o) for o in out):
                out.append(p)
    if not out:
        raise InvalidPlatform("no platform given", "say for instance linux/amd64,linux/arm64")
    return out


T = TypeVar("T")


def best_match(wanted: Platform, candidates: Sequence[T], platform_of: Any = None) -> T | None:
    """The candidate whose platform ``wanted`` runs best, or ``None``.

    ``platform_of(c)`` gives a candidate's platform (``None`` to skip it); by
    default candidates are platforms themselves.
    """
    get = platform_of or (lambda c: c)
    plats = [(c, get(c)) for c in candidates]
    for want in wanted.fallbacks():
        for cand, plat in plats:
            if plat is not None and want.same(plat) and _os_version_ok(wanted, plat):
                return cand
    return None


def _os_version_ok(wanted: Platform, have: Platform) -> bool:
    return not wanted.os_version or not have.os_version or wanted.os_version == have.os_version


# amd64 micro-architecture levels (x86-64 psABI), by /proc/cpuinfo flag names.
_AMD64_LEVELS: list[tuple[str, frozenset[str]]] = [
    ("v2", frozenset({"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"})),
    ("v3", frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"})),
    ("v4", frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"})),
]


def amd64_level(flags: Iterable[str]) -> str:
    """The x86-64 micro-architecture level (``v1`` .. ``v4``) that CPU flags allow."""
    have = set(flags)
    level = "v1"
    for name, needed in _AMD64_LEVELS:
        if needed <= have:
            level = name
        else:
            break
    return level


def host_platform_from(machine: str, cpuinfo: str = "", os: str = "linux") -> Platform:
    """The host platform from ``uname -m`` and the text of ``/proc/cpuinfo``."""
    arch, variant = normalize_arch(machine)
    if arch == "amd64":
        flags: set[str] = set()
        for line in cpuinfo.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags":
                flags = set(value.split())
                break
        level = amd64_level(flags) if flags else "v1"
        return Platform(os, "amd64", "" if level == "v1" else level)
    if arch == "arm":
        for line in cpuinfo.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "CPU architecture" and value.strip().isdigit():
                v = value.strip()
                return Platform.of(os, "arm", v if v in ("5", "6", "7") else "7")
    return Platform(os, arch, variant)


def default_platform() -> Platform:
    """containerd's ``DefaultSpec()``: this machine's os/arch, a variant only for 32-bit ARM.

    What a build without ``--platform`` targets (``linux/amd64`` on any x86-64
    level, as buildx labels it); :meth:`Platform.fallbacks` of it is then
    containerd's ``Only()``, which ``linux/amd64/v4`` would not satisfy.
    """
    host = host_platform()
    return Platform(host.os, host.architecture, host.variant if host.architecture == "arm" else "")


def host_platform() -> Platform:
    """This machine's platform, with its amd64 level (``linux/amd64/v3``) or arm variant."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpuinfo = f.read()
    except OSError:
        cpuinfo = ""
    system = _pyplatform.system().lower() or "linux"
    return host_platform_from(_pyplatform.machine(), cpuinfo, normalize_os(system))
