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
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from manyarch import dockerfile as df
from manyarch.dockerfile.values import chmod_mode, is_git_url, is_remote
from manyarch.errors import BuildError
from manyarch.imagebuild.contextfiles import read_context_text
from manyarch.imagebuild.remote import fetch, fetch_git
from manyarch.layers import open_decompressed, unpack
from manyarch.oci import mediatypes as mt
from manyarch.sandbox.rootpath import glob_in_root, resolve_in_root
from manyarch.sandbox.users import resolve_user


def copy_targets(step: df.CopyStep, sources: Sequence[tuple[Path, str]]) -> list[str]:
    """The image paths a COPY writes at the top (each file, or each directory's dest)."""
    many = len(sources) > 1 or any(is_dir(s) for s, _ in sources)
    out = []
    for src, rel in sources:
        dest, dest_is_dir = dest_of(step, rel, is_dir(src), many)
        if is_dir(src):
            out.append(dest)
        else:
            out.append(dest.rstrip("/") + "/" + source_name(src, rel) if dest_is_dir else dest)
    return out


def dest_of(step: df.CopyStep, rel: str, directory: bool, many: bool) -> tuple[str, bool]:
    """Where one source goes, and whether that is a directory: ``--parents`` keeps the
    source's own path under the destination (BuildKit's testCopyParents)."""
    if not step.parents or rel in ("", "."):
        return step.dest, step.dest.endswith("/") or many
    where = rel if directory else os.path.dirname(rel)
    return step.dest.rstrip("/") + "/" + where + ("/" if where else ""), True


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
    with keep_times(rootfs, step.dest) as times:
        local = step.from_ is None and not any(map(is_git_url, step.sources))
        copier = Copier(owner, step.chmod, ignore if local else None, times)
        copier.keep_owner = step.from_ is not None  # BuildKit keeps a stage's owners
        copier.exclude = df.DockerIgnore(list(step.excludes)) if step.excludes else None
        many = len(sources) > 1 or any(is_dir(s) for s, _ in sources)
        for src, rel in sources:
            dest, dest_is_dir = dest_of(step, rel, is_dir(src), many)
            if step.extract_tar and not is_dir(src) and is_archive(src):
                copier.created(mkdirs(rootfs, dest, owner, epoch), epoch)
                extract(src, rootfs, dest, owner)
                continue
            if is_dir(src):
                target = resolve_in_root(rootfs, dest)
                copier.created(mkdirs(rootfs, dest, owner, epoch), epoch)
                copier.tree(src, target, rel)
                copier.dir_times(src, target)
            elif not copier.excluded(source_name(src, rel), False):
                base = source_name(src, rel)
                name = dest.rstrip("/") + "/" + base if dest_is_dir else dest
                parent = str(Path(name).parent)
                copier.created(mkdirs(rootfs, parent, owner, epoch), epoch)
                copier.one(src, resolve_in_root(rootfs, parent) / Path(name).name, base)


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


def extract(src: Path, rootfs: Path, dest: str, owner: tuple[int, int] | None = None) -> bool:
    """ADD of a local tar archive: unpack it into ``dest`` (its members ``owner`` 's when
    given, as BuildKit's ``ADD --chown``); False when not a tar."""
    stream = _open_archive(src)
    if stream is None:
        return False
    target = resolve_in_root(rootfs, dest)
    with stream:
        unpack(target, [(f"ADD {src.name}", stream, mt.OCI_LAYER)])
    if owner is not None:
        with _decompressed(src) as f, tarfile.open(fileobj=f, mode="r|") as tf:
            for m in tf:
                rel = os.path.normpath(m.name.lstrip("/"))
                p = target / rel
                if rel != ".." and not rel.startswith("../") and (p.exists() or p.is_symlink()):
                    os.lchown(p, *owner)
    return True


def source_name(src: Path, rel: str) -> str:
    """The name a source lands under: the path's as written, a link's and not its target's."""
    return Path(rel).name if rel not in ("", ".") else src.name


def is_dir(p: Path) -> bool:
    return p.is_dir() and not p.is_symlink()


