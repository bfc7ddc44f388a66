"""``manyarch load``: image archives of every kind docker reads, into the local store.

- OCI archives (``manyarch save``, ``build -o type=oci,dest=x.tar``, buildx's,
  ``docker save`` since Docker 25): blobs and ``index.json``; each entry is
  named, as docker names it, by ``io.containerd.image.name`` or else by an
  ``org.opencontainers.image.ref.name`` that is a whole reference (a bare
  tag names nothing: the image is kept untagged, ``<none>``).
- docker archives (``docker save`` before 25, ``skopeo copy docker-archive:``,
  manyarch's ``-o type=docker``): ``manifest.json`` lists each image's config,
  layers (plain or gzipped tars) and ``RepoTags``; a manifest is made for each.

The tar is read once, as a stream (stdin works): every file is hashed into
the store as it passes, so nothing is extracted by name.
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from manyarch.errors import InvalidArgument, InvalidReference, LayoutError
from manyarch.layout import Layout
from manyarch.layout.dockerarchive import CONTAINERD_NAME
from manyarch.oci import mediatypes as mt
from manyarch.oci.digest import Digest
from manyarch.oci.document import Document
from manyarch.oci.manifest import Descriptor, ImageConfig, Index, Manifest
from manyarch.oci.reference import Reference

#: The store name of an image that has none: ``none@DIGEST`` (docker's ``<none>``).
UNNAMED = "none"
REF_NAME = "org.opencontainers.image.ref.name"
#: json files of an archive (manifest.json, index.json, configs) are read into memory up to this
MAX_JSON = 64 << 20


@dataclass(frozen=True)
class _Member:
    digest: Digest
    size: int
    gzipped: bool


def _read_members(store: Layout, src: Path | BinaryIO, where: str) -> tuple[
    dict[str, _Member], dict[str, bytes]
]:  # fmt: skip
    members: dict[str, _Member] = {}
    small: dict[str, bytes] = {}
    try:
        if isinstance(src, (str, os.PathLike)):
            tar = tarfile.open(src, mode="r|*")  # noqa: SIM115 - closed by the with below
        else:
            tar = tarfile.open(fileobj=src, mode="r|*")  # noqa: SIM115
    except FileNotFoundError as e:
        raise InvalidArgument(f"{src} does not exist", "give the archive with -i FILE.tar") from e
    except tarfile.TarError as e:
        raise LayoutError(f"{where} is not a tar archive: {e}") from e
    try:
        with tar:
            for m in tar:
                name = m.name.removeprefix("./").strip("/")
                if not m.isfile() or not name or ".." in name.split("/"):
                    continue
                f = tar.extractfile(m)
                assert f is not None
                if name.endswith(("json", "repositories", "oci-layout", "VERSION")) and (
                    m.size <= MAX_JSON
                ):
                    data = f.read()
                    small[name] = data
                    doc = store.put_document(Document(data, "application/octet-stream"))
                    members[name] = _Member(doc.digest, len(data), False)
                    continue
                head = b""
                with store.writer() as w:
                    while chunk := f.read(1 << 20):
                        head = head or chunk[:2]
                        w.write(chunk)
                    digest, size = w.commit()
                members[name] = _Member(digest, size, head == b"\x1f\x8b")
    except tarfile.TarError as e:
        raise LayoutError(f"{where} is a broken tar archive: {e}") from e
    return members, small


def _full_name(text: str) -> str | None:
    """A store name for an archive's name: a whole reference, else None."""
    if text.startswith("oci-layout/"):
        return text  # manyarch's own name of an image pulled from an OCI layout
    try:
        return str(Reference.parse(text).tagged_or_latest())
    except InvalidReference:
        return None


def _unnamed(digest: Digest) -> str:
    return f"{UNNAMED}@{digest}"


def _load_oci(store: Layout, small: dict[str, bytes], where: str) -> list[str]:
    try:
        index = Index.parse(small["index.json"])
    except Exception as e:
        raise LayoutError(f"{where}: index.json is not an image index: {e}") from e
    names: list[str] = []
    for entry in index.manifests:
        if not store.has_blob(entry.digest):
            raise LayoutError(f"{where} is incomplete: it lacks {entry.digest}")
        ann = dict(entry.annotations)
        name = None
        if CONTAINERD_NAME in ann:
            name = _full_name(ann[CONTAINERD_NAME])
        ref = ann.get(REF_NAME, "")
        if name is None and ref and ("/" in ref or ":" in ref):
            name = _full_name(ref)
        desc = Descriptor(entry.media_type, entry.digest, entry.size, entry.platform)
        tagged = name or _unnamed(entry.digest)
        store.tag(tagged, desc.with_annotations(**{CONTAINERD_NAME: tagged}))
        names.append(tagged)
    return names


def _load_docker(
    store: Layout, members: dict[str, _Member], small: dict[str, bytes], where: str
) -> list[str]:
    try:
        entries = json.loads(small["manifest.json"])
        assert isinstance(entries, list)
    except (ValueError, AssertionError) as e:
        raise LayoutError(f"{where}: manifest.json is not docker's list of images") from e
    names: list[str] = []
    for entry in entries:
        try:
            config_name = str(entry["Config"])
            config_data = small.get(config_name) or store.read_blob(members[config_name].digest)
            layer_names = [str(x) for x in entry.get("Layers") or []]
            layers = [members[n] for n in layer_names]
        except KeyError as err:
            raise LayoutError(
                f"{where}: manifest.json names {err} which the archive lacks"
            ) from err
        config = ImageConfig.parse(Document(config_data, mt.OCI_CONFIG))
        cdesc = store.put_document(Document(config_data, mt.OCI_CONFIG))
        layer_descs = tuple(
            Descriptor(mt.OCI_LAYER_GZIP if m.gzipped else mt.OCI_LAYER, m.digest, m.size)
            for m in layers
        )
        manifest = Manifest(
            config=Descriptor(mt.OCI_CONFIG, cdesc.digest, cdesc.size),
            layers=layer_descs,
            media_type=mt.OCI_MANIFEST,
        )
        mdesc = store.put_document(manifest.to_document()).with_platform(config.platform)
        tags = [t for t in (_full_name(str(t)) for t in entry.get("RepoTags") or []) if t]
        for tagged in tags or [_unnamed(mdesc.digest)]:
            store.tag(tagged, mdesc.with_annotations(**{CONTAINERD_NAME: tagged}))
            names.append(tagged)
    return names


def load(store: Layout, src: Path | BinaryIO) -> list[str]:
    """Import an OCI or docker archive (a path or a stream); returns the names it tagged."""
    where = str(src) if isinstance(src, (str, os.PathLike)) else "the archive"
    with store.lease():
        members, small = _read_members(store, src, where)
        if "oci-layout" in small and "index.json" in small:
            return _load_oci(store, small, where)
        if "manifest.json" in small:
            return _load_docker(store, members, small, where)
    raise LayoutError(
        f"{where} is neither an OCI archive nor a docker archive",
        "manyarch loads what `docker save`, `manyarch save`, skopeo and buildx write",
    )
