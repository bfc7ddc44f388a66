"""The content graph under a descriptor: index → manifests → config and layers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from manyarch.oci import mediatypes as mt
from manyarch.oci.digest import Digest
from manyarch.oci.document import Document
from manyarch.oci.manifest import Descriptor, Index, Manifest


class Layout(Protocol):
    """What a walk reads of a layout: documents, and whether a blob is there."""

    def read_document(self, desc: Descriptor) -> Document:
        """The verified document ``desc`` names."""
        ...

    def has_blob(self, digest: Digest) -> bool:
        """Whether the blob is present."""
        ...


def children(layout: Layout, desc: Descriptor) -> list[Descriptor]:
    """The descriptors an index or manifest names directly (none for other blobs).

    Reads and verifies the document; raises :class:`~manyarch.errors.NotFound`
    when it is missing and :class:`~manyarch.errors.DigestMismatch` or
    :class:`~manyarch.errors.InvalidDocument` when it is corrupt.
    """
    if mt.is_index(desc.media_type):
        index = Index.parse(layout.read_document(desc))
        out = list(index.manifests)
        subject = index.subject
    elif mt.is_manifest(desc.media_type):
        manifest = Manifest.parse(layout.read_document(desc))
        out = [manifest.config, *manifest.layers]
        subject = manifest.subject
    else:
        return []
    # A referrer keeps its subject alive; the spec lets the subject be absent.
    if subject is not None and layout.has_blob(subject.digest):
        out.append(subject)
    return out


def walk(
    layout: Layout,
    desc: Descriptor,
    *,
    children_first: bool = False,
    missing_ok: bool = False,
) -> Iterator[Descriptor]:
    """Every descriptor reachable from ``desc``, ``desc`` included, each digest once.

    Parents come before their children unless ``children_first`` (the order a
    push or copy needs: a registry refuses a manifest whose blobs it lacks).
    With ``missing_ok`` a missing index or manifest is yielded but not
    descended into (a sparse index, pulled for one platform); otherwise it
    raises :class:`~manyarch.errors.NotFound`.
    """
    seen: set[Digest] = set()

    def visit(d: Descriptor) -> Iterator[Descriptor]:
        if d.digest in seen:
            return
        seen.add(d.digest)
        if not children_first:
            yield d
        if missing_ok and not layout.has_blob(d.digest):
            kids: list[Descriptor] = []
        else:
            kids = children(layout, d)
        for kid in kids:
            yield from visit(kid)
        if children_first:
            yield d

    yield from visit(desc)
