"""The one door the upper floors use to reach images, wherever they live.

A :class:`Source` reads an image or index from a registry or an OCI layout; a
:class:`Sink` writes one. :func:`resolve_image` picks the manifest for a
platform (containerd's rules, attestations skipped); :func:`copy` moves an
image or index between any source and sink, blobs first, then manifests, then
the index, so no tag ever points at something incomplete.
"""

from __future__ import annotations

import functools
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol, cast

from manyarch.errors import InvalidArgument, InvalidDocument, PlatformNotFound
from manyarch.layout import Layout
from manyarch.layout.blobs import size_mismatch
from manyarch.oci import mediatypes as mt
from manyarch.oci.digest import Digest
from manyarch.oci.document import Document
from manyarch.oci.manifest import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    parse_manifest_or_index,
)
from manyarch.oci.platform import Platform
from manyarch.oci.reference import AnyReference, LayoutReference, Reference
from manyarch.store import work_dir

if TYPE_CHECKING:  # the registry client (httpx) loads only when a registry is used
    from manyarch.registry import RegistryClient

TransferStatus = Literal["missing", "pulling", "exists", "copied", "pulled", "up-to-date"]


@dataclass(frozen=True)
class TransferEvent:
    """Progress of moving an image, in the words of ``docker pull``.

    ``missing``: the image is not in the local store (about to be pulled);
    ``pulling``: its reference is being resolved; ``exists`` / ``copied``: one
    blob (``digest``, ``size``) was already there / was copied; ``pulled`` /
    ``up-to-date``: done, ``digest`` being what the reference resolved to.
    """

    image: str
    status: TransferStatus
    digest: Digest | None = None
    size: int = 0


#: Receives the :class:`TransferEvent` s of a copy or a pull.
TransferProgress = Callable[[TransferEvent], None]


class Source(Protocol):
    """Where an image is read from."""

    name: str

    def root(self) -> Document:
        """The document the reference names (an index or a manifest)."""
        ...

    def document(self, desc: Descriptor) -> Document:
        """A manifest, index or config by descriptor, verified."""
        ...

    def fetch_blob(self, desc: Descriptor, dest: BinaryIO) -> None:
        """Stream a blob into ``dest``, verified (raises on mismatch)."""
        ...


class Sink(Protocol):
    """Where an image is written to."""

    name: str

    def has_blob(self, desc: Descriptor) -> bool:
        """Whether the blob is already there."""
        ...

    def put_blob(self, desc: Descriptor, opener: Callable[[], BinaryIO]) -> None:
        """Store a blob whose bytes ``opener()`` gives."""
        ...

    def put_document(self, doc: Document, tag: str | None = None) -> None:
        """Store a manifest or index, and point ``tag`` at it when given."""
        ...


class RegistrySource:
    """An image in a registry."""

    def __init__(self, client: RegistryClient, ref: Reference) -> None:
        self.client = client
        self.ref = ref
        self.name = str(ref)
        self._root: Document | None = None
        self._lock = threading.Lock()

    def root(self) -> Document:
        """GET the manifest or index the reference names (cached)."""
        with self._lock:  # the platforms of a build resolve a base at once
            if self._root is None:
                self._root = self.client.get_manifest(self.ref)
            return self._root

    def document(self, desc: Descriptor) -> Document:
        """A manifest or index by digest, or a config blob."""
        if mt.is_index(desc.media_type) or mt.is_manifest(desc.media_type):
            doc = self.client.get_manifest(self.ref.with_digest(desc.digest))
            if len(doc.data) != desc.size:
                # OCI image spec (descriptor.md): content of the wrong size is not trusted
                raise size_mismatch(
                    f"manifest {desc.digest} of {self.ref}", desc.size, len(doc.data)
                )
            return doc
        return Document(self.client.open_blob_bytes(self.ref, desc), desc.media_type)

    def fetch_blob(self, desc: Descriptor, dest: BinaryIO) -> None:
        """Stream a blob from the registry, verified."""
        self.client.fetch_blob(self.ref, desc, dest)