def is_archive(src: Path) -> bool:
    """Whether ``src`` is a tar archive (plain, gzip, bzip2, xz, zstd): ADD unpacks it."""
    try:
        with _decompressed(src) as f:
            block = f.read(512)
        return len(block) == 512 and _tar_header(block)
    except Exception:  # whatever a decompressor raises on what it cannot read: not a tar
        return False


def _open_archive(src: Path) -> BinaryIO | None:
    """The uncompressed stream of a tar archive, else None."""
    return _decompressed(src) if is_archive(src) else None


def _decompressed(src: Path) -> BinaryIO:
    with open(src, "rb") as f:
        head = f.read(6)
    if head.startswith(b"BZh"):
        return cast(BinaryIO, bz2.open(src, "rb"))
    if head.startswith(b"\xfd7zXZ\x00"):
        return cast(BinaryIO, lzma.open(src, "rb"))
    if head.startswith(b"\x1f\x8b"):
        return cast(BinaryIO, gzip.open(src, "rb"))
    if head.startswith(b"\x28\xb5\x2f\xfd"):  # zstd, which BuildKit's ADD unpacks too
        return open_decompressed(open(src, "rb"))
    return open(src, "rb")


def _tar_header(block: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def inline_sources(step: df.CopyStep, work: Path) -> list[tuple[Path, str]]:
    """A COPY's heredocs as files (0644, as BuildKit makes them) and an ADD's URLs fetched,
    in a new directory of ``work``."""
    remote = [s for s in step.sources if is_remote(s)]
    if not step.inline and not remote:
        return []
    where = Path(tempfile.mkdtemp(prefix="inline-", dir=work))
    out = []
    for i, u in enumerate(remote):
        if is_git_url(u):
            out.append((fetch_git(u, where / f"git{i}", step.checksum, step.keep_git_dir), ""))
        else:
            p = fetch(u, where / f"url{i}", step.checksum)
            out.append((p, p.name))
    for name, data in step.inline:
        p = where / name.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(data)
        p.chmod(0o644)
        out.append((p, name.lstrip("/")))
    return out


def expand_sources(
    base: Path, step: df.CopyStep, ignore: df.DockerIgnore | None, more: bool = False
) -> list[tuple[Path, str]]:
    """The source paths of a COPY under ``base`` (the context or another root); ``more``:
    the COPY has other sources (heredocs), so none here is no error.

    Errors say what is wrong with a source; the step's file and line are the
    caller's to add (:class:`~manyarch.errors.StepFailed`).
    """
    confine = step.from_ is None
    what = "ADD" if step.is_add else "COPY"
    out: list[tuple[Path, str]] = []
    for pat in (s for s in step.sources if not is_remote(s)):  # fetched: inline_sources
        rel = os.path.normpath(pat.lstrip("/")) if pat not in ("", ".", "/") else "."
        if rel == ".." or rel.startswith("../"):
            raise BuildError(
                f"{what} source {pat!r} is outside the build context",
                "a source must be inside the context directory",
            )
        if any(ch in rel for ch in "*?["):
            # another root: its symlinks lead inside it, never to the host's files;
            # Go's filepath.Match: ``*`` matches a leading dot too
            matches = (
                sorted(glob.glob(rel, root_dir=str(base), include_hidden=True))
                if confine
                else glob_in_root(base, rel, include_hidden=True)
            )
            for m in matches:
                if confine:
                    _check_confined(base, m, pat, what)
            kept = [m for m in matches if not (ignore and ignore.matches(m))]
            # each match followed, as BuildKit follows a source (testCopySymlinks)
            out.extend((resolve_in_root(base, m), m) for m in kept)
            continue
        path = base / rel if rel != "." else base
        if confine:
            _check_confined(base, rel, pat, what)
        if rel != ".":  # followed, inside the context or the root (testCopyFollowAllSymlinks)
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
    more = more or bool(step.inline) or any(is_remote(s) for s in step.sources)
    if not out and not more:  # a pattern may match nothing when another source matches
        raise BuildError(
            f"{what} source {' '.join(map(repr, step.sources))}: no source files were specified",
            "check the pattern (relative to the context) and .dockerignore",
        )
    return out


def _check_confined(base: Path, rel: str, pat: str, what: str) -> None:
    """Refuse a source reached through a symlink that leads out of ``base``.

    Every component must resolve inside the context, the last one too when it is
    a symlink: BuildKit follows a source's links (inside the context, where an
    absolute target names the context's own path), so one that leads out would
    copy nothing BuildKit would; said as an escape rather than "not found".
    """
    path = base / rel if rel != "." else base
    parent = path.parent.resolve() if rel != "." else base
    target = path.resolve() if path.is_symlink() else parent
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
    #: ``--chmod``: octal or symbolic (chmod's ``u+x``)
    chmod: str | None
    ignore: df.DockerIgnore | None
    times: list[tuple[Path, int]]
    #: without --chown: the source's owners (COPY --from), else root's (the context)
    keep_owner: bool = False
    #: the first copy of each source inode with more than one link: its links stay links
    links: dict[tuple[int, int], Path] = field(default_factory=dict)
    #: ``--exclude`` patterns, matched against paths relative to each source
    exclude: df.DockerIgnore | None = None

    def excluded(self, xrel: str, directory: bool) -> bool:
        """Whether ``--exclude`` leaves this out (a directory: unless ``!`` may take a part)."""
        x = self.exclude
        return x is not None and x.matches(xrel) and not (directory and x.has_exclusions)

    def tree(self, src: Path, dst: Path, rel: str, xrel: str = "") -> None:
        """The contents of ``src`` into ``dst``; ignored and excluded paths stay out."""
        for entry in sorted(src.iterdir()):
            erel = entry.name if rel in ("", ".") else f"{rel}/{entry.name}"
            exrel = f"{xrel}/{entry.name}" if xrel else entry.name
            ignored = self.ignore is not None and self.ignore.matches(erel)
            if ignored and not (self.ignore and self.ignore.has_exclusions and is_dir(entry)):
                continue
            if self.excluded(exrel, is_dir(entry)):
                continue
            target = dst / entry.name
            if is_dir(entry):
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    _remove(target)
                existed = target.exists()
                target.mkdir(exist_ok=True)
                shutil.copymode(entry, target)
                self.own(target, entry)
                self.tree(entry, target, erel, exrel)
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
        if self.chmod is not None:  # BuildKit's --chmod covers the directories it makes
            for d in dirs:
                os.chmod(d, chmod_mode(self.chmod, stat.S_IMODE(d.lstat().st_mode), True))

    def dir_times(self, src: Path, dst: Path) -> None:
        """Give ``dst`` the mtime of ``src`` once the step is done writing into it."""
        self.times.append((dst, src.lstat().st_mtime_ns))

    def own(self, p: Path, src: Path) -> None:
        """``--chown``, else root:root or the source's (BuildKit); ``--chmod`` on what is
        not a symlink."""
        if self.owner:
            os.lchown(p, *self.owner)
        elif os.geteuid() == 0:
            st = src.lstat() if self.keep_owner else None
            os.lchown(p, st.st_uid if st else 0, st.st_gid if st else 0)
        if self.chmod is not None and not p.is_symlink():
            st = p.lstat()
            os.chmod(p, chmod_mode(self.chmod, stat.S_IMODE(st.st_mode), stat.S_ISDIR(st.st_mode)))

    def one(self, src: Path, dst: Path, name: str | None = None) -> None:
        """One file or symlink (a symlink stays a symlink, never followed); ``name``:
        the source's as the COPY wrote it (a followed link keeps its own name)."""
        if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
            _remove(dst)
        elif dst.is_dir():
            dst = dst / (name or src.name)
            if dst.is_symlink() or dst.exists():
                _remove(dst)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
            st = src.lstat()
            os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)
        elif stat.S_ISREG((st := src.lstat()).st_mode):
            first = self.links.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
            if first is not None:
                os.link(first, dst)  # BuildKit keeps hard links within what it copies
                return
            shutil.copy2(src, dst, follow_symlinks=False)
            if st.st_nlink > 1:
                self.links[(st.st_dev, st.st_ino)] = dst
        else:
            return  # sockets, fifos, devices are not copied from a context
        self.own(dst, src)


def _remove(p: Path) -> None:
    if is_dir(p):
        shutil.rmtree(p)
    else:
        p.unlink()
