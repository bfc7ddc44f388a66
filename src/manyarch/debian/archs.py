"""Debian architectures of OCI platforms."""

from __future__ import annotations

from collections.abc import Mapping

from manyarch.errors import InvalidInput
from manyarch.oci.platform import Platform

# OCI platform (architecture, variant) -> Debian architecture.
_DEB_ARCH: Mapping[tuple[str, str], str] = {
    ("amd64", ""): "amd64",
    ("arm64", ""): "arm64",
    ("arm", "v7"): "armhf",
    ("arm", "v6"): "armel",
    ("arm", "v5"): "armel",
    ("386", ""): "i386",
    ("ppc64le", ""): "ppc64el",
    ("s390x", ""): "s390x",
    ("riscv64", ""): "riscv64",
    ("mips64le", ""): "mips64el",
}


def debian_arch(platform: Platform) -> str:
    """The Debian architecture that builds for ``platform`` (``linux/arm/v7`` -> ``armhf``)."""
    arch = _DEB_ARCH.get((platform.architecture, platform.variant))
    if platform.os != "linux" or arch is None:
        known = ", ".join(f"linux/{a}/{v}" if v else f"linux/{a}" for a, v in _DEB_ARCH)
        raise InvalidInput(
            f"Debian has no architecture for platform {platform}",
            f"base images can be built for: {known}",
        )
    return arch
