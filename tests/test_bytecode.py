"""Bytecode compiled on the host for an image: the files asked for, reproducibly, bad ones left."""

from __future__ import annotations

import importlib.util
import marshal
import sys
from pathlib import Path

from manyarch.bytecode import bytecode_magic, compile_tree, host_python

MAGIC = int.from_bytes(importlib.util.MAGIC_NUMBER[:2], "little")
TAG = sys.implementation.cache_tag


def _site(root: Path) -> Path:
    site = root / "usr/local/lib/python3/site-packages/pkg"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("NAMES = frozenset({'x', 'y', 'z'})\n")
    (site / "other.py").write_text("A = 1\n")
    (site / "broken.py").write_text("def f(:\n")  # test data for another Python
    return site


def test_magic_read_from_the_standard_library_source(tmp_path: Path) -> None:
    (tmp_path / "importlib").mkdir()
    assert bytecode_magic(tmp_path) is None
    (tmp_path / "importlib/_bootstrap_external.py").write_text(
        "MAGIC_NUMBER = (3495).to_bytes(2, 'little') + b'\\r\\n'\n"
    )
    assert bytecode_magic(tmp_path) == 3495


def test_host_python_by_magic() -> None:
    assert host_python("python3", MAGIC) == sys.executable
    assert host_python("python3", 1) is None


def test_only_the_files_given_compile_the_same_twice_and_bad_ones_are_left(
    tmp_path: Path,
) -> None:
    out = []
    for name in ("a", "b"):
        root = tmp_path / name
        site = _site(root)
        compile_tree(sys.executable, root, [site / "__init__.py", site / "broken.py"])
        cache = site / "__pycache__"
        assert sorted(p.name for p in cache.iterdir()) == [f"__init__.{TAG}.pyc"]
        out.append((cache / f"__init__.{TAG}.pyc").read_bytes())
    assert out[0] == out[1]  # byte for byte, a frozenset of strings included
    assert int.from_bytes(out[0][4:8], "little") == 0b11  # PEP 552 checked hash
    code = marshal.loads(out[0][16:])
    assert code.co_filename == "/usr/local/lib/python3/site-packages/pkg/__init__.py"
