"""Every test directory is collected by a plain ``pytest`` (as ``make test`` runs it)."""

import fnmatch
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def test_no_test_directory_is_skipped(pytestconfig: pytest.Config) -> None:
    patterns = pytestconfig.getini("norecursedirs")
    for path in TESTS.rglob("test_*.py"):
        for part in path.relative_to(TESTS).parts[:-1]:
            skipped = [p for p in patterns if fnmatch.fnmatch(part, p)]
            assert not skipped, f"{path.relative_to(TESTS)} is never run: {part!r} ~ {skipped}"
