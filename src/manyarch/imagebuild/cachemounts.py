"""``RUN --mount=type=cache``: directories kept across builds, as BuildKit keeps them.

A cache is ``$XDG_DATA_HOME/manyarch/cachemounts/<key>/<n>/``; the key is the
id (BuildKit's default: the target), so every platform of a build shares it as
BuildKit's do (users put ``$TARGETPLATFORM`` in the id for one per platform).
A cache seeded ``from`` a stage or an image, or made with a ``uid``, ``gid``
or ``mode``, is another cache of the same id, as BuildKit's is (its key then
holds the base). ``sharing``: ``shared`` uses instance 0 side by side,
``locked`` waits for it alone, ``private`` takes the first instance nobody
uses (a new one if need be). Locks are ``flock`` s on ``<n>.lock``: ``manyarch
prune`` removes the caches no build holds. A cache is never in a layer (it is
mounted over the step's rootfs) nor in the build cache's keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from manyarch.dockerfile.mounts import Mount
from manyarch.oci.platform import Platform
from manyarch.store import data_home


def cachemounts_dir() -> Path:
    """Where cache mounts are kept."""
    return data_home() / "cachemounts"


def cache_key(m: Mount, platform: Platform) -> str:
    """The cache's directory name: its id, and its base when it has one."""
    parts: list[object] = [m.id]
    if m.from_ is not None:
        parts += [m.from_, m.source, str(platform)]
    if (m.uid, m.gid, m.mode) != (None, None, None):
        parts += [m.uid, m.gid, m.mode]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


@contextlib.contextmanager
def cache_dir(m: Mount, platform: Platform, seed: Callable[[], Path | None]) -> Iterator[Path]:
    """The directory to mount for ``m`` while the block runs (held as ``m.sharing`` says).

    ``seed()``: the tree a new cache starts from (``from``/``source``), or None.
    """
    top = cachemounts_dir() / cache_key(m, platform)
    top.mkdir(parents=True, exist_ok=True)
    (top / "id").write_text(m.id + "\n")
    n = 0
    while True:
        lock = open(top / f"{n}.lock", "a+b")  # noqa: SIM115  # held until the block ends
        try:
            if m.sharing == "private":
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    lock.close()
                    n += 1
                    continue
            else:
                fcntl.flock(lock, fcntl.LOCK_EX if m.sharing == "locked" else fcntl.LOCK_SH)
            path = top / str(n)
            _make(top, path, m, seed)
            os.utime(top)  # when it was last used, for whoever looks
            yield path
            return
        finally:
            lock.close()


def _make(top: Path, path: Path, m: Mount, seed: Callable[[], Path | None]) -> None:
    with open(top / "create.lock", "a+b") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if path.is_dir():
            return
        tmp = top / f".new-{path.name}"
        if tmp.exists():
            shutil.rmtree(tmp)
        src = seed()
        if src is not None and src.is_dir():
            subprocess.run(["cp", "-a", "--reflink=auto", f"{src}/.", str(tmp)], check=True)
        else:
            tmp.mkdir()
        os.chown(tmp, m.uid or 0, m.gid or 0)
        os.chmod(tmp, m.mode if m.mode is not None else 0o755)
        tmp.rename(path)


def prune_cachemounts() -> tuple[int, int]:
    """Remove every cache mount no build holds; returns (caches removed, bytes freed)."""
    root = cachemounts_dir()
    if not root.is_dir():
        return 0, 0
    removed = freed = 0
    for top in sorted(root.iterdir()):
        with contextlib.ExitStack() as held:
            try:
                for lf in sorted(top.glob("*.lock")):
                    f = held.enter_context(open(lf, "a+b"))
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a build uses it
            size = sum(p.lstat().st_size for p in top.rglob("*") if not p.is_symlink())
            shutil.rmtree(top, ignore_errors=True)
        removed += 1
        freed += size
    return removed, freed