class LayoutSource:
    """An image in an OCI layout directory."""

    def __init__(self, layout: Layout, ident: str | None, name: str = "") -> None:
        self.layout = layout
        self.ident = ident
        self.name = name or f"oci-layout://{layout.path}" + (f":{ident}" if ident else "")

    def root(self) -> Document:
        """The document a tag or digest names in index.json."""
        return self.layout.read_document(self.layout.resolve(self.ident))

    def document(self, desc: Descriptor) -> Document:
        """A document by descriptor, verified."""
        return self.layout.read_document(desc)

    def fetch_blob(self, desc: Descriptor, dest: BinaryIO) -> None:
        """Copy a blob out of the layout."""
        with self.layout.open_blob(desc.digest) as f:
            while chunk := f.read(1 << 20):
                dest.write(chunk)


class LayoutSink:
    """Writes into an OCI layout directory."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.name = f"oci-layout://{layout.path}"

    def has_blob(self, desc: Descriptor) -> bool:
        """Whether the layout holds the blob."""
        return self.layout.has_blob(desc.digest)

    def put_blob(self, desc: Descriptor, opener: Callable[[], BinaryIO]) -> None:
        """Stream a blob in, verified against its descriptor."""
        with opener() as f:
            self.layout.put_stream(f, desc.digest, desc.size)

    def put_document(self, doc: Document, tag: str | None = None) -> None:
        """Store a document; tag it when asked."""
        desc = self.layout.put_document(doc)
        if tag:
            self.layout.tag(tag, desc)


class RegistrySink:
    """Pushes into one repository of a registry."""

    def __init__(self, client: RegistryClient, ref: Reference) -> None:
        self.client = client
        self.ref = ref
        self.name = str(ref)

    def has_blob(self, desc: Descriptor) -> bool:
        """HEAD the blob."""
        return self.client.has_blob(self.ref, desc.digest)

    def put_blob(self, desc: Descriptor, opener: Callable[[], BinaryIO]) -> None:
        """Upload a blob (the client skips what exists)."""
        self.client.push_blob(self.ref, desc, opener)

    def put_document(self, doc: Document, tag: str | None = None) -> None:
        """PUT a manifest by digest, or by tag when given."""
        r = self.ref
        target = Reference(r.registry, r.repository, tag, None if tag else doc.digest)
        self.client.put_manifest(target, doc)


def open_source(ref: AnyReference, client: RegistryClient | None) -> Source:
    """A source for a registry or ``oci-layout://`` reference (a registry needs ``client``)."""
    if isinstance(ref, LayoutReference):
        layout = Layout.open(ref.path)
        ident = str(ref.digest) if ref.digest else ref.tag
        return LayoutSource(layout, ident, str(ref))
    return RegistrySource(_need(client, ref), ref)


def open_sink(ref: AnyReference, client: RegistryClient | None) -> tuple[Sink, str | None]:
    """A sink and the tag to write for a registry or ``oci-layout://`` reference."""
    if isinstance(ref, LayoutReference):
        return LayoutSink(Layout.open(ref.path, create=True)), ref.tag or "latest"
    sink = RegistrySink(_need(client, ref), ref)
    return sink, ref.tag or ("latest" if ref.digest is None else None)


def _need(client: RegistryClient | None, ref: Reference) -> RegistryClient:
    if client is None:
        raise InvalidArgument(f"{ref} is in a registry, and no registry client was given")
    return client


@dataclass(frozen=True)
class ResolvedImage:
    """One platform's image: the manifest's descriptor, the manifest and its config."""

    descriptor: Descriptor
    manifest_doc: Document
    manifest: Manifest
    config_doc: Document
    config: ImageConfig

    @property
    def platform(self) -> Platform:
        """The platform the config declares."""
        return self.config.platform


