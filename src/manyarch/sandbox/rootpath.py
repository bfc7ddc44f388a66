"""Paths inside a rootfs, resolved as the container would see them."""

from __future__ import annotations

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
