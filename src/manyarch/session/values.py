"""The values a session's calls take and return: results, containers, reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from manyarch.errors import ManyarchError

if TYPE_CHECKING:
    from manyarch.baseimage.image import BaseImage
    from manyarch.imagebuild.cache import PruneResult
    from manyarch.layout import Layout
    from manyarch.oci.digest import Digest
    from manyarch.oci.manifest import Descriptor
    from manyarch.oci.platform import Platform
    from manyarch.oci.reference import AnyReference
    from manyarch.publish import MediaTypes
    from manyarch.run.container import ContainerState
    from manyarch.run.local import LocalImage


@dataclass(frozen=True)
class BaseResult:
    """A base image built (or taken from the base cache) and put in the local store."""

    store: Layout
    descriptor: Descriptor
    manifests: tuple[Descriptor, ...]
    image: BaseImage
    #: Bases are OCI images wherever they go.
    media_types: MediaTypes | None = "oci"

    def sbom(self, name: str) -> dict[str, Any]:
        """The packages of every platform as an SPDX 2.3 JSON document."""
        from manyarch.baseimage import spdx

        return spdx.spdx_document(self.image, name)


@dataclass(frozen=True)
class Container:
    """A container created from an image, not started yet."""

    state: ContainerState
    image: LocalImage
    #: What docker would warn about (an image of another platform than this host's).
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Started:
    """A container started: its state, and once it has ended its exit code and
    (detached) what it wrote meanwhile."""

    state: ContainerState
    exit_code: int | None = None
    output: bytes = b""


@dataclass(frozen=True)
class RmiResult:
    """What ``rmi`` did, image by image (in the order given)."""

    untagged: Mapping[str, list[LocalImage]] = field(default_factory=dict)
    errors: Mapping[str, ManyarchError] = field(default_factory=dict)
    #: Blobs deleted (with ``prune``).
    deleted: list[Digest] = field(default_factory=list)


@dataclass(frozen=True)
class PruneReport:
    """What ``prune`` removed."""

    #: Working directories of builds that were killed.
    swept: int
    cache: PruneResult
    cache_dir: Path
    #: Unpacked image trees nothing used (with ``all``; None otherwise).
    trees: list[Digest] | None
    trees_dir: Path
    #: ``RUN --mount=type=cache`` directories removed (no build held them), bytes freed
    cache_mounts: tuple[int, int] = (0, 0)


def platform_of(value: str | Platform | None) -> Platform | None:
    from manyarch.oci.platform import Platform

    if value is None or isinstance(value, Platform):
        return value
    return Platform.parse(value)


def platforms_of(values: Sequence[str | Platform]) -> list[Platform]:
    """Platforms from values or strings (``"linux/amd64,linux/arm64"`` counts as two);
    containerd's default spec when none (``linux/amd64``, not the host's x86-64 level)."""
    from manyarch.oci.platform import Platform, default_platform, parse_platforms

    if isinstance(values, str):
        values = [values]
    out: list[Platform] = []
    for v in values:
        out.extend([v] if isinstance(v, Platform) else parse_platforms([v]))
    return out or [default_platform()]


def shown_name(ref: AnyReference) -> str:
    """How ``imagetools inspect`` names a reference (a registry one with its tag)."""
    from manyarch.oci.reference import Reference

    return str(ref.tagged_or_latest()) if isinstance(ref, Reference) else str(ref)
