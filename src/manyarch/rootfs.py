"""Root filesystems for containers: one unpacked tree per image, a writable view per container.

The tree of an image is unpacked once, under ``$XDG_DATA_HOME/manyarch/rootfs/<manifest
hex>``, and never written again. A container sees it through overlayfs (lower: the
tree; upper and work: the container's directory), mounted by root; without root,
or where overlayfs refuses, it gets a copy (``cp -a --reflink=auto``, cheap on
btrfs and xfs).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from manyarch.errors import SandboxError
from manyarch.layers import unpack
from manyarch.layout import Layout
from manyarch.oci.digest import Digest
from manyarch.oci.manifest import ImageConfig, Manifest
from manyarch.store import data_home, private_data_dir

COMPLETE = ".manyarch-complete"


def cache_dir() -> Path:
    """Where unpacked image trees live."""
    return data_home() / "rootfs"


def cached_path(manifest_digest: Digest) -> Path:
    """The unpacked tree of one manifest (whether or not it exists yet)."""
    return cache_dir() / manifest_digest.hex


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def unpacked(store: Layout, manifest_digest: Digest, manifest: Manifest) -> Path:
    """The image's tree, unpacked now unless a previous run (or another process) did."""
    dest = cached_path(manifest_digest)
    if (dest / COMPLETE).exists():
        return dest
    private_data_dir(cache_dir().name)
    with _locked(cache_dir() / f".{manifest_digest.hex}.lock"):
        if (dest / COMPLETE).exists():
            return dest
        if dest.exists():
            shutil.rmtree(dest)  # an unpack that was interrupted
        # under the lock no one else unpacks this image: any temporary tree is a dead one's
        for stale in cache_dir().glob(f".tmp-{manifest_digest.hex}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = cache_dir() / f".tmp-{manifest_digest.hex}-{os.getpid()}"
        config = ImageConfig.parse(store.read_document(manifest.config))
        try:
            unpack(
                tmp,
                [(str(d.digest), store.blob_path(d.digest), d.media_type) for d in manifest.layers],
                diff_ids=config.diff_ids,
            )
            (tmp / COMPLETE).touch()
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def remove_stale_unpacks() -> int:
    """Remove the temporary trees of unpacks that were killed; returns how many went.

    A tree whose image's lock is held belongs to a live unpack and stays.
    """
    removed = 0
    if not cache_dir().is_dir():
        return 0
    for tmp in sorted(cache_dir().glob(".tmp-*")):
        hexdigest = tmp.name.removeprefix(".tmp-").rsplit("-", 1)[0]
        lock = cache_dir() / f".{hexdigest}.lock"
        try:
            with open(lock, "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(tmp, ignore_errors=True)
                removed += 1
        except BlockingIOError:
            continue
    return removed


def remove_cached(manifest_digest: Digest) -> bool:
    """Remove an unpacked tree; False when there was none."""
    dest = cached_path(manifest_digest)
    if not dest.exists():
        return False
    with _locked(cache_dir() / f".{manifest_digest.hex}.lock"):
        shutil.rmtree(dest, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (cache_dir() / f".{manifest_digest.hex}.lock").unlink()
    return True


def cached_digests() -> list[Digest]:
    """Manifests that have an unpacked tree."""
    out = []
    if cache_dir().is_dir():
        for p in sorted(cache_dir().iterdir()):
            if (p / COMPLETE).exists():
                out.append(Digest("sha256", p.name))
    return out


def mounted_lowers(mounts: Path = Path("/proc/self/mounts")) -> set[Path]:
    """Unpacked trees an overlay mount (a container or a build) is using right now."""
    out: set[Path] = set()
    try:
        text = mounts.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "overlay":
            for opt in fields[3].split(","):
                if opt.startswith("lowerdir="):
                    out.update(Path(p) for p in opt.removeprefix("lowerdir=").split(":"))
    return out


def prune_unused(keep: set[str]) -> list[Digest]:
    """Remove unpacked trees whose manifest is not in ``keep`` and no mount uses."""
    busy = mounted_lowers()
    removed = []
    for digest in cached_digests():
        if str(digest) in keep or cached_path(digest) in busy:
            continue
        if remove_cached(digest):
            removed.append(digest)
    return removed


@dataclass
class View:
    """A container's writable view of an image tree, at ``<dir>/rootfs``."""

    lower: Path
    directory: Path
    mode: str = ""  # "overlay" or "copy" once mounted

    @property
    def path(self) -> Path:
        """The root the container sees."""
        return self.directory / "rootfs"

    def mount(self, *, prefer_overlay: bool = True) -> None:
        """Mount the overlay (root) or make the copy."""
        self.path.mkdir(parents=True, exist_ok=True)
        if prefer_overlay and os.geteuid() == 0 and _overlay_ok(self.lower, self.directory):
            upper, work = self.directory / "upper", self.directory / "work"
            upper.mkdir(exist_ok=True)
            work.mkdir(exist_ok=True)
            opts = f"lowerdir={self.lower},upperdir={upper},workdir={work}"
            r = subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o", opts, str(self.path)],
                capture_output=True,
                text=True,
            )
            if r.returncode == 0:
                self.mode = "overlay"
                return
        if any(self.path.iterdir()):
            self.mode = "copy"  # a copy made by an earlier start
            return
        r = subprocess.run(
            ["cp", "-a", "--reflink=auto", f"{self.lower}/.", str(self.path)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise SandboxError(f"cannot copy the image's rootfs: {r.stderr.strip()}")
        (self.path / COMPLETE).unlink(missing_ok=True)
        self.mode = "copy"

    def unmount(self) -> None:
        """Unmount the overlay (lazily if something still holds it)."""
        if is_mountpoint(self.path):
            r = subprocess.run(["umount", str(self.path)], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", str(self.path)], capture_output=True)

    def remove(self) -> None:
        """Unmount and delete everything the container wrote."""
        self.unmount()
        if not is_mountpoint(self.path):
            shutil.rmtree(self.directory, ignore_errors=True)


def _overlay_ok(lower: Path, directory: Path) -> bool:
    # overlayfs options are comma- and colon-separated: such paths cannot be given
    return not any(c in str(p) for p in (lower, directory) for c in ",:\\")


def mounts_under(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Path]:
    """The mount points at or below ``path``, deepest first."""
    try:
        text = mountinfo.read_text()
    except OSError:
        return []
    top = os.fspath(path.resolve())
    found: list[Path] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        # the kernel escapes space, tab, newline and backslash as octal
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if point == top or point.startswith(top.rstrip("/") + "/"):
            found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_under(path: Path) -> bool:
    """Unmount everything mounted at or below ``path`` (lazily when busy); True when all went."""
    for point in mounts_under(path):
        r = subprocess.run(["umount", str(point)], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True)
    return not mounts_under(path)


def is_mountpoint(path: Path) -> bool:
    """Whether something is mounted at ``path``."""
    try:
        return os.path.ismount(path)
    except OSError:
        return False
