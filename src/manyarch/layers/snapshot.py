"""Snapshots of a directory and the layer of what changed between two of them.

A RUN step takes a :class:`Snapshot` of the rootfs, runs, and writes
:func:`write_diff_layer`: added and changed paths as entries (with their
parent directories, so the layer carries their metadata), deleted ones as
``.wh.`` whiteouts -- one per deleted subtree, not one per file in it.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple

from manyarch.errors import LayerError
from manyarch.layers.entry import TarEntry, clean_path
from manyarch.layers.writer import LayerInfo, entries_from_paths, sort_key, write_layer


class FileState(NamedTuple):
    """What a snapshot records of one path; any difference means "changed"."""

    type: int  # stat.S_IFMT bits
    mode: int  # permission bits, with setuid/setgid/sticky
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int  # catches a rewrite that put the mtime back
    inode: int
    link: str | None  # symlink target

    @property
    def is_dir(self) -> bool:
        """A directory (not a symlink to one)."""
        return self.type == stat.S_IFDIR


@dataclass(frozen=True)
class Changes:
    """Relative paths added, changed and deleted since a snapshot, each sorted."""

    added: tuple[str, ...]
    changed: tuple[str, ...]
    deleted: tuple[str, ...]
    #: The deleted paths a layer needs whiteouts for: the top of each deleted subtree.
    whiteouts: tuple[str, ...]
    after: Snapshot = field(repr=False, compare=False)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.deleted)


class Snapshot:
    """The state of every path under a root (the root itself excluded)."""

    def __init__(
        self,
        root: Path,
        states: Mapping[str, FileState],
        stats: Mapping[str, os.stat_result],
        exclude: frozenset[str],
    ) -> None:
        self.root = Path(root)
        self.states = dict(states)
        self._stats = dict(stats)
        self.exclude = exclude

    @classmethod
    def take(cls, root: Path, *, exclude: Iterable[str] = ()) -> Snapshot:
        """Record every path under ``root`` but ``exclude`` (``/proc`` or ``proc``) and below."""
        skip = frozenset(clean_path(p.lstrip("/")) for p in exclude)
        states: dict[str, FileState] = {}
        stats: dict[str, os.stat_result] = {}
        top = os.fspath(root)
        stack = [""]
        try:
            while stack:
                rel = stack.pop()
                with os.scandir(os.path.join(top, rel) if rel else top) as it:
                    for d in it:
                        path = f"{rel}/{d.name}" if rel else d.name
                        if path in skip:
                            continue
                        st = d.stat(follow_symlinks=False)
                        fmt = stat.S_IFMT(st.st_mode)
                        link = os.readlink(d.path) if fmt == stat.S_IFLNK else None
                        states[path] = FileState(
                            fmt,
                            stat.S_IMODE(st.st_mode),
                            st.st_uid,
                            st.st_gid,
                            st.st_size if fmt == stat.S_IFREG else 0,
                            st.st_mtime_ns,
                            st.st_ctime_ns,
                            st.st_ino,
                            link,
                        )
                        stats[path] = st
                        if fmt == stat.S_IFDIR:
                            stack.append(path)
        except OSError as e:
            raise LayerError(f"cannot snapshot {e.filename}: {e.strerror}") from e
        return cls(Path(root), states, stats, skip)

    def __len__(self) -> int:
        return len(self.states)

    def __contains__(self, path: object) -> bool:
        return path in self.states

    def changes(self, root: Path | None = None) -> Changes:
        """What differs between this snapshot and ``root`` now (default: the same root)."""
        after = Snapshot.take(self.root if root is None else root, exclude=self.exclude)
        before_s, after_s = self.states, after.states
        added = [p for p in after_s if p not in before_s]
        deleted = [p for p in before_s if p not in after_s]
        changed = [p for p, s in after_s.items() if p in before_s and before_s[p] != s]
        whiteouts = [p for p in deleted if _parent_is_dir(p, after_s)]
        return Changes(
            tuple(sorted(added, key=sort_key)),
            tuple(sorted(changed, key=sort_key)),
            tuple(sorted(deleted, key=sort_key)),
            tuple(sorted(whiteouts, key=sort_key)),
            after,
        )

    def stat(self, path: str) -> os.stat_result:
        """The lstat result recorded for ``path``."""
        return self._stats[path]


def _parent_is_dir(path: str, states: Mapping[str, FileState]) -> bool:
    parent = posixpath.dirname(path)
    if not parent:
        return True
    s = states.get(parent)
    return s is not None and s.is_dir


def write_diff_layer(
    root: Path,
    before: Snapshot,
    dest: BinaryIO,
    *,
    compression: str | None = "gzip",
    epoch: int | None = None,
    docker: bool = False,
) -> LayerInfo | None:
    """Write the layer of what changed under ``root`` since ``before``; None when nothing did."""
    changes = before.changes(root)
    if not changes:
        return None
    after = changes.after
    wanted: set[str] = set(changes.added) | set(changes.changed)
    for path in [*wanted, *changes.whiteouts]:
        parent = posixpath.dirname(path)
        while parent and parent not in wanted:
            wanted.add(parent)
            parent = posixpath.dirname(parent)
    top = Path(root)
    items = [(p, top / p, after.stat(p)) for p in wanted if p in after.states]
    entries = entries_from_paths(items)
    entries += [TarEntry.whiteout(p) for p in changes.whiteouts]
    return write_layer(entries, dest, compression=compression, epoch=epoch, docker=docker)
