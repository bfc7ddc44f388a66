"""The local content store: one OCI layout shared by builds, pulls and runs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from manyarch.layout import Layout


def private_dir(path: Path) -> Path:
    """``path``, created when missing, with mode 0700 when it is the caller's.

    Unpacked image trees hold the image's setuid files and device nodes: another
    host user who could reach them would run them (containerd's CVE-2021-41103).
    A root of 0700 closes everything below it, whatever the image's modes.
    """
    path.mkdir(parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def private_data_dir(name: str) -> Path:
    """``data_home()/name``, both made private (:func:`private_dir`)."""
    return private_dir(private_dir(data_home()) / name)


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
    if not os.environ.get("MANYARCH_STORE"):
        private_dir(data_home())
    private_dir(path)
    return Layout.open(path, create=True)


def work_dir() -> Path:
    """A directory for temporary rootfs trees (on disk, not tmpfs)."""
    base = os.environ.get("MANYARCH_TMPDIR") or ("/var/tmp" if Path("/var/tmp").is_dir() else None)
    return Path(base) if base else Path(os.environ.get("TMPDIR", "/tmp"))
