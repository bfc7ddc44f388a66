"""The local image store as docker's image commands see it: pull, images, rmi, save, load.

Pulled images live in the one store (:func:`manyarch.store.open_store`),
blobs shared with builds and between images. Each pulled reference is one
entry of the store's ``index.json``: the per-platform manifest the host (or
``--platform``) chose, its ``platform`` set, ``ref.name`` the full reference
(``localhost:5000/app:latest``) and the digest the reference resolved to (the
index, what ``docker pull`` prints as ``Digest:``) in an annotation. As in
docker, pulling another platform of the same reference moves the tag.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

from manyarch.errors import InvalidArgument, InvalidReference, NotFound, PlatformNotFound
from manyarch.images import (
    LayoutSink,
    LayoutSource,
    TransferEvent,
    TransferProgress,
    TransferStatus,
    copy,
    copy_blobs,
    copy_tree,
    open_source,
    parse_top,
    resolve_image,
)
from manyarch.layout import Layout, export_docker_archive, export_tar
from manyarch.layout.dockerarchive import CONTAINERD_NAME, DockerImage
from manyarch.oci import mediatypes as mt
from manyarch.oci.digest import Digest
from manyarch.oci.manifest import Descriptor, ImageConfig, Index, Manifest
from manyarch.oci.platform import Platform, host_platform
from manyarch.oci.reference import AnyReference, LayoutReference, Reference, parse_any
from manyarch.run.archives import UNNAMED
from manyarch.run.archives import load as load_archive

if TYPE_CHECKING:
    from manyarch.registry import RegistryClient

#: Annotation on a store entry: the digest the reference resolved to when pulled.
REPO_DIGEST = "io.manyarch.repo.digest"

_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]+")


@dataclass(frozen=True)
class LocalImage:
    """One platform's image in the store, under the name it was pulled or loaded as."""

    name: str
    descriptor: Descriptor
    manifest: Manifest
    config_digest: Digest
    config: ImageConfig
    repo_digest: Digest | None = None

    @property
    def platform(self) -> Platform:
        """The platform the config declares (the index's, when it says more)."""
        return self.descriptor.platform or self.config.platform

    @property
    def id(self) -> Digest:
        """Docker's IMAGE ID: the config's digest."""
        return self.config_digest

    @property
    def size(self) -> int:
        """Bytes in the store: config and (compressed) layers."""
        return self.manifest.config.size + sum(d.size for d in self.manifest.layers)

    @property
    def repository(self) -> str:
        """The name without tag or digest (``<none>`` for an image kept without a name)."""
        return "<none>" if self.name.startswith(f"{UNNAMED}@") else split_name(self.name)[0]

    @property
    def tag(self) -> str:
        """The tag, ``<none>`` for a digest reference."""
        return split_name(self.name)[1] or "<none>"


@dataclass(frozen=True)
class PullResult:
    """What :func:`pull` stored."""

    image: LocalImage
    resolved: Digest
    up_to_date: bool
    fetched: int


def split_name(name: str) -> tuple[str, str]:
    """``(repository, tag)`` of a store name; the tag is empty for a digest name."""
    base = name.split("@", 1)[0]
    slash, colon = base.rfind("/"), base.rfind(":")
    if colon > slash:
        return base[:colon], base[colon + 1 :]
    return base, ""


def store_name(ref: AnyReference) -> str:
    """The ``ref.name`` a reference is kept under in the store."""
    if isinstance(ref, LayoutReference):
        path = _UNSAFE.sub("-", os.path.abspath(ref.path)).strip("/-")
        base = f"oci-layout/{path}"
        return base + (f"@{ref.digest}" if ref.digest else f":{ref.tag or 'latest'}")
    return str(ref.tagged_or_latest())


def parse_image_ref(text: str) -> AnyReference:
    """A registry reference (``app`` is ``docker.io/library/app:latest``) or an oci-layout one."""
    return parse_any(text)


def _image_from(
    store: Layout, name: str, desc: Descriptor, repo_digest: Digest | None
) -> LocalImage | None:
    if not store.has_blob(desc.digest):
        return None
    mdoc = store.read_document(desc)
    manifest = Manifest.parse(mdoc)
    if not store.has_blob(manifest.config.digest):
        return None
    config = ImageConfig.parse(store.read_document(manifest.config))
    if desc.platform is None:
        desc = desc.with_platform(config.platform)
    return LocalImage(name, desc, manifest, manifest.config.digest, config, repo_digest)


def _complete(store: Layout, image: LocalImage) -> bool:
    return all(store.has_blob(d.digest) for d in image.manifest.layers)


