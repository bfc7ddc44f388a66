"""Base images: a deterministic layer and a config per platform, cached; an index over them."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from manyarch.baseimage.finish import RootfsInfo
from manyarch.baseimage.mmdebstrap import (
    check_mirror,
    mmdebstrap_path,
    prepare_rootfs,
    require_root,
)
from manyarch.baseimage.options import (
    CA_BUNDLE,
    DEFAULT_PATH,
    LABEL_PREFIX,
    OFFICIAL_PYTHON_PATH,
    BaseOptions,
    BaseProgress,
)
from manyarch.debian.archs import debian_arch
from manyarch.debian.deb import Package
from manyarch.errors import ManyarchError
from manyarch.layers import write_layer_from_dir
from manyarch.layout import Layout
from manyarch.oci.digest import Digest
from manyarch.oci.document import Document
from manyarch.oci.manifest import (
    ContainerConfig,
    Descriptor,
    History,
    ImageConfig,
    Index,
    Manifest,
)
from manyarch.oci.platform import Platform
from manyarch.units import rfc3339

log = logging.getLogger("manyarch.base")


@contextlib.contextmanager
def _work_dir(parent: Path, prefix: str) -> Iterator[Path]:
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _timed(progress: BaseProgress | None, platform: Platform, step: str, start: float) -> float:
    now = time.monotonic()
    log.info("%s: %s (%.1fs)", platform, step, now - start)
    if progress is not None:
        progress(platform, step, now - start)
    return now


# -- images --------------------------------------------------------------------------

ENTRY_TAG = "image"
ENTRY_META = "base.json"


@dataclass(frozen=True)
class PlatformImage:
    """One platform's base image, stored in its cache entry (an OCI layout)."""

    platform: Platform
    key: str
    layout_path: Path
    manifest: Descriptor
    packages: tuple[Package, ...]
    os_release: Mapping[str, str]
    cached: bool

    def layout(self) -> Layout:
        """The cache entry's layout."""
        return Layout.open(self.layout_path)


@dataclass(frozen=True)
class BaseImage:
    """A multi-platform base: one image per platform, in the order asked for."""

    options: BaseOptions
    images: tuple[PlatformImage, ...]

    @property
    def index(self) -> Index:
        """The image index over the platform manifests."""
        return Index(manifests=tuple(i.manifest for i in self.images))

    def index_document(self) -> Document:
        """The index's bytes (its digest is the image's digest)."""
        return self.index.to_document()

    @property
    def digest(self) -> Digest:
        """The index digest."""
        return self.index_document().digest


def packages_epoch(rootfs: Path, before: float) -> int | None:
    """The newest mtime of the files the packages brought (those older than ``before``).

    A base made without SOURCE_DATE_EPOCH is as old as its newest package: the
    files a .deb unpacks keep the package's build time, while those written
    while finishing the rootfs are newer than ``before`` (when it started).
    None when no file qualifies.
    """
    newest = -1
    for dirpath, _dirs, files in os.walk(rootfs):
        for name in files:
            try:
                mtime = os.lstat(os.path.join(dirpath, name)).st_mtime
            except OSError:
                continue
            if mtime < before and mtime > newest:
                newest = int(mtime)
    return newest if newest >= 0 else None


def image_config(
    opts: BaseOptions,
    platform: Platform,
    info: RootfsInfo,
    diff_id: Digest,
    has_shell: bool,
    epoch: int | None = None,
) -> ImageConfig:
    """The config of one platform's base image; created at SOURCE_DATE_EPOCH, else ``epoch``."""
    when = opts.epoch if opts.epoch is not None else epoch
    created = rfc3339(when) if when is not None else None
    env = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8", "SSL_CERT_FILE": CA_BUNDLE}
    cmd: tuple[str, ...] | None = ("/bin/sh",) if has_shell else None
    if opts.preset == "python-slim":
        # The official python:3.X-slim's environment (its PATH repeats /usr/local/bin).
        env = {"PATH": OFFICIAL_PYTHON_PATH, "LANG": "C.UTF-8"}
    if opts.preset.startswith("python") and info.python_version:
        env["PYTHON_VERSION"] = info.python_version
        cmd = ("python3",)
    labels = {
        LABEL_PREFIX + "suite": opts.suite,
        LABEL_PREFIX + "mirror": opts.mirror,
        LABEL_PREFIX + "preset": opts.preset,
        LABEL_PREFIX + "packages": ",".join(opts.packages),
    }
    if opts.patterns:
        labels[LABEL_PREFIX + "patterns"] = ",".join(opts.patterns)
    if opts.preset == "python-slim" and info.python_version:
        labels[LABEL_PREFIX + "python"] = info.python_version
    if info.os_release.get("PRETTY_NAME"):
        labels[LABEL_PREFIX + "os"] = info.os_release["PRETTY_NAME"]
    argv = f"manyarch base --suite {opts.suite} --preset {opts.preset}"
    if opts.include:
        argv += f" --include {','.join(sorted(opts.include))}"
    history = History(
        created=created,
        created_by=argv,
        comment=f"{len(info.packages)} Debian packages from {opts.mirror}",
    )
    return ImageConfig(
        architecture=platform.architecture,
        os=platform.os,
        variant=platform.variant,
        created=created,
        config=ContainerConfig(
            env=tuple(f"{k}={v}" for k, v in env.items()),
            cmd=cmd,
            labels=labels,
        ),
        diff_ids=(diff_id,),
        history=(history,),
    )


