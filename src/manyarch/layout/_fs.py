"""Crash-safe file primitives for the layout: atomic writes, directory fsync, locks.

A write goes to a temp file in the destination's directory, is fsynced, renamed
over the final name and the directory is fsynced: a reader (or a process that
survives a crash) sees the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: Every temp file the layout writes starts with this; verify skips them, gc removes stale ones.
TEMP_PREFIX = ".tmp-"
#: The lock file serialising read-modify-write of index.json and gc.
LOCK_NAME = ".lock"
#: Writers hold it shared (a lease) while their blobs are not yet tagged; gc holds it exclusive.
GC_LOCK_NAME = ".gc-lock"
FILE_MODE = 0o644


def is_temp(name: str) -> bool:
    """Whether a directory entry is one of the layout's temp files."""
    return name.startswith(TEMP_PREFIX)


def fsync_dir(path: Path) -> None:
    """Make a rename (or unlink) in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """``os.write`` until every byte is written."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def atomic_write(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file."""
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}-", dir=path.parent)
    try:
        write_all(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def create_locked_temp(directory: Path) -> tuple[int, Path]:
    """A new temp file in ``directory``, held under an exclusive ``flock`` until closed.

    The lock tells :func:`remove_if_stale` the file belongs to a live writer; the
    kernel drops it when the writer dies, so a killed writer's leftovers become
    collectable at once, with no guess about ages.
    """
    while True:
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # gc may have locked and unlinked the file between mkstemp and flock.
        if os.fstat(fd).st_nlink > 0:
            return fd, Path(name)
        os.close(fd)


def remove_if_stale(path: Path) -> bool:
    """Unlink a temp file nobody holds locked; True when removed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError:
        # A symlink or something else we did not create: not a live writer's.
        path.unlink(missing_ok=True)
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold ``flock`` on ``path`` (created if needed); shared for readers."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except PermissionError:
        if not shared:
            raise
        # A read-only layout cannot change under a reader: no lock needed.
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
