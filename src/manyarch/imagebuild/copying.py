"""COPY and ADD: their sources (from the context, never outside it, or another root) and
how files land in the image, with BuildKit's ownership, mode and mtime rules."""

from __future__ import annotations

import bz2
import glob
import gzip
import lzma
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from manyarch import dockerfile as df
from manyarch.errors import BuildError
from manyarch.imagebuild.contextfiles import read_context_text
from manyarch.layers import unpack
from manyarch.oci import mediatypes as mt
from manyarch.sandbox.rootpath import glob_in_root, in_root, resolve_in_root
from manyarch.sandbox.users import resolve_user


def copy_targets(step: df.CopyStep, sources: Sequence[tuple[Path, str]]) -> list[str]:
    """The image paths a COPY writes at the top (each file, or each directory's dest)."""
    many = len(sources) > 1 or any(is_dir(s) for s, _ in sources)
    dest_is_dir = step.dest.endswith("/") or many
    out = []
    for src, _ in sources:
        if is_dir(src):
            out.append(step.dest)
        else:
            out.append(step.dest.rstrip("/") + "/" + src.name if dest_is_dir else step.dest)
    return out


def copy_into(
    step: df.CopyStep,
    sources: Sequence[tuple[Path, str]],
    rootfs: Path,
    *,
    epoch: int | None,
    ignore: df.DockerIgnore | None,
) -> None:
    """COPY/ADD ``sources`` (see :func:`expand_sources`) into ``rootfs``."""
    owner = None
    if step.chown:
        ids = resolve_user(rootfs, step.chown)
        owner = (ids.uid, ids.gid)
    mode = int(step.chmod, 8) if step.chmod else None
    with keep_times(rootfs, step.dest) as times:
        copier = Copier(owner, mode, ignore if step.from_ is None else None, times)
        many = len(sources) > 1 or any(is_dir(s) for s, _ in sources)
        dest_is_dir = step.dest.endswith("/") or many
        for src, rel in sources:
            if step.extract_tar and not is_dir(src) and extract(src, rootfs, step.dest):
                continue
            if is_dir(src):
                target = resolve_in_root(rootfs, step.dest)
                copier.created(mkdirs(rootfs, step.dest, owner, epoch), epoch)
                copier.tree(src, target, rel)
                copier.dir_times(src, target)
            else:
                name = step.dest.rstrip("/") + "/" + src.name if dest_is_dir else step.dest
                parent = str(Path(name).parent)
                copier.created(mkdirs(rootfs, parent, owner, epoch), epoch)
                copier.one(src, resolve_in_root(rootfs, parent) / Path(name).name)


@contextmanager
def keep_times(rootfs: Path, dest: str) -> Iterator[list[tuple[Path, int]]]:
    """Put back the mtimes of the existing directories on the way to ``dest``."""
    saved: list[tuple[Path, int]] = []
    p = resolve_in_root(rootfs, dest)
    chain = [p, *p.parents]
    for d in chain:
        if d == rootfs.parent:
            break
        if d.is_dir() and not d.is_symlink():
            saved.append((d, d.lstat().st_mtime_ns))
    later: list[tuple[Path, int]] = []
    yield later
    for d, t in [*later, *saved]:
        if d.is_dir() and not d.is_symlink():
            os.utime(d, ns=(t, t), follow_symlinks=False)


def mkdirs(rootfs: Path, path: str, owner: tuple[int, int] | None, epoch: int | None) -> list[Path]:
    """Create ``path`` in the rootfs; new directories get the epoch's mtime."""
    target = resolve_in_root(rootfs, path)
    missing = []
    p = target
    while not (p.exists() or p.is_symlink()) and p != rootfs:
        missing.append(p)
        p = p.parent
    target.mkdir(parents=True, exist_ok=True)
    t = (epoch or 0) * 10**9
    for d in missing:
        if owner is not None:
            os.lchown(d, *owner)
    for d in missing:  # deepest first: creating a child touches its parent
        os.utime(d, ns=(t, t), follow_symlinks=False)
    return missing


def extract(src: Path, rootfs: Path, dest: str) -> bool:
    """ADD of a local tar archive: unpack it into ``dest``; False when not a tar."""
    stream = _open_archive(src)
    if stream is None:
        return False
    target = resolve_in_root(rootfs, dest)
    with stream:
        unpack(target, [(f"ADD {src.name}", stream, mt.OCI_LAYER)])
    return True


def is_dir(p: Path) -> bool:
    return p.is_dir() and not p.is_symlink()


def _open_archive(src: Path) -> BinaryIO | None:
    """The uncompressed stream of a tar archive (plain, gzip, bzip2, xz), else None."""
    try:
        with _decompressed(src) as f:
            block = f.read(512)
        if len(block) < 512 or not _tar_header(block):
            return None
    except (OSError, EOFError, lzma.LZMAError):
        return None
    return _decompressed(src)


def _decompressed(src: Path) -> BinaryIO:
    with open(src, "rb") as f:
        head = f.read(6)
    if head.startswith(b"BZh"):
        return cast(BinaryIO, bz2.open(src, "rb"))
    if head.startswith(b"\xfd7zXZ\x00"):
        return cast(BinaryIO, lzma.open(src, "rb"))
    if head.startswith(b"\x1f\x8b"):
        return cast(BinaryIO, gzip.open(src, "rb"))
    return open(src, "rb")


