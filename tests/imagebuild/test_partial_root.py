"""A partial unpack: only the paths an interceptor names, their parents' metadata kept."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import cast

import pytest

from manyarch.errors import UnsafeLayerEntry
from manyarch.imagebuild.stages import (
    LayerIndex,
    StageState,
    StageTrees,
    _read_by_tarfile,
    _scanned,
    kept_spans,
    pattern_filter,
)
from manyarch.layers import unpack
from manyarch.layout import Layout
from manyarch.oci.digest import Digest
from manyarch.oci.manifest import Descriptor, ImageConfig
from manyarch.oci.mediatypes import OCI_LAYER
from manyarch.oci.platform import Platform


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


class _Blobs:
    """What the layer index reads of a store: a blob's path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def blob_path(self, digest: object) -> Path:
        return self.path


def _index_both_ways(layer: Path) -> tuple[LayerIndex, LayerIndex]:
    desc = Descriptor(OCI_LAYER, Digest.of(layer.read_bytes()), layer.stat().st_size)
    store = cast(Layout, _Blobs(layer))
    return _scanned(store, desc), _read_by_tarfile(store, desc)


_ENTRIES: list[tuple[str, str, bytes | str]] = [
    ("usr", "dir", b""),
    ("usr/bin", "dir", b""),
    ("usr/bin/python3.11", "file", b"py" * 600),
    ("usr/bin/perl", "file", b"pl" * 3000),
    ("usr/bin/python3", "sym", "python3.11"),
    ("usr/local", "dir", b""),
    ("usr/local/keep.txt", "file", b"keep"),
    ("usr/local/" + "x" * 150, "dir", b""),  # a long name (pax)
    ("usr/local/" + "x" * 150 + "/deep.txt", "file", b"deep"),
    ("usr/local/perl-link", "link", "usr/bin/perl"),
    ("usr/local/py-link", "link", "usr/bin/python3.11"),
    ("var/.wh.cache", "file", b""),
    ("var/lib/dpkg/status", "file", b"s" * 5000),
]


def _tree(root: Path) -> list[tuple[str, int, float, bytes]]:
    """Every path under ``root``: its mode, mtime and (a file's) bytes."""
    return [
        (str(p.relative_to(root)), p.lstat().st_mode, p.lstat().st_mtime,
         p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
        for p in sorted(root.rglob("*"))
    ]  # fmt: skip


def test_the_scanned_index_is_tarfile_s(tmp_path: Path) -> None:
    scanned, read = _index_both_ways(_layer(tmp_path / "l.tar", _ENTRIES))
    assert (scanned.entries, scanned.hidden, scanned.opaque) == (
        read.entries, read.hidden, read.opaque
    )  # fmt: skip
    assert scanned.spans is not None and read.spans is None


def test_a_partial_unpack_from_spans_is_the_same_tree(tmp_path: Path) -> None:
    layer = _layer(tmp_path / "l.tar", _ENTRIES)
    keep = pattern_filter(["usr/local/**", "usr/bin/python*", "var/lib/*"])
    spans = kept_spans(_index_both_ways(layer)[0], keep)
    assert spans is not None and len(spans) < len(_ENTRIES)
    unpack(tmp_path / "a", [("l", layer, "")], only=keep)
    unpack(tmp_path / "b", [("l", layer, "")], only=keep, spans=[spans])

    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert (tmp_path / "b/usr/local/py-link").samefile(tmp_path / "b/usr/bin/python3.11")


def test_a_hostile_name_left_out_by_the_patterns_still_raises(tmp_path: Path) -> None:
    layer = _layer(tmp_path / "l.tar", [*_ENTRIES, ("usr/../../escape", "file", b"x")])
    keep = pattern_filter(["usr/local/**"])
    spans = kept_spans(_index_both_ways(layer)[0], keep)
    with pytest.raises(UnsafeLayerEntry):
        unpack(tmp_path / "b", [("l", layer, "")], only=keep, spans=[spans])


def test_a_discarded_tree_is_gone_once_the_platform_closes(tmp_path: Path) -> None:
    trees = StageTrees(cast(Layout, None), tmp_path, Platform.parse("linux/arm64"), print)
    partial = tmp_path / "partial1"
    (partial / "usr/local/lib").mkdir(parents=True)
    (partial / "usr/local/lib/x.py").write_text("x")
    trees.discard(partial)  # in the background: the step does not wait
    trees.close()
    assert not partial.exists()


def test_a_partial_tree_of_members_kept_from_the_scan_reads_no_blob(tmp_path: Path) -> None:
    layer = _layer(tmp_path / "l.tar", [*_ENTRIES, ("usr/local/only-here", "file", b"grab")])
    desc = Descriptor(OCI_LAYER, Digest.of(layer.read_bytes()), layer.stat().st_size)
    trees = StageTrees(
        cast(Layout, _Blobs(layer)), tmp_path, Platform.parse("linux/arm64"), print,
        prefetch=["usr/local/**", "usr/bin/python*"],
    )  # fmt: skip
    trees.index(desc)  # as WORKDIR's lookup does
    patterns = ["usr/local/**", "usr/bin/python*"]
    keep = pattern_filter(patterns)
    unpack(tmp_path / "want", [("l", layer, "")], only=keep)
    layer.rename(tmp_path / "gone.tar")  # nothing reads the blob now
    state = StageState(tmp_path / "stage", cast(ImageConfig, None), [desc])
    root = trees.partial_root(state, patterns)

    assert _tree(root) == _tree(tmp_path / "want")
    assert (root / "usr/local/only-here").read_bytes() == b"grab"
