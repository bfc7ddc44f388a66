"""``manyarch prune [--all] [--keep-storage SIZE]``: trim the build cache (LRU);
with ``--all`` also the unpacked image trees no image, container or build uses.
Killed builds' working directories (and their mounts) go first, always; so do the
``RUN --mount=type=cache`` directories no build holds."""

from __future__ import annotations

import argparse
from typing import Any

from manyarch.cli.common import defer, session


def register(sub: Any) -> None:
    """Add the ``prune`` command."""
    p = sub.add_parser(
        "prune",
        help="remove build cache entries, least recently used first",
    )
    defer(p, _flags)
    p.set_defaults(func=_run)


def _flags(p: argparse.ArgumentParser) -> None:
    from manyarch.imagebuild.cache import DEFAULT_MAX_BYTES

    p.description = (
        "Drop build cache entries (and their layers) until the cache fits "
        f"in --keep-storage (default {DEFAULT_MAX_BYTES // 1024**3}GB); --all drops every one."
    )
    p.add_argument(
        "-a",
        "--all",
        action="store_true",
        help="remove the whole build cache and the unpacked trees nothing uses",
    )
    p.add_argument("--keep-storage", metavar="SIZE", help="e.g. 5GB, 512MB")
    p.add_argument("-f", "--force", action="store_true", help="accepted for buildx compatibility")


def _run(args: argparse.Namespace) -> int:
    from manyarch.units import human_size

    with session(args) as s:
        done = s.prune(all=args.all, keep_storage=args.keep_storage)
    if done.swept:
        print(f"removed {done.swept} working directories of builds that were killed")
    r = done.cache
    print(
        f"removed {r.removed} entries, {human_size(r.freed)} freed; "
        f"{r.kept} entries ({human_size(r.size)}) kept in {done.cache_dir}"
    )
    if done.cache_mounts[0]:
        n, freed = done.cache_mounts
        print(f"removed {n} RUN --mount=type=cache directories, {human_size(freed)} freed")
    if done.trees is not None:
        print(f"removed {len(done.trees)} unpacked image trees from {done.trees_dir}")
    return 0