def _tar_header(block: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def expand_sources(
    base: Path, step: df.CopyStep, ignore: df.DockerIgnore | None
) -> list[tuple[Path, str]]:
    """The source paths of a COPY under ``base`` (the context or another root).

    Errors say what is wrong with a source; the step's file and line are the
    caller's to add (:class:`~manyarch.errors.StepFailed`).
    """
    confine = step.from_ is None
    what = "ADD" if step.is_add else "COPY"
    out: list[tuple[Path, str]] = []
    for pat in step.sources:
        rel = os.path.normpath(pat.lstrip("/")) if pat not in ("", ".", "/") else "."
        if rel == ".." or rel.startswith("../"):
            raise BuildError(
                f"{what} source {pat!r} is outside the build context",
                "a source must be inside the context directory",
            )
        if any(ch in rel for ch in "*?["):
            # another root: its symlinks lead inside it, never to the host's files
            matches = (
                sorted(glob.glob(rel, root_dir=str(base))) if confine else glob_in_root(base, rel)
            )
            for m in matches:
                if confine:
                    _check_confined(base, m, pat, what)
            kept = [m for m in matches if not (ignore and ignore.matches(m))]
            if not kept:
                raise BuildError(
                    f"{what} source {pat!r}: no source files were specified",
                    "check the pattern (relative to the context) and .dockerignore",
                )
            out.extend((base / m if confine else in_root(base, m), m) for m in kept)
            continue
        path = base / rel if rel != "." else base
        if confine:
            _check_confined(base, rel, pat, what)
        if not confine and rel != ".":
            path = resolve_in_root(base, rel)
        if not (path.exists() or path.is_symlink()) or (
            ignore is not None and rel != "." and ignore.matches(rel)
        ):
            raise BuildError(
                f"{what} source {pat!r}: not found in the "
                + ("build context" if confine else "source stage or image"),
                "check the path (relative to the context) and .dockerignore",
            )
        out.append((path, rel))
    return out


def _check_confined(base: Path, rel: str, pat: str, what: str) -> None:
    """Refuse a source reached through a symlink that leads out of ``base``.

    Every component but the last must resolve inside the context; the last one,
    when it is a symlink, is copied as a symlink (never followed), unless the
    pattern asks for its contents (a trailing ``/``).
    """
    path = base / rel if rel != "." else base
    parent = path.parent.resolve() if rel != "." else base
    target = path.resolve() if pat.endswith("/") and path.is_symlink() else parent
    for p in (parent, target):
        if p != base and base not in p.parents:
            raise BuildError(
                f"{what} source {pat!r} escapes the build context (through a symbolic link)",
                "a source must be inside the context directory; copy the files into it",
            )


def read_dockerignore(context: Path) -> df.DockerIgnore | None:
    p = context / ".dockerignore"
    text = read_context_text(context, p, missing_ok=True)
    return None if text is None else df.DockerIgnore.parse(text, file=str(p))


@dataclass
class Copier:
    """Copies files and trees with BuildKit's ownership and mode rules."""

    owner: tuple[int, int] | None
    mode: int | None
    ignore: df.DockerIgnore | None
    times: list[tuple[Path, int]]

    def tree(self, src: Path, dst: Path, rel: str) -> None:
        """The contents of ``src`` into ``dst``; ignored paths stay out."""
        for entry in sorted(src.iterdir()):
            erel = entry.name if rel in ("", ".") else f"{rel}/{entry.name}"
            ignored = self.ignore is not None and self.ignore.matches(erel)
            if ignored and not (self.ignore and self.ignore.has_exclusions and is_dir(entry)):
                continue
            target = dst / entry.name
            if is_dir(entry):
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    _remove(target)
                existed = target.exists()
                target.mkdir(exist_ok=True)
                shutil.copymode(entry, target)
                self.own(target)
                self.tree(entry, target, erel)
                if ignored and not existed and not any(target.iterdir()):
                    target.rmdir()  # entered only to look for re-included paths
                    continue
                self.dir_times(entry, target)
            else:
                self.one(entry, target)

    def created(self, dirs: Sequence[Path], epoch: int | None) -> None:
        """Directories the step created keep the epoch's mtime (0 without one)."""
        t = (epoch or 0) * 10**9
        self.times.extend((d, t) for d in dirs)

    def dir_times(self, src: Path, dst: Path) -> None:
        """Give ``dst`` the mtime of ``src`` once the step is done writing into it."""
        self.times.append((dst, src.lstat().st_mtime_ns))

    def own(self, p: Path) -> None:
        """``--chown``, else root:root (BuildKit); ``--chmod`` on what is not a symlink."""
        if self.owner:
            os.lchown(p, *self.owner)
        elif os.geteuid() == 0:
            os.lchown(p, 0, 0)
        if self.mode is not None and not p.is_symlink():
            os.chmod(p, self.mode)

    def one(self, src: Path, dst: Path) -> None:
        """One file or symlink (a symlink stays a symlink, never followed)."""
        if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
            _remove(dst)
        elif dst.is_dir():
            dst = dst / src.name
            if dst.is_symlink() or dst.exists():
                _remove(dst)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
            st = src.lstat()
            os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)
        elif stat.S_ISREG(src.lstat().st_mode):
            shutil.copy2(src, dst, follow_symlinks=False)
        else:
            return  # sockets, fifos, devices are not copied from a context
        self.own(dst)


def _remove(p: Path) -> None:
    if is_dir(p):
        shutil.rmtree(p)
    else:
        p.unlink()
