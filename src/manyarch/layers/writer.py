"""The deterministic layer writer: entries in, one compressed blob and its digests out.

Same entries give the same bytes on any machine: entries are sorted by path
component by component (so a directory comes right before its contents),
headers are written by :mod:`manyarch.layers.tarfmt`, mtimes are clamped to
``epoch`` (SOURCE_DATE_EPOCH, read by the caller), uname/gname are empty
unless given, and compression is pinned by :mod:`manyarch.layers.compress`.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, TypeVar

from manyarch.errors import LayerError
from manyarch.layers import tarfmt
from manyarch.layers.compress import CHUNK, LayerSink
from manyarch.layers.entry import EntryType, TarEntry, clean_path
from manyarch.oci import mediatypes
from manyarch.oci.digest import Digest
from manyarch.oci.manifest import Descriptor

_T = TypeVar("_T")


@dataclass(frozen=True)
class LayerInfo:
    """What a written layer blob is: its digest and size, its diff_id, its media type."""

    digest: Digest
    size: int
    diff_id: Digest
    media_type: str

    def descriptor(self) -> Descriptor:
        """The descriptor a manifest lists for this layer."""
        return Descriptor(self.media_type, self.digest, self.size)


def sort_key(path: str) -> tuple[bytes, ...]:
    """Order of entries in a layer: component by component, on the raw bytes."""
    return tuple(os.fsencode(path).split(b"/"))


def media_type_for(compression: str | None, docker: bool) -> str:
    """The layer media type, or :class:`LayerError` for a combination that has none."""
    try:
        return mediatypes.layer_type(compression, docker)
    except ValueError as e:
        raise LayerError(
            f"docker layers are gzip-compressed, not {compression or 'plain tar'}",
            "use compression='gzip' or an OCI media type",
        ) from e
    except KeyError as e:
        raise LayerError(
            f"unknown layer compression {compression!r}", "use gzip, zstd or none"
        ) from e


def write_layer(
    entries: Iterable[TarEntry],
    dest: BinaryIO,
    *,
    compression: str | None = "gzip",
    epoch: int | None = None,
    docker: bool = False,
) -> LayerInfo:
    """Write ``entries`` (sorted here) as one layer blob to ``dest``; hash while writing."""
    media_type = media_type_for(compression, docker)
    ordered = sorted(entries, key=lambda e: sort_key(e.path))
    _check(ordered)
    sink = LayerSink(dest, compression)
    try:
        for entry in ordered:
            _write_entry(sink, entry, epoch)
        sink.write(tarfmt.END_OF_ARCHIVE)
        digest, size, diff_id = sink.close()
    except BaseException:
        sink.abort()
        raise
    return LayerInfo(digest, size, diff_id, media_type)


def _check(ordered: Sequence[TarEntry]) -> None:
    everything = {e.path for e in ordered}
    seen: set[str] = set()
    for entry in ordered:
        if not entry.path:
            raise LayerError("a layer entry has an empty path (the layer root is implicit)")
        if entry.path in seen:
            raise LayerError(f"layer entry {entry.path!r} is given twice")
        seen.add(entry.path)
        if (
            entry.type is EntryType.HARDLINK
            and entry.linkname not in seen
            and entry.linkname in everything
        ):
            raise LayerError(
                f"hard link {entry.path!r} comes before its target {entry.linkname!r}",
                "make the first path in sort order the file and the others links to it",
            )


def _write_entry(sink: LayerSink, entry: TarEntry, epoch: int | None) -> None:
    mtime = max(0, int(entry.mtime))
    if epoch is not None and mtime > epoch:
        mtime = epoch
    name = os.fsencode(entry.path)
    if entry.type is EntryType.DIR:
        name += b"/"
    sink.write(
        tarfmt.header(
            name,
            typeflag=entry.type.value,
            mode=entry.mode & 0o7777,
            uid=entry.uid,
            gid=entry.gid,
            size=entry.size if entry.type is EntryType.FILE else 0,
            mtime=mtime,
            linkname=os.fsencode(entry.linkname),
            uname=os.fsencode(entry.uname),
            gname=os.fsencode(entry.gname),
            devmajor=entry.devmajor,
            devminor=entry.devminor,
        )
    )
    if entry.type is EntryType.FILE and entry.size:
        _write_data(sink, entry)


def _write_data(sink: LayerSink, entry: TarEntry) -> None:
    source = entry.source
    if isinstance(source, bytes | bytearray):
        sink.write(source)
    elif source is None:
        raise LayerError(f"layer entry {entry.path!r} has a size but no content")
    else:
        remaining = entry.size
        fd = _reading(source, os.open, source, os.O_RDONLY | os.O_CLOEXEC)
        try:
            while remaining:
                chunk = _reading(source, os.read, fd, min(CHUNK, remaining))
                if not chunk:
                    break
                sink.write(chunk)  # the destination's own errors are not "cannot read"
                remaining -= len(chunk)
            grew = bool(_reading(source, os.read, fd, 1))
        finally:
            os.close(fd)
        if remaining or grew:
            raise LayerError(
                f"{source} changed size while it was written into a layer",
                "do not modify files while a layer is built from them",
            )
    sink.write(tarfmt.padding(entry.size))


def _reading(source: str | Path, call: Callable[..., _T], *args: object) -> _T:
    """``call(*args)``, an OSError worded as a failure to read ``source``."""
    try:
        return call(*args)
    except OSError as e:
        raise LayerError(f"cannot read {source}: {e.strerror}") from e


def entry_from_stat(
    path: str | Path,
    name: str,
    st: os.stat_result,
    *,
    uid: int | None = None,
    gid: int | None = None,
) -> TarEntry | None:
    """The entry for the file at ``path`` (already lstat-ed), named ``name``; None for sockets."""
    mode = st.st_mode
    fmt = stat.S_IFMT(mode)
    kind = _KINDS.get(fmt)
    if kind is None:
        return None  # a socket: tar has no way to say it
    return TarEntry(
        name,
        kind,
        stat.S_IMODE(mode),
        st.st_uid if uid is None else uid,
        st.st_gid if gid is None else gid,
        int(st.st_mtime),
        size=st.st_size if kind is EntryType.FILE else 0,
        source=path if kind is EntryType.FILE else None,
        linkname=os.readlink(path) if kind is EntryType.SYMLINK else "",
        devmajor=os.major(st.st_rdev) if fmt in (stat.S_IFCHR, stat.S_IFBLK) else 0,
        devminor=os.minor(st.st_rdev) if fmt in (stat.S_IFCHR, stat.S_IFBLK) else 0,
    )


_KINDS = {
    stat.S_IFREG: EntryType.FILE,
    stat.S_IFDIR: EntryType.DIR,
    stat.S_IFLNK: EntryType.SYMLINK,
    stat.S_IFCHR: EntryType.CHAR,
    stat.S_IFBLK: EntryType.BLOCK,
    stat.S_IFIFO: EntryType.FIFO,
}


def _walk(root: str, rel: str) -> Iterator[tuple[str, str, os.stat_result]]:
    # scandir gives lstat-free types; the stat is needed anyway for the header.
    with os.scandir(os.path.join(root, rel) if rel else root) as it:
        children = list(it)
    for d in children:
        child = f"{rel}/{d.name}" if rel else d.name
        st = d.stat(follow_symlinks=False)
        yield child, d.path, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(root, child)


def entries_from_paths(
    items: Iterable[tuple[str, str | Path, os.stat_result]],
    *,
    uid: int | None = None,
    gid: int | None = None,
) -> list[TarEntry]:
    """Entries for (layer path, file, lstat) triples, in sort order, with hard links found.

    A non-directory whose inode was already seen in this list becomes a hard
    link to the first path (in sort order) that has it.
    """
    out: list[TarEntry] = []
    first: dict[tuple[int, int], str] = {}
    for name, path, st in sorted(items, key=lambda t: sort_key(t[0])):
        entry = entry_from_stat(path, name, st, uid=uid, gid=gid)
        if entry is None:
            continue
        if entry.type is not EntryType.DIR and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            target = first.get(key)
            if target is None:
                first[key] = entry.path
            else:
                entry = replace(
                    entry, type=EntryType.HARDLINK, size=0, source=None, linkname=target
                )
        out.append(entry)
    return out


def entries_from_dir(
    root: Path, *, prefix: str = "", uid: int | None = None, gid: int | None = None
) -> list[TarEntry]:
    """Entries for everything under ``root``, placed under ``prefix`` in the layer.

    The directories of ``prefix`` are included, 0755, owned by ``uid``/``gid``
    (root when None), with ``root``'s mtime. A leading ``/`` in ``prefix`` is
    the image's root, as in a Dockerfile.
    """
    try:
        prefix = clean_path(prefix.lstrip("/"))
    except ValueError as e:
        raise LayerError(f"cannot place a layer at {prefix!r}: {e}") from e
    try:
        root_st = root.lstat()
    except OSError as e:
        raise LayerError(f"cannot read {root}: {e.strerror}") from e
    if not stat.S_ISDIR(root_st.st_mode):
        raise LayerError(f"{root} is not a directory")
    try:
        items = [
            (posixpath.join(prefix, name), path, st)
            for name, path, st in _walk(os.fspath(root), "")
        ]
    except OSError as e:
        raise LayerError(f"cannot read {e.filename}: {e.strerror}") from e
    entries = entries_from_paths(items, uid=uid, gid=gid)
    parents: list[TarEntry] = []
    parent = prefix
    while parent:
        parents.append(
            TarEntry(
                parent,
                EntryType.DIR,
                0o755,
                uid=0 if uid is None else uid,
                gid=0 if gid is None else gid,
                mtime=int(root_st.st_mtime),
            )
        )
        parent = posixpath.dirname(parent)
    return parents[::-1] + entries


def write_layer_from_dir(
    root: Path,
    dest: BinaryIO,
    *,
    compression: str | None = "gzip",
    epoch: int | None = None,
    uid: int | None = None,
    gid: int | None = None,
    prefix: str = "",
    docker: bool = False,
) -> LayerInfo:
    """Write everything under ``root`` as one layer; ``uid``/``gid`` None keep the owners."""
    entries = entries_from_dir(Path(root), prefix=prefix, uid=uid, gid=gid)
    return write_layer(entries, dest, compression=compression, epoch=epoch, docker=docker)