def images_named(store: Layout, name: str, desc: Descriptor) -> list[LocalImage]:
    """The runnable images of one store entry (one per platform present for an index)."""
    repo = desc.annotations.get(REPO_DIGEST)
    repo_digest = Digest.parse(repo) if repo else None
    if mt.is_index(desc.media_type):
        if not store.has_blob(desc.digest):
            return []
        top = parse_top(store.read_document(desc))
        if not isinstance(top, Index):
            return []
        out = []
        for child in top.images():
            img = _image_from(store, name, child, repo_digest or desc.digest)
            if img is not None and _complete(store, img):
                out.append(img)
        return out
    img = _image_from(store, name, desc, repo_digest)
    return [img] if img is not None and _complete(store, img) else []


def list_images(store: Layout) -> list[LocalImage]:
    """Every named, complete image in the store, in index.json order."""
    out: list[LocalImage] = []
    for entry in store.index().manifests:
        name = entry.annotations.get("org.opencontainers.image.ref.name")
        if name:
            out.extend(images_named(store, name, entry))
    return out


def find_local(store: Layout, name: str, platform: Platform | None = None) -> LocalImage | None:
    """The image stored as ``name`` (the best one for ``platform`` when several), or None."""
    for entry_name, desc in store.tags():
        if entry_name != name:
            continue
        candidates = images_named(store, name, desc)
        if not candidates:
            return None
        if platform is None:
            host = host_platform()
            for want in host.fallbacks():
                for c in candidates:
                    if want.same(c.platform):
                        return c
            return candidates[0]
        for want in platform.fallbacks():
            for c in candidates:
                if want.same(c.platform):
                    return c
        return None
    return None


def best_of(images: Sequence[LocalImage], platform: Platform | None = None) -> LocalImage:
    """The one of several platforms' images the host (or ``platform``) runs best."""
    want = platform or host_platform()
    for p in want.fallbacks():
        for img in images:
            if p.same(img.platform):
                return img
    return images[0]


def lookup(store: Layout, text: str) -> list[LocalImage]:
    """Images a user's word names: a reference, a familiar name, or an image id prefix."""
    images = list_images(store)
    wanted: set[str] = set()
    with contextlib.suppress(InvalidReference):
        wanted.add(store_name(parse_image_ref(text)))
    wanted.add(text)
    hits = [i for i in images if i.name in wanted]
    if hits:
        return hits
    prefix = text.removeprefix("sha256:")
    if len(prefix) >= 4 and all(c in "0123456789abcdef" for c in prefix):
        return [i for i in images if i.id.hex.startswith(prefix)]
    return []


def pull(
    ref: AnyReference,
    client: RegistryClient | None,
    *,
    platform: Platform | None = None,
    store: Layout,
    jobs: int = 4,
    progress: TransferProgress | None = None,
) -> PullResult:
    """Store the image ``ref`` names for ``platform`` (the host's by default).

    Only the blobs the store lacks are fetched, ``jobs`` at a time. An index
    without the platform raises :class:`PlatformNotFound` listing those it has.
    ``client`` is needed for a registry reference.
    """
    name = store_name(ref)

    def tell(status: TransferStatus, digest: Digest | None = None, size: int = 0) -> None:
        if progress is not None:
            progress(TransferEvent(name, status, digest, size))

    tell("pulling")
    store.remove_stale_temps()  # a killed pull's partial blobs: this one fetches them again
    source = open_source(ref, client)
    wanted = platform or host_platform()
    image = resolve_image(source, wanted)
    resolved = source.root().digest
    before = find_local(store, name, None)
    sink = LayoutSink(store)
    layers = list(image.manifest.layers)
    missing = [d for d in layers if not store.has_blob(d.digest)]
    for d in layers:
        if d not in missing:
            tell("exists", d.digest, d.size)
    with store.lease():
        copy_blobs(source, sink, [image.manifest.config], jobs=1)
        copy_blobs(source, sink, missing, jobs=jobs, progress=progress)
        store.put_document(image.manifest_doc)
        platform_of = image.descriptor.platform or image.platform
        desc = Descriptor.of(image.manifest_doc, platform=platform_of)
        desc = desc.with_annotations(**{REPO_DIGEST: str(resolved)})
        store.tag(name, desc)
    stored = find_local(store, name, None)
    if stored is None:  # pragma: no cover - we just wrote it
        raise NotFound(f"{name} vanished from the store while it was pulled")
    up_to_date = before is not None and before.descriptor.digest == desc.digest and not missing
    tell("up-to-date" if up_to_date else "pulled", resolved)
    return PullResult(stored, resolved, up_to_date, len(missing))


#: When ``run`` pulls: when the image is not in the local store, always, or never.
PullPolicy = Literal["missing", "always", "never"]
PULL_POLICIES: tuple[PullPolicy, ...] = ("missing", "always", "never")


