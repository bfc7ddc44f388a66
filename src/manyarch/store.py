"""The local content store: one OCI layout shared by builds, pulls and runs."""

from __future__ import annotations

import os
from pathlib import Path

from manyarch.layout import Layout


def data_home() -> Path:
    """``$XDG_DATA_HOME/manyarch`` (``~/.local/share/manyarch`` by default)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "manyarch"


def store_path() -> Path:
    """Where the local store lives (``$MANYARCH_STORE`` overrides)."""
    override = os.environ.get("MANYARCH_STORE")
    return Path(override) if override else data_home() / "store"


def open_store() -> Layout:
    """The local store, created when missing."""
    path = store_path()
    path.mkdir(parents=True, exist_ok=True)
    return Layout.open(path, create=True)


def work_dir() -> Path:
    """A directory for temporary rootfs trees (on disk, not tmpfs)."""
    base = os.environ.get("MANYARCH_TMPDIR") or ("/var/tmp" if Path("/var/tmp").is_dir() else None)
    return Path(base) if base else Path(os.environ.get("TMPDIR", "/tmp"))
