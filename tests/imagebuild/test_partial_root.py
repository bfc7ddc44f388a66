"""A partial unpack: only the paths an interceptor names, their parents' metadata kept."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from manyarch.imagebuild.stages import pattern_filter
from manyarch.layers import unpack


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        ("usr", True),  # a parent of a pattern
        ("usr/local", True),
        ("usr/local/lib/x.py", True),  # under a subtree
        ("usr/bin/python3.11", True),
        ("usr/bin/perl", False),
        ("usr/lib/python3.11/sysconfig.py", True),
        ("usr/lib/python3.11/os.py", False),
        ("usr/lib/python3.11", True),  # a parent, matched by python3*
        ("lib", True),  # merged /usr: a symlink standing where a parent is
        ("var/log/x", False),
    ],
)
def test_pattern_filter(path: str, kept: bool) -> None:
    keep = pattern_filter(
        ["usr/local/**", "usr/bin/python*", "usr/lib/python3*/sysconfig.py", "lib/*/libc.so.6"]
    )
    assert keep(tuple(path.split("/"))) is kept


def _layer(path: Path, entries: list[tuple[str, str, bytes | str]]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o751
                tf.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
                tf.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tf.addfile(info)
            else:
                assert isinstance(data, bytes)
                info.size, info.mode = len(data), 0o640
                tf.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return path


def test_partial_unpack_keeps_what_is_asked(tmp_path: Path) -> None:
    one = _layer(
        tmp_path / "one.tar",
        [
            ("usr", "dir", b""),
            ("usr/bin", "dir", b""),
            ("usr/bin/python3.11", "file", b"py"),
            ("usr/bin/perl", "file", b"pl"),
            ("usr/bin/python3", "sym", "python3.11"),
            ("usr/local", "dir", b""),
            ("usr/local/old.txt", "file", b"old"),
            ("usr/local/keep.txt", "file", b"keep"),
            ("usr/local/perl-link", "link", "usr/bin/perl"),  # its target is left out
        ],
    )
    two = _layer(tmp_path / "two.tar", [("usr/local/.wh.old.txt", "file", b"")])
    root = tmp_path / "root"
    unpack(
        root,
        [("one", one, ""), ("two", two, "")],
        only=pattern_filter(["usr/local/**", "usr/bin/python*"]),
    )
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert found == [
        "usr",
        "usr/bin",
        "usr/bin/python3",
        "usr/bin/python3.11",
        "usr/local",
        "usr/local/keep.txt",
    ]
    assert (root / "usr/bin").stat().st_mode & 0o777 == 0o751
    assert (root / "usr/local/keep.txt").stat().st_mode & 0o777 == 0o640
    assert (root / "usr/bin").stat().st_mtime == 1000
