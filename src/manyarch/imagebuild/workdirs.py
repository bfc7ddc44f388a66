"""A build's working directory, and the sweep of those a killed build left behind.

A build unpacks and mounts overlay views under ``<work_dir>/manyarch-build-*``.
A build killed with SIGKILL (a cancelled CI job) cannot clean up: its views
stay mounted, holding the unpacked base trees they sit on. Each working
directory names its owner (pid and start time); the next build sweeps the
directories whose owner is gone: unmount, then delete.

The working directory is shared with other users (``/var/tmp``): the sweep
takes only real directories owned by the caller, never a symlink (another
user's ``manyarch-build-x -> /`` would otherwise be unmounted and deleted by
root), and reads the owner file without following a link.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from manyarch import procs
from manyarch.rootfs import unmount_under
from manyarch.store import work_dir

PREFIX = "manyarch-build-"
OWNER = ".owner"


@contextmanager
def build_dir() -> Iterator[Path]:
    """A fresh working directory for one build, swept of dead builds' first; removed at the end."""
    base = work_dir()
    sweep(base)
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
    try:
        (path / OWNER).write_text(f"{os.getpid()} {procs.start_time(os.getpid())}\n")
        yield path
    finally:
        remove(path)


def sweep(base: Path) -> list[Path]:
    """Remove the working directories under ``base`` whose build is gone; returns them."""
    removed = []
    for d in sorted(base.glob(PREFIX + "*")):
        try:
            pid, start = _owner(d).split()
        except (OSError, ValueError):
            continue  # no owner yet (a build starting now), or not ours
        if pid.isdigit() and procs.alive(int(pid), start):
            continue
        if remove(d):
            removed.append(d)
    return removed


def _owner(d: Path) -> str:
    """The owner line of the caller's own directory ``d``; OSError for anything else."""
    st = d.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise PermissionError(f"{d} is not a directory of this user")
    fd = os.open(d / OWNER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise PermissionError(f"{d / OWNER} is not a file")
        return f.read(256).decode("ascii", "replace")


def remove(path: Path) -> bool:
    """Unmount what is mounted below ``path``, then delete it; False when a mount stays."""
    if not unmount_under(path):
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True