def _load_entry(opts: BaseOptions, platform: Platform, path: Path) -> PlatformImage | None:
    meta = path / ENTRY_META
    if not meta.is_file():
        return None
    try:
        layout = Layout.open(path)
        desc = layout.resolve(ENTRY_TAG)
        manifest = Manifest.parse(layout.read_document(desc))
        for d in (manifest.config, *manifest.layers):
            if not layout.has_blob(d.digest):
                return None
        obj = json.loads(meta.read_text())
    except (ManyarchError, OSError, ValueError):
        log.debug("cache entry %s is unusable; rebuilding", path)
        return None
    return PlatformImage(
        platform=platform,
        key=path.name,
        layout_path=path,
        manifest=desc.with_platform(platform),
        packages=tuple(Package.from_json(p) for p in obj.get("packages", ())),
        os_release=dict(obj.get("os_release", {})),
        cached=True,
    )


@contextlib.contextmanager
def _entry_lock(cache_dir: Path, key: str) -> Iterator[None]:
    # Two builds of the same inputs (two terminals, two pytest sessions) wait
    # for each other instead of unpacking the same packages twice.
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".{key}.lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_platform(
    opts: BaseOptions, platform: Platform, progress: BaseProgress | None = None
) -> PlatformImage:
    """One platform's image: from the cache when there, else built into it."""
    key = opts.cache_key(platform)
    entry = opts.cache_dir / key
    start = time.monotonic()
    with _entry_lock(opts.cache_dir, key):
        if opts.use_cache:
            found = _load_entry(opts, platform, entry)
            if found is not None:
                _timed(progress, platform, "cached", start)
                return found
        with _work_dir(opts.cache_dir, f".work-{debian_arch(platform)}-") as work:
            rootfs = work / "rootfs"
            rootfs.mkdir()
            began = time.time()
            t = start

            def step(what: str) -> None:
                nonlocal t
                t = _timed(progress, platform, what, t)

            info = prepare_rootfs(opts, platform, rootfs, step)
            done = "installed" if opts.configured else "unpacked"
            t = _timed(progress, platform, f"{len(info.packages)} packages {done}", t)
            staged = work / "entry"
            desc, size = _store_image(opts, platform, rootfs, info, staged, began)
            shutil.rmtree(rootfs)
            _timed(progress, platform, f"layer {size / 1e6:.1f} MB", t)
            # The entry appears whole or not at all: a rename within the cache directory.
            if entry.exists():
                os.replace(entry, work / "replaced")
            os.replace(staged, entry)
    return PlatformImage(
        platform=platform,
        key=key,
        layout_path=entry,
        manifest=desc.with_platform(platform),
        packages=info.packages,
        os_release=info.os_release,
        cached=False,
    )


def _store_image(
    opts: BaseOptions,
    platform: Platform,
    rootfs: Path,
    info: RootfsInfo,
    dest: Path,
    began: float,
) -> tuple[Descriptor, int]:
    layout = Layout.open(dest, create=True)
    with layout.writer() as w:
        layer = write_layer_from_dir(
            rootfs, cast(BinaryIO, w), compression="gzip", epoch=opts.epoch
        )
        w.commit(layer.digest)
    has_shell = (rootfs / "usr/bin/sh").exists() or (rootfs / "bin/sh").exists()
    epoch = None if opts.epoch is not None else packages_epoch(rootfs, began)
    config = image_config(opts, platform, info, layer.diff_id, has_shell, epoch)
    config_desc = layout.put_document(config.to_document())
    manifest = Manifest(config=config_desc, layers=(layer.descriptor(),))
    desc = layout.put_document(manifest.to_document())
    layout.tag(ENTRY_TAG, desc)
    meta = {
        "platform": str(platform),
        "suite": opts.suite,
        "mirror": opts.mirror,
        "packages": [p.to_json() for p in info.packages],
        "os_release": dict(info.os_release),
    }
    (dest / ENTRY_META).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return desc, layer.size


def build_base(opts: BaseOptions, progress: BaseProgress | None = None) -> BaseImage:
    """Build (or take from the cache) every platform's image, in parallel.

    Nothing outside the cache is written; a failed platform leaves no cache
    entry. The first error is raised once every platform has finished.
    """
    pending = [
        p
        for p in opts.platforms
        if not (opts.use_cache and _load_entry(opts, p, opts.cache_dir / opts.cache_key(p)))
    ]
    if pending:
        mmdebstrap_path()
        require_root()
        check_mirror(opts)
    with ThreadPoolExecutor(max_workers=len(opts.platforms)) as pool:
        futures = [pool.submit(build_platform, opts, p, progress) for p in opts.platforms]
        errors = [f.exception() for f in futures]
    for e in errors:
        if e is not None:
            raise e
    return BaseImage(opts, tuple(f.result() for f in futures))
