"""Native pip's placing of wheels: what it writes, over what stands there, and what it tells."""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from pathlib import Path

import pytest

from manyarch.imagebuild.nativepip.place import place_wheel
from manyarch.imagebuild.nativepip.target import TargetFacts

LIB = "usr/local/lib/python3.11/dist-packages"


def _wheel(path: Path, files: list[tuple[str, bytes, int]]) -> Path:
    meta = "demo-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in files:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | mode) << 16
            zf.writestr(info, data)
        zf.writestr(f"{meta}/METADATA", "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n")
        zf.writestr(f"{meta}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n")
        zf.writestr(f"{meta}/RECORD", "")
    return path


def _facts() -> TargetFacts:
    return TargetFacts(
        version=(3, 11, 2),
        executable="/usr/bin/python3",
        arch="aarch64",
        glibc=(2, 36),
        venv="",
        debian=True,
        base_prefix="/usr",
        stdlib="/usr/lib/python3.11",
        site_dirs=("/usr/local/lib/python3.11/dist-packages",),
        pip_version="23.0.1",
        script_template="import sys\nfrom %(module)s import %(import_name)s\n%(func)s()\n",
        tags=("py3-none-any",),
        markers={},
    )


def test_placing_says_what_each_module_it_wrote_holds(tmp_path: Path) -> None:
    wheel = _wheel(
        tmp_path / "demo-1.0-py3-none-any.whl",
        [
            ("demo/__init__.py", b"x = 1\n", 0o644),
            ("demo/data.txt", b"data", 0o644),
            ("demo.data/scripts/tool.py", b"#!python\nprint('tool')\n", 0o755),
        ],
    )
    root = tmp_path / "root"
    root.mkdir()
    facts = _facts()
    placed = place_wheel(
        root, wheel, facts.scheme(), facts, executable=facts.executable, requested=True
    )
    lib = "/" + LIB
    assert set(placed.sources) == {f"{lib}/demo/__init__.py", "/usr/local/bin/tool.py"}
    for image_path, digest in placed.sources.items():  # the bytes written (a shebang rewritten)
        on_disk = (root / image_path.lstrip("/")).read_bytes()
        assert hashlib.sha256(on_disk).hexdigest() == digest
    assert (root / "usr/local/bin/tool.py").read_bytes().startswith(b"#!/usr/bin/python3\n")


@pytest.mark.filterwarnings("ignore:Duplicate name")  # the zip this test means to write
def test_modes_whatever_the_umask_and_later_entries_win(tmp_path: Path) -> None:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with_dupes = [
        ("demo/__init__.py", b"first", 0o644),
        ("demo/run.sh", b"#!/bin/sh\n", 0o755),
        ("demo/__init__.py", b"second", 0o644),  # a zip may name a file twice: the last wins
    ]
    root = tmp_path / "root"
    stale = root / LIB / "other" / "old.py"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale")
    facts = _facts()
    umask = os.umask(0o077)
    try:
        with_stale = [*with_dupes, ("other/old.py", b"new", 0o644)]
        place_wheel(
            root, _wheel(wheel, with_stale), facts.scheme(), facts,
            executable=facts.executable, requested=False,
        )  # fmt: skip
    finally:
        os.umask(umask)
    pkg = root / LIB / "demo"
    assert (pkg / "__init__.py").read_bytes() == b"second"
    assert stat.S_IMODE((pkg / "__init__.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((pkg / "run.sh").stat().st_mode) == 0o755
    assert stale.read_bytes() == b"new"  # a file that stood there is replaced
