"""BuildKit's image exporter, on a build's result in the store.

A build leaves OCI manifests in the store, one per platform, with gzip
layers. Exporting makes the form the outputs ask for (moby/buildkit
``exporter/containerimage``): the media types (Docker's or OCI's; OCI ones
forced by attestations and by index or descriptor annotations, with BuildKit's
warning), the layers' compression (``compression=gzip|zstd|uncompressed``,
``compression-level``; the base image's layers keep theirs unless
``force-compression``), the annotations where buildx puts them, the inline
cache in each config, and one attestation manifest per platform after the
images. With nothing of this asked, the result is the build's own bytes
(or their Docker form), so digests stay what they were.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from manyarch.attest.intoto import statement, subjects, write_attestation_manifest
from manyarch.attest.make import base_of
from manyarch.attest.options import Attestations, attestations
from manyarch.errors import InvalidArgument
from manyarch.export.annotations import Annotations
from manyarch.layers import recompress
from manyarch.layers.compress import LEVELS
from manyarch.layout import Layout
from manyarch.oci import mediatypes as mt
from manyarch.oci.digest import Digest
from manyarch.oci.document import Document, canonical_json
from manyarch.oci.manifest import Descriptor, Index, Manifest
from manyarch.oci.platform import Platform
from manyarch.publish import MediaTypes, in_media_types

#: The image config key BuildKit's inline cache lives under.
INLINE_CACHE_KEY = "moby.buildkit.cache.v0"
COMPRESSIONS = {"gzip": "gzip", "zstd": "zstd", "uncompressed": None}

#: (the platform's manifest as built, its platform) -> ``(predicate type, predicate)`` s
AttestFn = Callable[[Descriptor, Platform], Sequence[tuple[str, Mapping[str, Any]]]]
#: (platform, the layers as built) -> the inline cache records (JSON bytes), or None
InlineFn = Callable[[Platform, Sequence[Descriptor]], bytes | None]


@dataclass(frozen=True)
class ExportOptions:
    """What an export is asked: buildx's ``--output`` attributes, annotations, attestations."""

    media_types: MediaTypes | None = None
    #: ``gzip``, ``zstd`` or None (uncompressed)
    compression: str | None = "gzip"
    compression_level: int | None = None
    force_compression: bool = False
    annotations: Annotations = field(default_factory=Annotations)
    attestations: Attestations = field(default_factory=Attestations)
    #: the image's names, the subjects of its attestations
    names: tuple[str, ...] = ()
    inline_cache: bool = False

    @classmethod
    def of(
        cls,
        *,
        media_types: MediaTypes | None = None,
        compression: str = "gzip",
        compression_level: int | None = None,
        force_compression: bool = False,
        annotations: Mapping[str, str] | Sequence[str] | None = None,
        attest: Sequence[str] = (),
        sbom: str | None = None,
        provenance: str | None = None,
        names: Sequence[str] = (),
        inline_cache: bool = False,
    ) -> ExportOptions:
        """From buildx's spellings (``compression=zstd``, ``--annotation``, ``--attest``...)."""
        kind = parse_compression(compression)
        if compression_level is not None and kind is not None:
            top = LEVELS[kind][-1]
            if compression_level not in LEVELS[kind]:
                raise InvalidArgument(
                    f"{kind} compression level {compression_level} is out of range 0-{top}"
                )
        return cls(
            media_types=media_types,
            compression=kind,
            compression_level=compression_level,
            force_compression=force_compression,
            annotations=Annotations.parse(annotations),
            attestations=attestations(attest, sbom=sbom, provenance=provenance),
            names=tuple(names),
            inline_cache=inline_cache,
        )

    @property
    def plain(self) -> bool:
        """Nothing but media types asked: the build's bytes (or their Docker form) will do."""
        return (
            self.compression == "gzip"
            and self.compression_level is None
            and not self.force_compression
            and not self.annotations.items
            and not self.attestations
            and not self.inline_cache
        )


@dataclass(frozen=True)
class Exported:
    """The exported form: what the outputs publish and the metadata file describes."""

    descriptor: Descriptor
    manifests: tuple[Descriptor, ...]
    media_types: MediaTypes | None
    #: the config digest when the result is one manifest (``containerimage.config.digest``)
    config: Digest | None = None
    warnings: tuple[str, ...] = ()


def parse_compression(value: str) -> str | None:
    """``compression=`` as BuildKit takes it (``estargz`` is refused: manyarch writes none)."""
    if value not in COMPRESSIONS:
        raise InvalidArgument(
            f"unsupported compression type {value}", "use gzip, zstd or uncompressed"
        )
    return COMPRESSIONS[value]


