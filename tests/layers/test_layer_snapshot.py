"""Snapshots and diff layers: what a RUN step changed, as a layer with whiteouts."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from layertrees import LONG_NAME, UNICODE_NAME, build_tree, tree_state

from manyarch.layers import Snapshot, unpack, write_diff_layer, write_layer_from_dir
from manyarch.oci import mediatypes

SHARE = ["data.bin", "zeros", LONG_NAME, UNICODE_NAME]


def _names(blob: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        return tf.getnames()


def _diff(root: Path, before: Snapshot) -> tuple[list[str], bytes]:
    buf = io.BytesIO()
    info = write_diff_layer(root, before, buf, compression=None)
    assert info is not None
    assert info.media_type == mediatypes.OCI_LAYER
    return _names(buf.getvalue()), buf.getvalue()


def test_nothing_changed_gives_no_layer(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "root")
    before = Snapshot.take(root)
    assert len(before) > 20 and "usr/bin/tool" in before
    assert not before.changes(root)
    assert write_diff_layer(root, before, io.BytesIO()) is None


@pytest.mark.parametrize(
    ("change", "added", "changed", "deleted", "entries"),
    [
        (
            lambda r: (r / "etc/new.conf").write_text("new"),
            ["etc/new.conf"],
            ["etc"],
            [],
            ["etc", "etc/new.conf"],
        ),
        (
            lambda r: (r / "etc/hostname").write_text("other\n"),
            [],
            ["etc/hostname"],
            [],
            ["etc", "etc/hostname"],
        ),
        (
            # same size, mtime put back: only the ctime tells
            lambda r: (
                (r / "etc/hostname").write_text("MANYARCH\n"),
                os.utime(r / "etc/hostname", (1_600_000_000, 1_600_000_000)),
            ),
            [],
            ["etc/hostname"],
            [],
            ["etc", "etc/hostname"],
        ),
        (
            lambda r: (r / "usr/bin/tool").chmod(0o700),
            [],
            # a hard link pair shares the inode, so both names changed
            ["usr/bin/tool", "usr/bin/tool-hardlink"],
            [],
            ["usr", "usr/bin", "usr/bin/tool", "usr/bin/tool-hardlink"],
        ),
        (
            lambda r: (r / "etc/shadow").unlink(),
            [],
            ["etc"],
            ["etc/shadow"],
            ["etc", "etc/.wh.shadow"],
        ),
        (
            lambda r: shutil.rmtree(r / "usr/share"),
            [],
            ["usr"],
            # every deleted path is reported, but one whiteout covers the tree
            ["usr/share", *[f"usr/share/{n}" for n in SHARE]],
            ["usr", "usr/.wh.share"],
        ),
    ],
    ids=["add", "modify-content", "modify-keep-mtime", "chmod", "delete-file", "delete-dir"],
)
def test_changes(
    tmp_path: Path,
    change: object,
    added: list[str],
    changed: list[str],
    deleted: list[str],
    entries: list[str],
) -> None:
    root = build_tree(tmp_path / "root")
    before = Snapshot.take(root)
    change(root)  # type: ignore[operator]
    c = before.changes(root)
    assert list(c.added) == added
    assert list(c.changed) == changed
    assert sorted(c.deleted) == sorted(deleted)
    names, _ = _diff(root, before)
    assert names == entries


def test_replace_file_by_dir_and_dir_by_file(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "root")
    before = Snapshot.take(root)
    (root / "etc/hostname").unlink()
    (root / "etc/hostname").mkdir()
    (root / "etc/hostname/inside").write_text("x")
    shutil.rmtree(root / "var/empty")
    (root / "var/empty").write_text("now a file")
    c = before.changes(root)
    assert c.added == ("etc/hostname/inside",)
    assert set(c.changed) >= {"etc/hostname", "var/empty"}
    assert c.whiteouts == ()
    names, _ = _diff(root, before)
    assert names == ["etc", "etc/hostname", "etc/hostname/inside", "var", "var/empty"]


def test_base_plus_diff_reproduces_the_tree(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "root")
    base = io.BytesIO()
    write_layer_from_dir(root, base)
    before = Snapshot.take(root)
    # what a RUN step might do
    (root / "etc/hostname").write_text("changed\n")
    (root / "usr/bin/tool").chmod(0o750)
    shutil.rmtree(root / "usr/share")
    (root / "etc/shadow").unlink()
    (root / "opt/app").mkdir(parents=True)
    (root / "opt/app/main.py").write_text("print()\n")
    os.link(root / "opt/app/main.py", root / "opt/app/alias.py")
    os.symlink("app/main.py", root / "opt/link")
    (root / "var/empty").rmdir()
    (root / "var/empty").mkdir(mode=0o711)
    diff = io.BytesIO()
    info = write_diff_layer(root, before, diff)
    assert info is not None
    out = tmp_path / "out"
    base.seek(0)
    diff.seek(0)
    unpack(out, [("base", base, mediatypes.OCI_LAYER_GZIP), ("diff", diff, info.media_type)])
    assert tree_state(out) == tree_state(root)


def test_excluded_paths_are_neither_recorded_nor_reported(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "root")
    before = Snapshot.take(root, exclude=["tmp", "/var/empty"])
    assert "tmp" not in before and "var/empty" not in before
    (root / "tmp/scratch").write_text("x")
    (root / "var/empty/y").write_text("y")
    assert not before.changes(root)


def test_diff_layer_is_deterministic_with_epoch(tmp_path: Path) -> None:
    blobs = []
    for name in ("a", "b"):
        root = build_tree(tmp_path / name)
        before = Snapshot.take(root)
        (root / "new").write_text("same content")
        (root / "etc/shadow").unlink()
        buf = io.BytesIO()
        write_diff_layer(root, before, buf, epoch=1_000)
        blobs.append(buf.getvalue())
    assert blobs[0] == blobs[1]
