"""A small real two-platform image, written with Layout, for the layout tests."""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from manyarch.layout import Layout
from manyarch.oci import (
    ContainerConfig,
    Descriptor,
    Digest,
    History,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    mediatypes,
)

ARCHES = ("amd64", "arm64")


@dataclass
class PlatformImage:
    """One platform's manifest and what it points at."""

    platform: Platform
    manifest: Descriptor
    config: Descriptor
    layer: Descriptor
    diff_id: Digest
    content: bytes


@dataclass
class Image:
    """A two-platform index stored (untagged) in a layout."""

    layout: Layout
    index: Descriptor
    index_bytes: bytes
    platforms: dict[str, PlatformImage]


def make_layer(root: Path) -> tuple[bytes, bytes]:
    """A deterministic tar of ``root`` and its gzip (mtime 0, owner 0, sorted)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(root)))
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isfile():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    raw = buf.getvalue()
    return raw, gzip.compress(raw, mtime=0)


def write_image(layout: Layout, tmp: Path) -> Image:
    """Build the two-platform image from a tmp tree and store it."""
    platforms: dict[str, PlatformImage] = {}
    for arch in ARCHES:
        tree = tmp / f"tree-{arch}"
        (tree / "etc").mkdir(parents=True)
        content = f"hello from linux/{arch}\n".encode()
        (tree / "etc" / "hello.txt").write_bytes(content)
        raw, gz = make_layer(tree)
        diff_id = Digest.of(raw)
        layer = Descriptor(mediatypes.OCI_LAYER_GZIP, layout.put_blob(gz), len(gz))
        config = ImageConfig(
            architecture=arch,
            os="linux",
            created="2024-01-01T00:00:00Z",
            config=ContainerConfig(cmd=("/bin/sh",), env=("PATH=/usr/bin:/bin",)),
            diff_ids=(diff_id,),
            history=(History(created="2024-01-01T00:00:00Z", created_by="test layer"),),
        )
        config_desc = layout.put_document(config.to_document())
        manifest = Manifest(config=config_desc, layers=(layer,))
        platform = Platform.of("linux", arch)
        manifest_desc = layout.put_document(manifest.to_document()).with_platform(platform)
        platforms[arch] = PlatformImage(
            platform, manifest_desc, config_desc, layer, diff_id, content
        )
    index_doc = Index(manifests=tuple(p.manifest for p in platforms.values())).to_document()
    index_desc = layout.put_document(index_doc)
    return Image(layout, index_desc, index_doc.data, platforms)
