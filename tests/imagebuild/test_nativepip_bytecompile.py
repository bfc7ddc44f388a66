"""Native pip's byte-code: cached pycs put in place, linked or copied."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from manyarch.imagebuild.nativepip.bytecompile import _from_cache


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
