"""A tiny two-platform Debian base (dash + coreutils) for cheap build tests.

``mmdebstrap --variant=extract`` unpacks dash and coreutils (with libc) for
amd64 and arm64 without running anything; docs, locales and gconv are dropped,
and ``/etc/passwd`` gets ``root`` and ``app`` (1000). Built once (~10 s) into
``$XDG_CACHE_HOME/manyarch-tests/tiny`` (else ``/var/tmp/manyarch-tests/tiny``),
keyed on :data:`VERSION`; later sessions only open the layout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from manyarch.layers import write_layer_from_dir
from manyarch.layout import Layout
from manyarch.oci import mediatypes as mt
from manyarch.oci.manifest import ContainerConfig, Descriptor, History, ImageConfig, Index, Manifest
from manyarch.oci.platform import Platform
from tests.helpers.images import LayoutImage, tests_cache_dir

VERSION = "2"
EPOCH = 1700000000
TAG = "tiny"
PLATFORMS = (Platform.parse("linux/amd64"), Platform.parse("linux/arm64"))
DROP = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
    "usr/share/i18n",
    "usr/share/info",
    "usr/share/lintian",
    "usr/lib/x86_64-linux-gnu/gconv",
    "usr/lib/aarch64-linux-gnu/gconv",
    "var/cache",
    "var/lib/apt",
    "var/log",
    "etc/resolv.conf",  # mmdebstrap leaves the host's; the sandbox mounts it at run time
    "etc/hostname",
)
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\n"


class TinyBase(LayoutImage):
    """An OCI layout holding the tiny base index under ``tag``."""


def _rootfs(platform: Platform, work: Path) -> Path:
    tar = work / f"{platform.architecture}.tar"
    subprocess.run(
        [
            "mmdebstrap", "--quiet", "--variant=extract", "--include=dash,coreutils",
            f"--architectures={platform.architecture}", "bookworm", str(tar),
            "http://deb.debian.org/debian",
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    root = work / platform.architecture
    root.mkdir()
    with tarfile.open(tar) as tf:
        tf.extractall(root, filter="fully_trusted")
    tar.unlink()
    for rel in DROP:
        p = root / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    for d in ("tmp", "root", "home/app"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chown(root / "home/app", 1000, 1000)
    return root


def _image(layout: Layout, platform: Platform, root: Path) -> Descriptor:
    with layout.writer() as w:
        info = write_layer_from_dir(root, cast(BinaryIO, w), epoch=EPOCH)
        w.commit(info.digest)
    config = ImageConfig(
        platform.architecture,
        platform.os,
        platform.variant,
        created="2023-11-14T22:13:20Z",
        config=ContainerConfig(env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin",), cmd=("/bin/sh",)),
        diff_ids=(info.diff_id,),
        history=(History(created_by="tiny base: dash coreutils", comment="tests"),),
    )
    cdesc = layout.put_document(config.to_document())
    manifest = Manifest(
        config=Descriptor(cdesc.media_type, cdesc.digest, cdesc.size),
        layers=(info.descriptor(),),
        media_type=mt.OCI_MANIFEST,
    )
    return layout.put_document(manifest.to_document()).with_platform(platform)


def build_tiny_base(dest: Path) -> None:
    """Build the tiny base into a new OCI layout at ``dest``."""
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        work = Path(tmp)
        layout_path = work / "layout"
        layout = Layout.open(layout_path, create=True)
        with ThreadPoolExecutor(2) as pool:
            roots = list(pool.map(lambda p: _rootfs(p, work), PLATFORMS))
        descs = tuple(_image(layout, p, r) for p, r in zip(PLATFORMS, roots, strict=True))
        layout.tag(TAG, layout.put_document(Index(descs).to_document()))
        try:
            layout_path.rename(dest)
        except OSError:
            if not (dest / "index.json").exists():
                raise


@pytest.fixture(scope="session")
def tiny_base() -> TinyBase:
    """The tiny dash+coreutils base for linux/amd64 and linux/arm64 (cached)."""
    if not shutil.which("mmdebstrap"):
        pytest.skip("mmdebstrap is not installed")
    dest = tests_cache_dir("tiny") / f"v{VERSION}"
    if not (dest / "index.json").exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        build_tiny_base(dest)
    return TinyBase(dest, TAG)
