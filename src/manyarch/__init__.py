"""manyarch: multi-platform container images for Python applications, without Docker.

The API is one :class:`Session` (see ``docs/api.md``)::

    import manyarch

    with manyarch.Session(insecure_registries=["localhost:5000"]) as s:
        result = s.build("ctx", platforms=["linux/amd64", "linux/arm64"])
        print(s.publish(result, "localhost:5000/app:1"))

Every error a person can act on is a :class:`ManyarchError`; the whole tree
is here. The values calls return (results, images, containers, events) are
importable from here too; those whose modules are heavy load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from manyarch._version import __version__
from manyarch.errors import (
    AuthError,
    BuildError,
    CommandNotRunnable,
    DigestMismatch,
    DiskFull,
    DockerfileError,
    EmulationError,
    InvalidArgument,
    InvalidDigest,
    InvalidDocument,
    InvalidInput,
    InvalidPlatform,
    InvalidReference,
    LayerError,
    LayoutError,
    LimitsUnavailable,
    ManyarchError,
    NotFound,
    PlatformNotFound,
    RegistryError,
    SandboxError,
    StepFailed,
    ToolMissing,
    TransportError,
    UnsafeLayerEntry,
)
from manyarch.session import BaseResult, Container, PruneReport, RmiResult, Session, Started

if TYPE_CHECKING:
    from manyarch.imagebuild.cache import CacheSpec
    from manyarch.imagebuild.options import BuildResult, StepEvent
    from manyarch.images import TransferEvent
    from manyarch.inspect import Inspection
    from manyarch.oci.digest import Digest
    from manyarch.oci.manifest import Descriptor
    from manyarch.oci.platform import Platform
    from manyarch.oci.reference import Reference
    from manyarch.publish import (
        DockerArchive,
        LayoutDestination,
        OciArchive,
        RegistryDestination,
        StoreDestination,
    )
    from manyarch.registry import RegistryOptions
    from manyarch.run.cgroups import Limits
    from manyarch.run.container import ContainerState, RunOptions
    from manyarch.run.local import LocalImage, PullResult
    from manyarch.run.logs import Record
    from manyarch.run.mounts import Mount
    from manyarch.run.network import PortMapping

#: Names whose modules load when first used (a build's modules are heavy, and
#: ``manyarch --version`` imports this package).
_LAZY = {
    "BuildResult": "manyarch.imagebuild.options",
    "CacheSpec": "manyarch.imagebuild.cache",
    "ContainerState": "manyarch.run.container",
    "Descriptor": "manyarch.oci.manifest",
    "Digest": "manyarch.oci.digest",
    "DockerArchive": "manyarch.publish",
    "Inspection": "manyarch.inspect",
    "LayoutDestination": "manyarch.publish",
    "Limits": "manyarch.run.cgroups",
    "LocalImage": "manyarch.run.local",
    "Mount": "manyarch.run.mounts",
    "OciArchive": "manyarch.publish",
    "Platform": "manyarch.oci.platform",
    "PortMapping": "manyarch.run.network",
    "PullResult": "manyarch.run.local",
    "Record": "manyarch.run.logs",
    "Reference": "manyarch.oci.reference",
    "RegistryDestination": "manyarch.publish",
    "RegistryOptions": "manyarch.registry",
    "RunOptions": "manyarch.run.container",
    "StepEvent": "manyarch.imagebuild.options",
    "StoreDestination": "manyarch.publish",
    "TransferEvent": "manyarch.images",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'manyarch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AuthError",
    "BaseResult",
    "BuildError",
    "BuildResult",
    "CacheSpec",
    "CommandNotRunnable",
    "Container",
    "ContainerState",
    "Descriptor",
    "Digest",
    "DigestMismatch",
    "DiskFull",
    "DockerArchive",
    "DockerfileError",
    "EmulationError",
    "Inspection",
    "InvalidArgument",
    "InvalidDigest",
    "InvalidDocument",
    "InvalidInput",
    "InvalidPlatform",
    "InvalidReference",
    "LayerError",
    "LayoutDestination",
    "LayoutError",
    "Limits",
    "LimitsUnavailable",
    "LocalImage",
    "ManyarchError",
    "Mount",
    "NotFound",
    "OciArchive",
    "Platform",
    "PlatformNotFound",
    "PortMapping",
    "PruneReport",
    "PullResult",
    "Record",
    "Reference",
    "RegistryDestination",
    "RegistryError",
    "RegistryOptions",
    "RmiResult",
    "RunOptions",
    "SandboxError",
    "Session",
    "Started",
    "StepEvent",
    "StepFailed",
    "StoreDestination",
    "ToolMissing",
    "TransferEvent",
    "TransportError",
    "UnsafeLayerEntry",
    "__version__",
]