def export(
    store: Layout,
    top: Descriptor,
    manifests: Sequence[Descriptor],
    options: ExportOptions,
    *,
    attest: AttestFn | None = None,
    inline: InlineFn | None = None,
) -> Exported:
    """The exported form of a build's result (``top`` over ``manifests``) in ``store``."""
    platforms = [m.platform or Platform("unknown", "unknown") for m in manifests]
    options.annotations.check_platforms(platforms)
    warnings: list[str] = []
    media = options.media_types
    for reason, needs in (
        ("attestations", bool(options.attestations)),
        ("annotations", bool(options.annotations.items)),
    ):
        if needs and media != "oci":
            if media == "docker" and (reason == "attestations" or options.annotations.need_oci):
                warnings.append(f"forcibly turning on oci-mediatype mode for {reason}")
                media = "oci"
            elif media is None:
                media = "oci"
    if options.plain:
        if media is None:
            return Exported(top, tuple(manifests), None, _config(store, top))
        desc = in_media_types(store, top, media)
        children = tuple(in_media_types(store, m, media) for m in manifests)
        return Exported(desc, children, media, _config(store, desc), tuple(warnings))
    writer = _Writer(store, options, media or "oci", inline)
    images = tuple(writer.manifest(m, p) for m, p in zip(manifests, platforms, strict=True))
    if len(images) == 1 and not options.attestations:
        if options.annotations.has_index_kinds:
            raise InvalidArgument(
                "index annotations not supported for single platform export",
                "build more than one platform, or annotate the manifest",
            )
        return Exported(images[0], images, media, _config(store, images[0]), tuple(warnings))
    entries = list(images)
    if attest is not None and options.attestations:
        for built, image, plat in zip(manifests, images, platforms, strict=True):
            made = [
                (kind, statement(kind, pred, subjects(options.names, plat, str(image.digest))))
                for kind, pred in attest(built, plat)
            ]
            entries.append(write_attestation_manifest(store, image, made))
    docker = media == "docker"
    index = Index(
        tuple(entries),
        mt.DOCKER_MANIFEST_LIST if docker else mt.OCI_INDEX,
        annotations={} if docker else options.annotations.index(),
    )
    d = store.put_document(index.to_document())
    desc = Descriptor(
        d.media_type, d.digest, d.size, annotations=options.annotations.index_descriptor()
    )
    return Exported(desc, images, media, None, tuple(warnings))


def _config(store: Layout, desc: Descriptor) -> Digest | None:
    if not mt.is_manifest(desc.media_type):
        return None
    return Manifest.parse(store.read_document(desc)).config.digest


class _Writer:
    """Rewrites the manifests of one export (layers recompressed once, shared by platforms)."""

    def __init__(
        self, store: Layout, options: ExportOptions, media: MediaTypes, inline: InlineFn | None
    ) -> None:
        self.store = store
        self.options = options
        self.docker = media == "docker"
        self.inline = inline if options.inline_cache else None
        self._done: dict[tuple[Digest, bool], Descriptor] = {}

    def manifest(self, desc: Descriptor, platform: Platform) -> Descriptor:
        """One platform's manifest in the exported form; its index entry."""
        store = self.store
        man = Manifest.parse(store.read_document(desc))
        base_layers = base_of(store, man)[0]
        layers = tuple(self.layer(d, i < base_layers) for i, d in enumerate(man.layers))
        data = store.read_document(man.config).data
        records = self.inline(platform, man.layers) if self.inline is not None else None
        if records is not None:
            obj = json.loads(data)
            obj[INLINE_CACHE_KEY] = base64.b64encode(records).decode()
            data = canonical_json(obj)
        cfg_type = mt.DOCKER_CONFIG if self.docker else mt.OCI_CONFIG
        cdesc = store.put_document(Document(data, cfg_type))
        annotations = {} if self.docker else dict(man.annotations)
        annotations.update(self.options.annotations.manifest(platform))
        new = Manifest(
            Descriptor(cfg_type, cdesc.digest, cdesc.size),
            layers,
            mt.DOCKER_MANIFEST if self.docker else mt.OCI_MANIFEST,
            annotations=annotations,
        )
        d = store.put_document(new.to_document())
        return Descriptor(
            d.media_type,
            d.digest,
            d.size,
            platform=platform,
            annotations=self.options.annotations.manifest_descriptor(platform),
        )

    def layer(self, d: Descriptor, base: bool) -> Descriptor:
        """A layer in the compression and media type family asked."""
        if not mt.is_layer(d.media_type) or d.urls or "nondistributable" in d.media_type:
            return d
        o = self.options
        current = mt.compression(d.media_type)
        redo = (o.force_compression or not base) and (
            current != o.compression or o.compression_level is not None
        )
        key = (d.digest, redo)
        if key not in self._done:
            self._done[key] = self._recompress(d) if redo else d
        out = self._done[key]
        kind = mt.compression(out.media_type)
        return Descriptor(mt.exported_layer_type(kind, self.docker), out.digest, out.size)

    def _recompress(self, d: Descriptor) -> Descriptor:
        o = self.options
        with self.store.open_blob(d.digest) as src, self.store.writer() as w:
            digest, size, _ = recompress(src, cast(BinaryIO, w), o.compression, o.compression_level)
            w.commit(digest)
        return Descriptor(mt.exported_layer_type(o.compression, False), digest, size)
