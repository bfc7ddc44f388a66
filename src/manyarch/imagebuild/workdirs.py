"""A build's working directory, and the sweep of those a killed build left behind.

A build unpacks and mounts overlay views under ``<work_dir>/manyarch-build-*``.
A build killed with SIGKILL (a cancelled CI job) cannot clean up: its views
stay mounted, holding the unpacked base trees they sit on. Each working
directory names its owner (pid and start time); the next build sweeps the
directories whose owner is gone: unmount, then delete.
"""

from __future__ import annotations

import os
import shutil
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
            pid, start = (d / OWNER).read_text().split()
        except (OSError, ValueError):
            continue  # no owner yet (a build starting now), or not ours
        if pid.isdigit() and procs.alive(int(pid), start):
            continue
        if remove(d):
            removed.append(d)
    return removed


def remove(path: Path) -> bool:
    """Unmount what is mounted below ``path``, then delete it; False when a mount stays."""
    if not unmount_under(path):
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True
