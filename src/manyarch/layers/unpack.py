"""Safe unpacking of a stack of layers into a root directory.

Every entry name is checked (no absolute path, no ``..``, no name longer than
Linux allows) and the directory an entry lands in is resolved one component at
a time against the root: a symlink met on the way is followed as it would be
inside the container (an absolute target starts again at the root), and a
target that climbs above the root rejects the entry. The last component is
never followed: an existing file, link or tree there is removed first and the
new file is created with ``O_EXCL | O_NOFOLLOW``. So nothing is ever written
outside the root, and a hostile entry raises :class:`UnsafeLayerEntry` naming
the layer and the entry.

Whiteouts follow the OCI image spec (layer.md): ``.wh.NAME`` deletes NAME of
the lower layers, ``.wh..wh..opq`` hides everything the lower layers have in
its directory; both leave what this layer itself unpacked alone.

Given the config's ``rootfs.diff_ids``, every layer's uncompressed stream is
hashed as it is unpacked (to its last byte, past the tar's end) and checked:
a layer that is not the one the config names raises :class:`DigestMismatch`,
and the caller discards the tree.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, cast

import zstandard
from isal import isal_zlib

from manyarch.errors import (
    DigestMismatch,
    DiskFull,
    LayerError,
    ManyarchError,
    UnsafeLayerEntry,
)
from manyarch.layers.compress import CHUNK, open_decompressed
from manyarch.layers.entry import OPAQUE_MARKER, WHITEOUT_PREFIX
from manyarch.layers.tarscan import Spans
from manyarch.oci import mediatypes
from manyarch.oci.digest import Digest, Hasher

log = logging.getLogger("manyarch.layers")

# isal's stub declares its error class as an instance, hence the cast.
_DECOMPRESS_ERRORS: tuple[type[Exception], ...] = (
    cast(type[Exception], isal_zlib.error),
    zlib.error,
    zstandard.ZstdError,
)

#: Linux NAME_MAX and PATH_MAX (minus the NUL).
MAX_NAME = 255
MAX_PATH = 4095
#: As Linux's ELOOP limit.
MAX_SYMLINKS = 40

#: (name or digest for messages, the blob as a stream or a file, its media type)
LayerSource = tuple[str, BinaryIO | Path, str]
#: The media type of a source that is an uncompressed tar already (taken as it is, not sniffed).
TAR_STREAM = "application/x-manyarch-tar-stream"
_Rel = tuple[str, ...]


def unpack(
    root: Path,
    layers: Sequence[LayerSource],
    *,
    same_owner: bool | None = None,
    only: Callable[[tuple[str, ...]], bool] | None = None,
    diff_ids: Sequence[Digest] | None = None,
    spans: Sequence[Sequence[tuple[int, int]] | None] | None = None,
) -> None:
    """Apply ``layers`` (lowest first) to ``root``; ``same_owner`` None means "when root".

    ``diff_ids`` (the config's, one per layer) are checked as the layers are
    read; the tree is then only partly written when one differs.

    ``only`` (an entry's path components -> keep it) unpacks part of the
    layers: whiteouts still apply, and a hard link whose target was left out
    is left out too. It must keep the directories above what it keeps, or
    they are made with default metadata.

    ``spans`` (one per layer, or None for a whole layer) are the byte ranges of
    the uncompressed tar to read (:class:`~manyarch.layers.tarscan.Spans`): with
    ``only``, every member it may keep, every whiteout and every name
    :func:`member_checked` flags (so a hostile one still raises); not with ``diff_ids``.
    """
    if spans is not None and (diff_ids is not None or len(spans) != len(layers)):
        raise ValueError("spans: one per layer, and not with diff_ids")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if same_owner is None:
        same_owner = os.geteuid() == 0
    if diff_ids is not None and len(diff_ids) != len(layers):
        raise DigestMismatch(
            f"{len(diff_ids)} diff_ids",
            f"{len(layers)} layers",
            message=f"the image has {len(layers)} layers but its config "
            f"lists {len(diff_ids)} diff_ids",
            hint="the image is corrupt or hostile: its config does not describe its layers",
        )
    for i, (name, source, media_type) in enumerate(layers):
        expected = diff_ids[i] if diff_ids is not None else None
        kept = spans[i] if spans is not None else None
        if media_type and (
            mediatypes.is_manifest(media_type)
            or mediatypes.is_index(media_type)
            or mediatypes.is_config(media_type)
        ):
            raise LayerError(f"{name} is a {media_type}, not a layer")
        if isinstance(source, str | os.PathLike):
            try:
                f = open(source, "rb")  # noqa: SIM115 - closed below
            except OSError as e:
                raise LayerError(f"layer {name}: cannot open {source}: {e.strerror}") from e
            with f:
                _Unpacker(root, name, same_owner, only).run(f, expected, spans=kept)
        else:
            plain = media_type == TAR_STREAM
            _Unpacker(root, name, same_owner, only).run(source, expected, spans=kept, plain=plain)


def member_checked(name: str) -> bool:
    """Whether the unpacker would refuse ``name`` (a partial read must still show it)."""
    try:
        _Unpacker(Path("/"), "", False).clean(name)
    except UnsafeLayerEntry:
        return True
    return False


class _Unpacker:
    """Applies one layer."""

    def __init__(
        self,
        root: Path,
        layer: str,
        same_owner: bool,
        only: Callable[[tuple[str, ...]], bool] | None = None,
    ) -> None:
        self.only = only
        self.root = os.path.abspath(root)
        self.layer = layer
        self.same_owner = same_owner
        # logical parent path -> resolved real path; cleared when a dir or symlink goes away.
        self._resolved: dict[_Rel, _Rel] = {}
        self._unpacked: set[_Rel] = set()
        self._dirs: dict[str, tarfile.TarInfo] = {}

    def _full(self, rel: _Rel) -> str:
        return os.path.join(self.root, *rel) if rel else self.root

    def run(
        self,
        blob: BinaryIO,
        diff_id: Digest | None = None,
        *,
        spans: Sequence[tuple[int, int]] | None = None,
        plain: bool = False,
    ) -> None:
        entry = "(start of layer)"
        try:
            stream = blob if plain else open_decompressed(blob)
            if spans is not None:
                stream = cast(BinaryIO, Spans(stream, spans))
            hashed = _Hashing(stream, diff_id.algorithm) if diff_id is not None else None
            tar_in = cast(BinaryIO, hashed) if hashed is not None else stream
            with tarfile.open(fileobj=tar_in, mode="r|", errorlevel=2) as tf:
                for member in tf:
                    entry = member.name
                    self._apply(tf, member)
            self._finish_dirs()
            if hashed is not None and diff_id is not None:
                hashed.check(diff_id, self.layer)
        except ManyarchError:
            raise
        except OSError as e:
            if e.errno is None:  # gzip.BadGzipFile and friends: the blob, not the disk
                raise LayerError(
                    f"layer {self.layer} does not decompress: {e}",
                    "the blob is corrupt or truncated",
                ) from e
            full = DiskFull.of(e, f"layer {self.layer}: entry {entry!r}", self.root)
            if full is not None:
                raise full from e
            where = f" {e.filename}" if e.filename else ""
            raise LayerError(
                f"layer {self.layer}: entry {entry!r}: {e.strerror or e}{where}"
            ) from e
        except (tarfile.TarError, EOFError, ValueError) as e:
            raise LayerError(
                f"layer {self.layer} is not a readable tar (after entry {entry!r}): {e}",
                "the blob is corrupt or not a layer",
            ) from e
        except _DECOMPRESS_ERRORS as e:
            raise LayerError(
                f"layer {self.layer} does not decompress: {e}",
                "the blob is corrupt or truncated",
            ) from e

    def _unsafe(self, entry: str, reason: str) -> UnsafeLayerEntry:
        return UnsafeLayerEntry(self.layer, entry, reason)

    def clean(self, name: str) -> _Rel:
        """``name`` as path components; :class:`UnsafeLayerEntry` if it may not be unpacked."""
        return self._clean(name, name)

    def _clean(self, entry: str, name: str) -> _Rel:
        if "\x00" in name:
            raise self._unsafe(entry, "has a NUL byte in its name")
        if name.startswith("/"):
            raise self._unsafe(entry, "is an absolute path")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            raise self._unsafe(entry, "has a '..' component")
        if len(os.fsencode(name)) > MAX_PATH:
            raise self._unsafe(entry, f"is longer than {MAX_PATH} bytes")
        if any(len(os.fsencode(p)) > MAX_NAME for p in parts):
            raise self._unsafe(entry, f"has a component longer than {MAX_NAME} bytes")
        return parts

    def _resolve_dir(self, logical: _Rel, entry: str, *, create: bool) -> _Rel | None:
        """The real path (no symlinks in it) of directory ``logical``; None if missing."""
        cached = self._resolved.get(logical)
        if cached is not None:
            return cached
        real: list[str] = []
        pending = list(reversed(logical))
        follows = 0
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not real:
                    raise self._unsafe(entry, "goes through a symlink that leads outside the root")
                real.pop()
                continue
            real.append(part)
            full = self._full(tuple(real))
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(full, 0o755)
                self._unpacked.add(tuple(real))
                continue
            if stat.S_ISDIR(st.st_mode):
                if create:
                    # this layer writes below it: an opaque marker must keep it
                    self._unpacked.add(tuple(real))
                continue
            if stat.S_ISLNK(st.st_mode):
                follows += 1
                if follows > MAX_SYMLINKS:
                    raise self._unsafe(entry, "goes through too many symlinks")
                target = os.readlink(full)
                real.pop()
                if target.startswith("/"):
                    real.clear()
                pending.extend(reversed(target.split("/")))
                continue
            raise LayerError(
                f"layer {self.layer}: entry {entry!r} needs {'/'.join(real)} to be a directory,"
                " but it is a file",
                "the layer stack is inconsistent",
            )
        result = tuple(real)
        self._resolved[logical] = result
        return result

    def _remove(self, full: str, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            # rmtree works on directory fds and never follows symlinks.
            shutil.rmtree(full)
            prefix = full + "/"
            for d in [d for d in self._dirs if d == full or d.startswith(prefix)]:
                del self._dirs[d]
            self._resolved.clear()
        else:
            os.unlink(full)
            if stat.S_ISLNK(st.st_mode):
                self._resolved.clear()

    def _apply(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = self._clean(m.name, m.name)
        if not parts:
            return  # the root itself: its metadata is the unpacker's, not the layer's
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(m.name, parts)
            return
        if self.only is not None and not self.only(parts):
            return
        parent = self._resolve_dir(parts[:-1], m.name, create=True)
        assert parent is not None
        rel = (*parent, base)
        full = self._full(rel)
        try:
            st: os.stat_result | None = os.lstat(full)
        except FileNotFoundError:
            st = None

        if m.isdir():
            if st is not None and not stat.S_ISDIR(st.st_mode):
                self._remove(full, st)
                st = None
            if st is None:
                os.mkdir(full, 0o700)
            self._dirs[full] = m
        elif m.islnk():
            self._hardlink(m, full, st)
        else:
            if st is not None:
                self._remove(full, st)
            if m.isreg():
                self._file(tf, m, full)
            elif m.issym():
                os.symlink(m.linkname, full)
                self._owner_and_time(m, full)
            elif m.ischr() or m.isblk() or m.isfifo():
                if not self._special(m, full):
                    return
            else:
                log.warning(
                    "layer %s: entry %r has tar type %r, skipped", self.layer, m.name, m.type
                )
                return
        self._unpacked.add(rel)

    def _file(self, tf: tarfile.TarFile, m: tarfile.TarInfo, full: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(full, flags, 0o600)
        with open(fd, "wb", buffering=0) as out:
            src = tf.extractfile(m)
            if src is not None:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
            if self.same_owner:
                os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            self._xattrs(m, fd)
            ns = _ns(m.mtime)
            os.utime(fd, ns=(ns, ns))

    def _hardlink(self, m: tarfile.TarInfo, full: str, st: os.stat_result | None) -> None:
        target = self._clean(m.name, m.linkname)
        if not target:
            raise self._unsafe(m.name, "is a hard link to the root")
        parent = self._resolve_dir(target[:-1], m.name, create=False)
        if parent is None and self.only is not None:
            return  # a partial unpack left the target out
        if parent is None:
            raise LayerError(
                f"layer {self.layer}: hard link {m.name!r} has no target {m.linkname!r}"
            )
        source = self._full((*parent, target[-1]))
        if source == full:
            return
        try:
            tst = os.lstat(source)
        except FileNotFoundError as e:
            if self.only is not None:
                return
            raise LayerError(
                f"layer {self.layer}: hard link {m.name!r} has no target {m.linkname!r}"
            ) from e
        if stat.S_ISDIR(tst.st_mode):
            raise self._unsafe(m.name, "is a hard link to a directory")
        if st is not None:
            self._remove(full, st)
        os.link(source, full, follow_symlinks=False)

    def _special(self, m: tarfile.TarInfo, full: str) -> bool:
        try:
            if m.isfifo():
                os.mkfifo(full, m.mode & 0o777)
            else:
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                os.mknod(full, kind | (m.mode & 0o777), os.makedev(m.devmajor, m.devminor))
        except PermissionError:
            log.warning("layer %s: device node %r skipped (not permitted here)", self.layer, m.name)
            return False
        self._owner_and_time(m, full)
        os.chmod(full, m.mode & 0o7777)
        return True

    def _owner_and_time(self, m: tarfile.TarInfo, full: str) -> None:
        if self.same_owner:
            os.chown(full, m.uid, m.gid, follow_symlinks=False)
        ns = _ns(m.mtime)
        os.utime(full, ns=(ns, ns), follow_symlinks=False)

    def _xattrs(self, m: tarfile.TarInfo, fd: int) -> None:
        for key, value in m.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr.") :]
            try:
                os.setxattr(fd, name, value.encode("utf-8", "surrogateescape"))
            except OSError as e:
                log.debug("layer %s: xattr %s on %r not set: %s", self.layer, name, m.name, e)

    def _whiteout(self, entry: str, parts: _Rel) -> None:
        base = parts[-1]
        parent = self._resolve_dir(parts[:-1], entry, create=False)
        if base == OPAQUE_MARKER:
            if parent is not None:
                self._opaque(parent)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # other aufs metadata (.wh..wh.plnk and friends) means nothing here
        victim = base[len(WHITEOUT_PREFIX) :]
        if victim in ("", ".", ".."):
            raise self._unsafe(entry, "is a whiteout that names no file in its directory")
        if parent is None:
            return
        rel = (*parent, victim)
        if rel in self._unpacked:
            return  # whiteouts hide the lower layers only
        full = self._full(rel)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return
        self._remove(full, st)

    def _opaque(self, directory: _Rel) -> None:
        full = self._full(directory)
        try:
            with os.scandir(full) as it:
                children = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return
        for child in children:
            rel = (*directory, child.name)
            st = child.stat(follow_symlinks=False)
            if rel not in self._unpacked:
                self._remove(child.path, st)
            elif stat.S_ISDIR(st.st_mode):
                self._opaque(rel)

    def _finish_dirs(self) -> None:
        # Deepest first, after their contents: writing a child moves a directory's mtime.
        for full in sorted(self._dirs, key=lambda p: p.count("/"), reverse=True):
            m = self._dirs[full]
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            if self.same_owner:
                os.chown(full, m.uid, m.gid, follow_symlinks=False)
            os.chmod(full, m.mode & 0o7777)
            ns = _ns(m.mtime)
            os.utime(full, ns=(ns, ns), follow_symlinks=False)


class _Hashing:
    """A read-only stream that hashes what is read through it."""

    def __init__(self, inner: BinaryIO, algorithm: str) -> None:
        self._inner = inner
        self._hasher = Hasher(algorithm)

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self._hasher.update(data)
        return data

    def check(self, diff_id: Digest, layer: str) -> None:
        """Read what the tar reader left (padding, trailing bytes), then compare."""
        while chunk := self._inner.read(CHUNK):
            self._hasher.update(chunk)
        actual = self._hasher.digest()
        if actual != diff_id:
            raise DigestMismatch(
                str(diff_id),
                str(actual),
                message=f"layer {layer} uncompressed has digest {actual}, "
                f"but the image's config names diff_id {diff_id}",
                hint="the image is corrupt or hostile: its layers are not the ones "
                "its config describes; nothing of it was kept",
            )


def _ns(mtime: float) -> int:
    if isinstance(mtime, int):
        return mtime * 1_000_000_000
    return round(mtime * 1_000_000_000)
