"""The pure OCI model: digests, media types, platforms, references, manifests.

Imports only the standard library and :mod:`manyarch.errors`; no I/O but
reading ``/proc/cpuinfo`` for :func:`host_platform`.
"""

from manyarch.oci import mediatypes
from manyarch.oci.digest import Digest, Hasher
from manyarch.oci.document import Document, canonical_json
from manyarch.oci.manifest import (
    ContainerConfig,
    Descriptor,
    History,
    ImageConfig,
    Index,
    Manifest,
    parse_manifest_or_index,
)
from manyarch.oci.platform import Platform, best_match, host_platform, parse_platforms
from manyarch.oci.reference import AnyReference, LayoutReference, Reference, parse_any

__all__ = [
    "AnyReference",
    "ContainerConfig",
    "Descriptor",
    "Digest",
    "Document",
    "Hasher",
    "History",
    "ImageConfig",
    "Index",
    "LayoutReference",
    "Manifest",
    "Platform",
    "Reference",
    "best_match",
    "canonical_json",
    "host_platform",
    "mediatypes",
    "parse_any",
    "parse_manifest_or_index",
    "parse_platforms",
]
