"""What every test that builds needs: a store, caches and a work dir of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def isolated_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Store, data home (unpacked base trees), caches and MANYARCH_TMPDIR under tmp_path.

    The work dir must end empty: a build leaves no temporary directory behind.
    """
    monkeypatch.setenv("MANYARCH_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("MANYARCH_TMPDIR", str(work))
    yield work
    assert sorted(os.listdir(work)) == []


def isolate(mp: pytest.MonkeyPatch, root: Path) -> Path:
    """Store, data home, caches and MANYARCH_TMPDIR under ``root`` (made), for a fixture
    wider than a test; returns the work dir."""
    for var, sub in (
        ("MANYARCH_STORE", "store"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
        ("MANYARCH_TMPDIR", "work"),
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
        mp.setenv(var, str(root / sub))
    return root / "work"
