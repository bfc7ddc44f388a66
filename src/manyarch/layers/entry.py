"""One tar entry of a layer, as a value: what :func:`write_layer` writes."""

from __future__ import annotations

import enum
import posixpath
from dataclasses import dataclass
from pathlib import Path

#: Prefix of a whiteout file (OCI image spec, layer.md#whiteouts).
WHITEOUT_PREFIX = ".wh."
#: Name of the opaque-directory marker.
OPAQUE_MARKER = ".wh..wh..opq"


class EntryType(enum.Enum):
    """The kind of a tar entry; the value is the ustar typeflag."""

    FILE = b"0"
    HARDLINK = b"1"
    SYMLINK = b"2"
    CHAR = b"3"
    BLOCK = b"4"
    DIR = b"5"
    FIFO = b"6"


@dataclass(frozen=True)
class TarEntry:
    """One entry: a path relative to the layer root, its metadata and its content.

    ``source`` is the content of a ``FILE``: bytes, or the path (``str`` or
    ``Path``) of a file read while the layer is written (it must still be
    ``size`` bytes long).
    ``linkname`` is the target of a ``SYMLINK`` (any string) or of a
    ``HARDLINK`` (a path in the layer, or in a lower layer).
    """

    path: str
    type: EntryType = EntryType.FILE
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    size: int = 0
    source: bytes | str | Path | None = None
    linkname: str = ""
    uname: str = ""
    gname: str = ""
    devmajor: int = 0
    devminor: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", clean_path(self.path))
        if isinstance(self.source, bytes | bytearray) and self.size != len(self.source):
            object.__setattr__(self, "size", len(self.source))
        if self.type is not EntryType.FILE and self.size:
            raise ValueError(f"{self.path}: only regular files have content")

    @classmethod
    def file(
        cls,
        path: str,
        data: bytes = b"",
        mode: int = 0o644,
        *,
        uid: int = 0,
        gid: int = 0,
        mtime: int = 0,
    ) -> TarEntry:
        """A regular file holding ``data``."""
        return cls(path, EntryType.FILE, mode, uid, gid, mtime, len(data), bytes(data))

    @classmethod
    def directory(
        cls, path: str, mode: int = 0o755, *, uid: int = 0, gid: int = 0, mtime: int = 0
    ) -> TarEntry:
        """A directory."""
        return cls(path, EntryType.DIR, mode, uid, gid, mtime)

    @classmethod
    def symlink(
        cls, path: str, target: str, *, uid: int = 0, gid: int = 0, mtime: int = 0
    ) -> TarEntry:
        """A symbolic link whose value is ``target``."""
        return cls(path, EntryType.SYMLINK, 0o777, uid, gid, mtime, linkname=target)

    @classmethod
    def hardlink(
        cls,
        path: str,
        target: str,
        mode: int = 0o644,
        *,
        uid: int = 0,
        gid: int = 0,
        mtime: int = 0,
    ) -> TarEntry:
        """A hard link to the entry at ``target`` (a path in this layer or a lower one)."""
        return cls(path, EntryType.HARDLINK, mode, uid, gid, mtime, linkname=clean_path(target))

    @classmethod
    def whiteout(cls, path: str, *, mtime: int = 0) -> TarEntry:
        """The whiteout that deletes ``path`` of the lower layers."""
        parent, name = posixpath.split(clean_path(path))
        if not name:
            raise ValueError("the layer root cannot be whited out")
        return cls(posixpath.join(parent, WHITEOUT_PREFIX + name), mtime=mtime)

    @classmethod
    def opaque(cls, directory: str, *, mtime: int = 0) -> TarEntry:
        """The marker that hides everything the lower layers have under ``directory``."""
        return cls(posixpath.join(clean_path(directory), OPAQUE_MARKER), mtime=mtime)

    @property
    def is_dir(self) -> bool:
        """A directory entry."""
        return self.type is EntryType.DIR


def clean_path(path: str) -> str:
    """``path`` as written in a layer: relative, ``/``-separated, no ``.`` or empty parts.

    Raises :class:`ValueError` for absolute paths and ``..`` components: the
    writer never produces an entry an unpacker would have to reject.
    """
    if path.startswith("/"):
        raise ValueError(f"layer paths are relative to the layer root: {path!r}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"layer paths may not contain '..': {path!r}")
    return "/".join(parts)