def image_for_run(
    ref: AnyReference,
    client: RegistryClient | None,
    *,
    platform: Platform | None = None,
    store: Layout,
    policy: PullPolicy = "missing",
    jobs: int = 4,
    progress: TransferProgress | None = None,
) -> LocalImage:
    """The local image ``ref`` names for ``platform``, pulled as ``policy`` says (docker's rule).

    ``missing`` pulls when the store has no image of that name for the
    platform (telling ``progress`` so first when it has none at all);
    ``always`` pulls every time; ``never`` raises :class:`NotFound` instead.
    """
    if policy not in PULL_POLICIES:
        raise InvalidArgument(f"unknown pull policy {policy!r}", "use missing, always or never")
    name = store_name(ref)
    image = None if policy == "always" else find_local(store, name, platform)
    if image is not None:
        return image
    if policy == "never":
        raise NotFound(
            f"no image {_display(ref)} for {platform or 'this platform'} in the local store",
            f"pull it first: manyarch pull {_display(ref)}",
        )
    if policy == "missing" and progress is not None and find_local(store, name, None) is None:
        progress(TransferEvent(name, "missing"))
    return pull(ref, client, platform=platform, store=store, jobs=jobs, progress=progress).image


def _display(ref: AnyReference) -> str:
    return ref.familiar if isinstance(ref, Reference) else str(ref)


def all_tags(ref: Reference, client: RegistryClient) -> list[Reference]:
    """``pull -a``: every tag of the repository, as references."""
    tags = client.list_tags(ref)
    if not tags:
        raise NotFound(f"{ref.familiar} has no tags", "push one first, or check the name")
    return [Reference(ref.registry, ref.repository, t) for t in sorted(tags)]


def remove(store: Layout, text: str) -> list[LocalImage]:
    """Untag the images ``text`` names; returns them (blobs stay until the store is pruned)."""
    hits = lookup(store, text)
    if not hits:
        raise NotFound(
            f"no such image: {text}",
            "list them with `manyarch images`",
        )
    for name in sorted({i.name for i in hits}):
        store.untag(name)
    return hits


def prune(store: Layout) -> list[Digest]:
    """Remove blobs no tag reaches (the build cache's layers in the store included)."""
    return store.gc()


def save(
    store: Layout,
    texts: Sequence[str],
    dest: Path | BinaryIO,
    *,
    platform: Platform | None = None,
    docker: bool = False,
) -> list[str]:
    """Write the named images to an OCI archive (``docker save``'s format when ``docker``).

    A docker archive holds one platform per image: the one asked for, else the host's.
    ``dest`` is a path or a stream (``save > f.tar``).
    """
    if not isinstance(dest, (str, os.PathLike)):
        with tempfile.TemporaryDirectory(dir=store.path.parent, prefix=".manyarch-save-") as tmp:
            saved = save(store, texts, Path(tmp) / "out.tar", platform=platform, docker=docker)
            with open(Path(tmp) / "out.tar", "rb") as f:
                shutil.copyfileobj(f, dest, 1 << 20)
            return saved
    dest = Path(dest)
    chosen: list[LocalImage] = []
    for text in texts:
        hits = lookup(store, text)
        if not hits:
            raise NotFound(f"no such image: {text}", "list them with `manyarch images`")
        if platform is not None or docker:
            want = platform or host_platform()
            best = next(
                (h for p in want.fallbacks() for h in hits if p.same(h.platform)),
                None,
            )
            if best is None:
                raise PlatformNotFound(str(want), [str(h.platform) for h in hits], where=text)
            hits = [best]
        chosen.extend(hits)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".manyarch-save-") as tmp:
        out = Layout.open(Path(tmp) / "layout", create=True)
        sink = LayoutSink(out)
        names: list[str] = []
        by_name: dict[str, list[LocalImage]] = {}
        for img in chosen:
            by_name.setdefault(img.name, []).append(img)
        singles: list[DockerImage] = []
        for name, imgs in by_name.items():
            if len(imgs) == 1:
                img = imgs[0]
                copy_tree(LayoutSource(store, str(img.descriptor.digest)), sink, img.descriptor)
                out.tag(name, img.descriptor.with_annotations(**{CONTAINERD_NAME: name}))
                singles.append((img.descriptor, _repo_tags(name)))
            else:
                source = LayoutSource(store, name)
                copy(source, sink, tag=name, platforms=[i.platform for i in imgs])
            names.append(name)
        if docker:
            export_docker_archive(out, dest, singles)
        else:
            export_tar(out, dest)
    return names


def _repo_tags(name: str) -> list[Reference]:
    """The names ``docker load`` gives an image stored as ``name`` (none for a digest)."""
    try:
        ref = Reference.parse(name)
    except InvalidReference:
        return []
    return [ref] if ref.tag else []


def load(store: Layout, src: Path | BinaryIO) -> list[str]:
    """Import an OCI or docker archive (a path or a stream); returns what it tagged."""
    return load_archive(store, src)