def resolve_image(source: Source, platform: Platform) -> ResolvedImage:
    """The image ``platform`` runs best, from an index or a single manifest."""
    doc = source.root()
    top = parse_top(doc)
    if isinstance(top, Index):
        desc = top.select(platform)
        if desc is None:
            raise PlatformNotFound(
                str(platform), [str(p) for p in top.platforms()], where=source.name
            )
        if mt.is_index(desc.media_type):
            raise InvalidDocument(f"{source.name}: nested indexes are not supported")
        mdoc = source.document(desc)
    else:
        mdoc = doc
        desc = Descriptor.of(doc)
    manifest = Manifest.parse(mdoc)
    cdoc = source.document(manifest.config)
    config = ImageConfig.parse(cdoc)
    if isinstance(top, Manifest) and not any(p.same(config.platform) for p in platform.fallbacks()):
        raise PlatformNotFound(str(platform), [str(config.platform)], where=source.name)
    return ResolvedImage(
        desc.with_platform(desc.platform or config.platform), mdoc, manifest, cdoc, config
    )


#: Parse the document a reference names (an index or a manifest).
parse_top = parse_manifest_or_index


def copy(
    source: Source,
    sink: Sink,
    *,
    tag: str | None,
    platforms: Sequence[Platform] | None = None,
    jobs: int = 4,
    progress: TransferProgress | None = None,
) -> Descriptor:
    """Copy what ``source`` names into ``sink``; returns the descriptor written at ``tag``.

    With ``platforms``, an index is narrowed to those platforms (a new index,
    hence a new digest); with one platform the manifest itself is copied.
    """
    root = source.root()
    top = parse_top(root)
    if isinstance(top, Manifest) or not platforms:
        copy_document(source, sink, root, tag=tag, jobs=jobs, progress=progress)
        return Descriptor.of(root)
    chosen: list[Descriptor] = []
    for p in platforms:
        d = top.select(p)
        if d is None:
            raise PlatformNotFound(str(p), [str(x) for x in top.platforms()], where=source.name)
        if d not in chosen:
            chosen.append(d)
    if len(chosen) == 1:
        copy_tree(source, sink, chosen[0], tag=tag, jobs=jobs, progress=progress)
        return chosen[0]
    narrowed = Index(tuple(chosen), top.media_type, top.annotations).to_document()
    put_index(sink, [(source, d) for d in chosen], narrowed, tag, jobs=jobs, progress=progress)
    return Descriptor.of(narrowed)


def copy_tree(
    source: Source,
    sink: Sink,
    desc: Descriptor,
    *,
    tag: str | None = None,
    jobs: int = 4,
    progress: TransferProgress | None = None,
) -> None:
    """Copy the manifest or index ``desc`` and everything under it, children first.

    The one way an image tree moves: blobs first, then each manifest, then
    the index, and ``tag`` (when given) last, so that no tag ever points at
    something incomplete. Nested indexes are copied as they are.
    """
    copy_document(source, sink, source.document(desc), tag=tag, jobs=jobs, progress=progress)


def copy_document(
    source: Source,
    sink: Sink,
    doc: Document,
    *,
    tag: str | None = None,
    jobs: int = 4,
    progress: TransferProgress | None = None,
) -> None:
    """:func:`copy_tree` for a manifest or index already read (``doc``, from ``source``)."""
    top = parse_top(doc)
    if isinstance(top, Manifest):
        copy_blobs(source, sink, [top.config, *top.layers], jobs=jobs, progress=progress)
    else:
        for child in top.manifests:
            copy_tree(source, sink, child, jobs=jobs, progress=progress)
    sink.put_document(doc, tag)


def put_index(
    sink: Sink,
    entries: Sequence[tuple[Source, Descriptor]],
    index: Document,
    tag: str | None,
    *,
    jobs: int = 4,
    progress: TransferProgress | None = None,
) -> Descriptor:
    """Write an index whose entries come from several sources (each copied first)."""
    for source, desc in entries:
        copy_tree(source, sink, desc, jobs=jobs, progress=progress)
    sink.put_document(index, tag)
    return Descriptor.of(index)


