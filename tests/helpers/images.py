"""Small real images made in the tests: a few files per platform, no emulation needed."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple, cast

from manyarch.layers import EntryType, TarEntry, write_layer
from manyarch.layout import Layout
from manyarch.oci import ContainerConfig, Descriptor, History, ImageConfig, Index, Manifest
from manyarch.oci import mediatypes as mt
from manyarch.oci.platform import Platform


class LayoutImage(NamedTuple):
    """An OCI layout holding an image (an index) under ``tag``."""

    layout: Path
    tag: str

    @property
    def ref(self) -> str:
        """``oci-layout://PATH:TAG``, as ``FROM`` or ``--build-context`` take it."""
        return f"oci-layout://{self.layout}:{self.tag}"


#: Where the tests keep what they make between sessions: read once, when the session starts
#: (a test's ``isolated_build`` points XDG_CACHE_HOME at its own directory for manyarch).
_CACHE_ROOT = (
    Path(os.environ["XDG_CACHE_HOME"]) / "manyarch-tests"
    if os.environ.get("XDG_CACHE_HOME")
    else Path("/var/tmp/manyarch-tests")
)


def tests_cache_dir(name: str) -> Path:
    """Where images the tests make are kept between sessions, under ``name``."""
    return _CACHE_ROOT / name


def image_for(
    layout: Layout, platform: Platform, *, docker: bool = False, shared: bytes = b"shared\n"
) -> Descriptor:
    """One platform's image: a layer shared by every platform and one of its own."""
    layers = []
    cfg = ImageConfig(
        platform.architecture,
        platform.os,
        platform.variant,
        config=ContainerConfig(env=("PATH=/usr/bin:/bin",), cmd=("/bin/sh",)),
        media_type=mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG,
    )
    for entries in (
        [TarEntry("app", EntryType.DIR, 0o755), TarEntry("app/shared.txt", source=shared)],
        [
            TarEntry("etc", EntryType.DIR, 0o755),
            TarEntry("etc/arch", source=str(platform).encode()),
        ],
    ):
        with layout.writer() as w:
            info = write_layer(entries, cast(BinaryIO, w), docker=docker)
            w.commit(info.digest)
        layers.append(info.descriptor())
        cfg = cfg.with_layer(info.diff_id, History(created_by="test"))
    cdesc = layout.put_document(cfg.to_document())
    manifest = Manifest(
        cdesc, tuple(layers), media_type=mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST
    )
    return layout.put_document(manifest.to_document()).with_platform(platform)


def make_index(
    path: Path,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    *,
    tag: str = "latest",
    docker: bool = False,
) -> tuple[Layout, Descriptor]:
    """An OCI layout at ``path`` holding a multi-platform index under ``tag``."""
    layout = Layout.open(path, create=True)
    descs = tuple(image_for(layout, Platform.parse(p), docker=docker) for p in platforms)
    media_type = mt.DOCKER_MANIFEST_LIST if docker else mt.OCI_INDEX
    desc = layout.put_document(Index(descs, media_type).to_document())
    layout.tag(tag, desc)
    return layout, desc
