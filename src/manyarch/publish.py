"""Publishing: an image or index in the local store, taken to where it goes.

One destination per place an image can live (ko's ``publish``), each named
by a string as the rest of manyarch names images:

* ``REGISTRY/REPOSITORY[:TAG]``: a registry (:class:`RegistryDestination`);
* ``oci-layout://PATH[:TAG]``: an OCI layout directory (:class:`LayoutDestination`);
* ``oci-archive://PATH[:TAG]``: the same as one tar (:class:`OciArchive`);
* ``docker-archive://PATH[:NAME]``: what ``docker load`` reads, one platform
  (:class:`DockerArchive`; the first ``:`` ends the path, as in skopeo);
* the local store itself (:class:`StoreDestination`, ``build --load``): the
  image named there for ``images`` and ``run``, every platform kept.

Media types live here, because they are the destination's choice (as
buildx's ``oci-mediatypes`` is an exporter's attribute): a build is stored
with OCI media types, and each destination gets the form it takes by
default -- Docker media types in a registry (a manifest list, as buildx
pushes) and in a docker archive, OCI ones in a layout or an OCI archive --
unless one form is asked for. The Docker form is a pure transform of the
OCI one (:meth:`Manifest.as_docker`): same blobs, other manifests.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from manyarch.errors import InvalidArgument
from manyarch.images import (
    LayoutSink,
    LayoutSource,
    RegistrySink,
    TransferProgress,
    copy_tree,
    parse_top,
)
from manyarch.layout import Layout, export_docker_archive, export_tar
from manyarch.layout.dockerarchive import CONTAINERD_NAME
from manyarch.oci import mediatypes as mt
from manyarch.oci.manifest import Descriptor, Manifest
from manyarch.oci.reference import LAYOUT_SCHEME, LayoutReference, Reference

if TYPE_CHECKING:  # the registry client (httpx) loads only when a registry is used
    from manyarch.registry import RegistryClient

#: The two families of media types an image can be written with.
MediaTypes = Literal["docker", "oci"]
MEDIA_TYPES: tuple[MediaTypes, ...] = ("docker", "oci")

OCI_ARCHIVE_SCHEME = "oci-archive://"
DOCKER_ARCHIVE_SCHEME = "docker-archive://"


@dataclass(frozen=True)
class RegistryDestination:
    """A tag (or digest) in a registry."""

    ref: Reference

    def __str__(self) -> str:
        return str(self.ref)


@dataclass(frozen=True)
class LayoutDestination:
    """An OCI image layout directory, the image tagged ``tag`` in it (and, as buildx
    does, its full ``name`` kept in ``io.containerd.image.name`` for ``docker load``)."""

    path: Path
    tag: str = "latest"
    name: str | None = None

    def __str__(self) -> str:
        return f"{LAYOUT_SCHEME}{self.path}:{self.tag}"


@dataclass(frozen=True)
class OciArchive:
    """An OCI layout as one tar file (skopeo's ``oci-archive:``)."""

    path: Path
    tag: str = "latest"
    name: str | None = None

    def __str__(self) -> str:
        return f"{OCI_ARCHIVE_SCHEME}{self.path}:{self.tag}"


@dataclass(frozen=True)
class DockerArchive:
    """A ``docker load`` archive of one platform's image, loaded as ``names``."""

    path: Path
    names: tuple[Reference, ...] = field(default=())

    def __str__(self) -> str:
        return f"{DOCKER_ARCHIVE_SCHEME}{self.path}"


@dataclass(frozen=True)
class StoreDestination:
    """The local store itself (``build --load``): the image named ``names`` there."""

    names: tuple[Reference, ...] = field(default=())

    def __str__(self) -> str:
        return "the local store"


Destination = (
    RegistryDestination | LayoutDestination | OciArchive | DockerArchive | StoreDestination
)


def parse_destination(text: str) -> Destination:
    """A destination from its string (see the module's doc)."""
    if text.startswith(LAYOUT_SCHEME):
        ref = LayoutReference.parse(text)
        if ref.digest is not None:
            raise InvalidArgument(f"{text}: a destination is named by a tag, not a digest")
        return LayoutDestination(Path(ref.path), ref.tag or "latest")
    if text.startswith(OCI_ARCHIVE_SCHEME):
        ref = LayoutReference.parse(LAYOUT_SCHEME + text.removeprefix(OCI_ARCHIVE_SCHEME))
        if ref.digest is not None:
            raise InvalidArgument(f"{text}: a destination is named by a tag, not a digest")
        return OciArchive(Path(ref.path), ref.tag or "latest")
    if text.startswith(DOCKER_ARCHIVE_SCHEME):
        path, _, name = text.removeprefix(DOCKER_ARCHIVE_SCHEME).partition(":")
        if not path:
            raise InvalidArgument(f"{text!r} names no file", "write docker-archive://FILE.tar")
        return DockerArchive(Path(path), (Reference.parse(name),) if name else ())
    return RegistryDestination(Reference.parse(text))


def default_media_types(dest: Destination) -> MediaTypes:
    """What a destination gets unless asked: Docker's in a registry and a docker archive."""
    return "docker" if isinstance(dest, RegistryDestination | DockerArchive) else "oci"
    # (the local store keeps a build's OCI form: run, save and push make the others)


def media_types_for(dests: Sequence[Destination]) -> MediaTypes:
    """One form for several destinations of one build: Docker's when any takes it by default."""
    return "docker" if any(default_media_types(d) == "docker" for d in dests) else "oci"


def check_media_types(value: str | None) -> MediaTypes | None:
    """``value`` as a :data:`MediaTypes` (None stays None)."""
    if value is None:
        return None
    if value not in MEDIA_TYPES:
        raise InvalidArgument(f"media types {value!r}: say 'docker' or 'oci'")
    return "docker" if value == "docker" else "oci"


class Stored(Protocol):
    """An image or index in a store, as a build (or a base) returns it."""

    @property
    def store(self) -> Layout:
        """The layout holding it."""
        ...

    @property
    def descriptor(self) -> Descriptor:
        """The index (or the manifest, for one platform)."""
        ...

    @property
    def media_types(self) -> MediaTypes | None:
        """The form it was made in; None: OCI, each destination choosing its own."""
        ...


def in_media_types(store: Layout, desc: Descriptor, media_types: MediaTypes) -> Descriptor:
    """``desc`` in the form asked: itself, or its Docker form written into ``store``.

    An image with OCI media types has a Docker form (the same blobs); one made
    with Docker media types has lost what an OCI form would say (annotations).
    """
    docker = mt.is_docker(desc.media_type)
    if media_types == "oci":
        if docker:
            raise InvalidArgument(
                "this image was made with Docker media types; it has no OCI form",
                "build it with OCI media types (or none chosen) to publish OCI ones",
            )
        return desc
    if docker:
        return desc
    top = parse_top(store.read_document(desc))
    if isinstance(top, Manifest):
        doc = top.as_docker().to_document()
    else:
        children = tuple(in_media_types(store, d, "docker") for d in top.manifests)
        doc = top.as_docker(children).to_document()
    return store.put_document(doc).with_platform(desc.platform)


def publish(
    store: Layout,
    desc: Descriptor,
    dest: Destination,
    *,
    client: RegistryClient | None = None,
    jobs: int = 4,
    progress: TransferProgress | None = None,
) -> str:
    """Copy ``desc`` from ``store`` to ``dest``; returns where it went (``NAME@DIGEST``).

    The children go before the index and the tag last; a file is written
    beside its destination and renamed into place once complete.
    """
    source = LayoutSource(store, str(desc.digest))
    if isinstance(dest, StoreDestination):
        return _name_in_store(store, desc, dest.names)
    if isinstance(dest, RegistryDestination):
        if client is None:
            raise InvalidArgument(f"{dest} is in a registry, and no registry client was given")
        ref = dest.ref
        tag = ref.tag or ("latest" if ref.digest is None else None)
        copy_tree(source, RegistrySink(client, ref), desc, tag=tag, jobs=jobs, progress=progress)
        return f"{ref.name}:{tag}@{desc.digest}" if tag else f"{ref.name}@{desc.digest}"
    if isinstance(dest, LayoutDestination):
        layout = Layout.open(dest.path, create=True)
        copy_tree(source, LayoutSink(layout), desc, tag=dest.tag, progress=progress)
        _keep_name(layout, dest.tag, dest.name)
        return f"{LAYOUT_SCHEME}{dest.path}:{dest.tag}@{desc.digest}"
    parent = dest.path.parent if str(dest.path.parent) else Path(".")
    with tempfile.TemporaryDirectory(prefix=".manyarch-", dir=parent) as tmp:
        layout = Layout.open(Path(tmp) / "layout", create=True)
        if isinstance(dest, OciArchive):
            copy_tree(source, LayoutSink(layout), desc, tag=dest.tag, progress=progress)
            _keep_name(layout, dest.tag, dest.name)
            export_tar(layout, dest.path)
            return f"{OCI_ARCHIVE_SCHEME}{dest.path}:{dest.tag}@{desc.digest}"
        image = _one_platform(store, desc)
        first = dest.names[0] if dest.names else None
        copy_tree(source, LayoutSink(layout), image, progress=progress)
        if first is not None:
            name = str(first.tagged_or_latest())
            layout.tag(name, image.with_annotations(**{CONTAINERD_NAME: name}))
        export_docker_archive(layout, dest.path, [(image, dest.names)])
        return f"{DOCKER_ARCHIVE_SCHEME}{dest.path}@{image.digest}"


def _keep_name(layout: Layout, tag: str, name: str | None) -> None:
    if name:
        layout.tag(tag, layout.resolve(tag).with_annotations(**{CONTAINERD_NAME: name}))


def _name_in_store(store: Layout, desc: Descriptor, names: Sequence[Reference]) -> str:
    """Tag ``desc`` in the local store as ``pull`` and ``load`` do (``none@DIGEST`` unnamed)."""
    tags = [str(n.tagged_or_latest()) for n in names] or [f"none@{desc.digest}"]
    plain = Descriptor(desc.media_type, desc.digest, desc.size, desc.platform)
    for tag in tags:
        # the full name, and the digest it resolved to, as a pull records them
        notes = {CONTAINERD_NAME: tag, "io.manyarch.repo.digest": str(desc.digest)}
        store.tag(tag, plain.with_annotations(**notes))
    return ", ".join(f"{t}@{desc.digest}" for t in tags) + " (local store)"


def _one_platform(store: Layout, desc: Descriptor) -> Descriptor:
    """The one manifest a docker archive can hold (an index of one platform gives its own)."""
    top = parse_top(store.read_document(desc))
    if isinstance(top, Manifest):
        return desc
    images = top.images()
    if len(images) != 1:
        plats = ", ".join(str(m.platform) for m in images)
        raise InvalidArgument(
            f"a docker archive holds one platform, and this image has {plats}",
            "build one platform for a docker archive, or write an OCI archive",
        )
    return images[0]


def metadata(
    desc: Descriptor, names: Sequence[str], config: object | None = None
) -> dict[str, Any]:
    """What buildx writes to ``--metadata-file`` about a built image."""
    plain = Descriptor(desc.media_type, desc.digest, desc.size)
    data: dict[str, Any] = {
        "containerimage.descriptor": plain.to_json(),
        "containerimage.digest": str(desc.digest),
    }
    if config is not None:
        data["containerimage.config.digest"] = str(config)
    if names:
        data["image.name"] = ",".join(names)
    return data


def write_metadata(
    path: Path, desc: Descriptor, names: Sequence[str], config: object | None = None
) -> None:
    """:func:`metadata` as buildx writes it to a file."""
    path.write_text(json.dumps(metadata(desc, names, config), indent=2) + "\n")