def entries_of(source: Source) -> list[Descriptor]:
    """The manifest descriptors a source gives an index (a manifest: itself, with its platform)."""
    doc = source.root()
    top = parse_top(doc)
    if isinstance(top, Index):
        return list(top.manifests)
    cfg = ImageConfig.parse(source.document(top.config))
    return [Descriptor.of(doc, platform=cfg.platform)]


def merge(
    sources: Sequence[Source],
    annotations: Mapping[str, str] | None = None,
    descriptor_annotations: Callable[[Platform | None], Mapping[str, str]] | None = None,
) -> tuple[Document, list[tuple[Source, Descriptor]]]:
    """One index over the images of ``sources`` (``imagetools create``), and where each comes from.

    Entries keep the sources' order (an index's attestation manifests kept
    with it); a digest given twice is kept once; two images of the same
    platform are refused. ``annotations`` go to the index;
    ``descriptor_annotations`` gives each image entry's (by its platform).
    The index is a Docker manifest list when every entry is a Docker manifest
    and there are no annotations, else an OCI index.
    """
    collected: list[tuple[Source, Descriptor]] = []
    for src in sources:
        for desc in entries_of(src):
            if any(d.digest == desc.digest for _, d in collected):
                continue
            if desc.platform and not desc.is_attestation:
                for _, d in collected:
                    if d.platform and not d.is_attestation and d.platform.same(desc.platform):
                        raise InvalidArgument(
                            f"two sources give {desc.platform}: {d.digest} and {desc.digest}",
                            "combine images of different platforms",
                        )
            if descriptor_annotations is not None and not desc.is_attestation:
                extra = descriptor_annotations(desc.platform)
                desc = desc.with_annotations(**extra) if extra else desc
            collected.append((src, desc))
    docker = all(mt.is_docker(d.media_type) for _, d in collected)
    notes = dict(annotations or {})
    if any(d.annotations for _, d in collected if not d.is_attestation):
        docker = False
    index = Index(
        tuple(d for _, d in collected),
        mt.DOCKER_MANIFEST_LIST if docker and not notes else mt.OCI_INDEX,
        annotations=notes,
    )
    return index.to_document(), collected


def copy_blobs(
    source: Source,
    sink: Sink,
    blobs: Iterable[Descriptor],
    *,
    jobs: int = 4,
    progress: TransferProgress | None = None,
) -> None:
    """Copy blobs the sink lacks, ``jobs`` at a time; the first error stops the rest."""
    todo = {d.digest: d for d in blobs}

    def tell(desc: Descriptor, status: TransferStatus) -> None:
        if progress is not None:
            progress(TransferEvent(source.name, status, desc.digest, desc.size))

    def one(desc: Descriptor) -> None:
        if sink.has_blob(desc):
            tell(desc, "exists")
            return
        if isinstance(sink, LayoutSink):
            # straight into the layout: verified on commit, discarded on any error
            with sink.layout.writer(verified_elsewhere=isinstance(source, RegistrySource)) as w:
                source.fetch_blob(desc, cast(BinaryIO, w))
                w.commit(desc.digest, desc.size)
            tell(desc, "copied")
            return
        with tempfile.TemporaryFile(dir=work_dir()) as tmp:
            source.fetch_blob(desc, tmp)
            tmp.flush()

            def opener() -> BinaryIO:
                tmp.seek(0)
                return cast(BinaryIO, _NoClose(tmp))

            sink.put_blob(desc, opener)
        tell(desc, "copied")

    from manyarch.registry import run_parallel

    run_parallel([functools.partial(one, d) for d in todo.values()], jobs=jobs)


class _NoClose:
    """A file wrapper whose close() leaves the underlying temp file open."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoClose:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
