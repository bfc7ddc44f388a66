"""Paths inside a rootfs, resolved as the container would see them."""

from __future__ import annotations

import fnmatch
import glob
import os
from pathlib import Path

from manyarch.errors import SandboxError

#: Linux's own limit on symlinks followed in one lookup (MAXSYMLINKS).
MAX_SYMLINKS = 40


def resolve_in_root(root: Path, path: str) -> Path:
    """``path`` (absolute in the container) under ``root``, every symlink followed inside it.

    ``..`` and absolute link targets never leave ``root``: a link to ``/usr``
    means ``root/usr``. The result may not exist. Raises :class:`SandboxError`
    after :data:`MAX_SYMLINKS` links (a loop).
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current = root
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if current != root:
                current = current.parent
            continue
        nxt = current / part
        if nxt.is_symlink():
            hops += 1
            if hops > MAX_SYMLINKS:
                raise SandboxError(f"too many levels of symbolic links in {path}")
            target = os.readlink(nxt)
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            if target.startswith("/"):
                current = root
            continue
        current = nxt
    return current


def in_root(root: Path, path: str) -> Path:
    """``path`` under ``root`` with its parents resolved inside it; the last name not followed."""
    parent, name = os.path.split(path.strip("/"))
    return resolve_in_root(root, parent) / name if name else root


def glob_in_root(root: Path, pattern: str, *, include_hidden: bool = False) -> list[str]:
    """The paths (relative, sorted) under ``root`` that match ``pattern`` as :func:`glob.glob`.

    Every directory on the way is resolved with :func:`resolve_in_root`, so a
    symlink planted in the tree (``/src -> /etc``) leads to ``root/etc``,
    never to the host's. Names starting with ``.`` match only a pattern that
    does (as glob's default) unless ``include_hidden`` (Go's ``filepath.Match``).
    """
    found = [""]
    for part in [p for p in pattern.split("/") if p not in ("", ".")]:
        nxt: list[str] = []
        for rel in found:
            if not glob.has_magic(part):
                nxt.append(f"{rel}/{part}" if rel else part)
                continue
            here = resolve_in_root(root, rel)
            try:
                names = os.listdir(here) if here.is_dir() else []
            except OSError:
                names = []
            hidden = include_hidden or part.startswith(".")
            nxt.extend(
                f"{rel}/{n}" if rel else n
                for n in sorted(fnmatch.filter(names, part))
                if hidden or not n.startswith(".")
            )
        found = nxt
    return sorted(r for r in found if r and _lexists(in_root(root, r)))


def _lexists(p: Path) -> bool:
    return p.exists() or p.is_symlink()
