"""Native pip's byte-code: cached pycs put in place, keyed by what placing wrote."""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from pathlib import Path

import pytest

from manyarch.imagebuild.nativepip.bytecompile import _from_cache
from manyarch.imagebuild.nativepip.place import place_wheel
from manyarch.imagebuild.nativepip.target import TargetFacts


@pytest.mark.parametrize("link", [True, False])
def test_cached_pycs_are_put_in_place_linked_or_copied(tmp_path: Path, link: bool) -> None:
    umask = os.umask(0o077)  # not what the pycs get
    try:
        cache = tmp_path / "cache"
        cache.mkdir()
        kept = cache / "k1"
        kept.write_bytes(b"pyc bytes")
        kept.chmod(0o644)
        root = tmp_path / "root"
        (root / "pkg" / "__pycache__").mkdir(parents=True)
        outside = tmp_path / "outside"
        outside.write_bytes(b"not to be written")
        planted = root / "pkg" / "__pycache__" / "a.cpython-311.pyc"
        planted.symlink_to(outside)  # replaced, not followed
        fresh = root / "new" / "__pycache__" / "b.cpython-311.pyc"
        fresh.parent.parent.mkdir()
        todo = _from_cache(
            [
                ("/pkg/a.py", planted, kept),
                ("/new/b.py", fresh, kept),
                ("/pkg/c.py", root / "pkg" / "__pycache__" / "c.pyc", cache / "missing"),
            ],
            link,
        )
    finally:
        os.umask(umask)
    assert [m for m, _, _ in todo] == ["/pkg/c.py"]
    for pyc in (planted, fresh):
        st = pyc.lstat()
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
        assert pyc.read_bytes() == b"pyc bytes"
        assert pyc.samefile(kept) is link
    assert outside.read_bytes() == b"not to be written"


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
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    files = {
        "demo/__init__.py": b"x = 1\n",
        "demo/data.txt": b"data",
        "demo.data/scripts/tool.py": b"#!python\nprint('tool')\n",
    }
    meta = "demo-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{meta}/METADATA", "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n")
        zf.writestr(f"{meta}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n")
        zf.writestr(f"{meta}/RECORD", "")
    root = tmp_path / "root"
    root.mkdir()
    facts = _facts()
    placed = place_wheel(
        root, wheel, facts.scheme(), facts, executable=facts.executable, requested=True
    )
    lib = "/usr/local/lib/python3.11/dist-packages"
    assert set(placed.sources) == {f"{lib}/demo/__init__.py", "/usr/local/bin/tool.py"}
    for image_path, digest in placed.sources.items():  # the bytes written (a shebang rewritten)
        on_disk = (root / image_path.lstrip("/")).read_bytes()
        assert hashlib.sha256(on_disk).hexdigest() == digest
    assert (root / "usr/local/bin/tool.py").read_bytes().startswith(b"#!/usr/bin/python3\n")
