"""The deterministic writer: golden digests, independence from the machine, peers that read it."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest
import zstandard
from layertrees import LONG_NAME, UNICODE_NAME, build_tree, tree_state

from manyarch.errors import LayerError
from manyarch.layers import (
    EntryType,
    LayerInfo,
    TarEntry,
    write_layer,
    write_layer_from_dir,
)
from manyarch.layers import compress as lc
from manyarch.oci import mediatypes

EPOCH = 1_700_000_000

# Pinned: change only with a deliberate format change (and say so in the commit).
GOLDEN_GZIP_DIGEST = "sha256:f7bf4e9cdc750275145d74345603efe410b751b18c7112eb082f4a747966f918"
GOLDEN_DIFF_ID = "sha256:3be3bfcacbd036e65d7fc4e699c72e3580f1243e47afa23b962cb4018ef388a1"


def members(tar: bytes) -> list[tarfile.TarInfo]:
    """The entries of a tar (or tar.gz) held in memory."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        return tf.getmembers()


def _write(root: Path, **kw: object) -> tuple[LayerInfo, bytes]:
    buf = io.BytesIO()
    info = write_layer_from_dir(root, buf, **kw)  # type: ignore[arg-type]
    return info, buf.getvalue()


def test_golden_digest(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "tree")
    info, _ = _write(root, epoch=EPOCH, uid=0, gid=0)
    assert str(info.diff_id) == GOLDEN_DIFF_ID
    assert str(info.digest) == GOLDEN_GZIP_DIGEST
    assert info.media_type == mediatypes.OCI_LAYER_GZIP


def test_golden_plain_tar_is_the_diff_id(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "tree")
    info, blob = _write(root, epoch=EPOCH, uid=0, gid=0, compression=None)
    assert str(info.digest) == GOLDEN_DIFF_ID == str(info.diff_id)
    assert info.size == len(blob)
    assert info.media_type == mediatypes.OCI_LAYER


@pytest.mark.parametrize("compression", ["gzip", "zstd", None])
def test_same_digest_under_other_umask_and_mtimes(tmp_path: Path, compression: str | None) -> None:
    a = build_tree(tmp_path / "a", mtime=EPOCH + 10, umask=0o022)
    b = build_tree(tmp_path / "b", mtime=EPOCH + 99_999, umask=0o077)
    ia, _ = _write(a, epoch=EPOCH, uid=0, gid=0, compression=compression)
    ib, _ = _write(b, epoch=EPOCH, uid=0, gid=0, compression=compression)
    assert ia == ib


def test_mtimes_matter_without_epoch(tmp_path: Path) -> None:
    a = build_tree(tmp_path / "a", mtime=EPOCH + 10)
    b = build_tree(tmp_path / "b", mtime=EPOCH + 20)
    assert _write(a, uid=0, gid=0)[0].diff_id != _write(b, uid=0, gid=0)[0].diff_id


def test_epoch_clamps_only_later_mtimes(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "t", mtime=1_000)
    _, blob = _write(root, epoch=EPOCH, compression=None)
    assert {m.mtime for m in members(blob)} == {1_000}
    root2 = build_tree(tmp_path / "t2", mtime=EPOCH + 5)
    _, blob2 = _write(root2, epoch=EPOCH, compression=None)
    assert {m.mtime for m in members(blob2)} == {EPOCH}


@pytest.mark.parametrize("compression", ["gzip", "zstd", None])
def test_digest_and_diff_id_verified_independently(tmp_path: Path, compression: str | None) -> None:
    root = build_tree(tmp_path / "tree")
    info, blob = _write(root, epoch=EPOCH, compression=compression)
    assert info.size == len(blob)
    assert info.digest.hex == hashlib.sha256(blob).hexdigest()
    if compression == "gzip":
        tar = gzip.decompress(blob)
    elif compression == "zstd":
        tar = zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    else:
        tar = blob
    assert info.diff_id.hex == hashlib.sha256(tar).hexdigest()
    assert len(tar) % 512 == 0


def test_gzip_header_is_fixed(tmp_path: Path) -> None:
    _, blob = _write(build_tree(tmp_path / "t"), epoch=EPOCH)
    # magic, deflate, no FNAME/FCOMMENT flags, mtime 0, xfl 0, os 255
    assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def test_python_tarfile_reads_the_layer(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "tree")
    _, blob = _write(root, epoch=EPOCH, uid=0, gid=0)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tf:
        by_name = {m.name: m for m in tf.getmembers()}
        assert tf.extractfile("etc/hostname").read() == b"manyarch\n"  # type: ignore[union-attr]
    names = list(by_name)
    # parents come before their contents, component by component
    assert names.index("usr") < names.index("usr/bin") < names.index("usr/bin/tool")
    assert names == sorted(names, key=lambda n: n.encode().split(b"/"))
    assert by_name["usr/bin/tool-hardlink"].islnk()
    assert by_name["usr/bin/tool-hardlink"].linkname == "usr/bin/tool"
    assert by_name["usr/bin/tool-symlink"].linkname == "tool"
    assert by_name["usr/bin/suid"].mode == 0o4755
    assert by_name["tmp"].mode == 0o1777
    assert f"usr/share/{LONG_NAME}" in by_name
    assert f"usr/share/{UNICODE_NAME}" in by_name
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "" for m in by_name.values())
    assert all(m.mtime == 1_600_000_000 for m in by_name.values())


def test_gnu_tar_extracts_the_layer(tmp_path: Path) -> None:
    tar = shutil.which("tar")
    if tar is None:
        pytest.skip("GNU tar is not installed")
    root = build_tree(tmp_path / "tree")
    _, blob = _write(root)
    (tmp_path / "layer.tgz").write_bytes(blob)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        [tar, "-xzf", str(tmp_path / "layer.tgz"), "-C", str(out), "--same-owner", "-p"],
        check=True,
    )
    listing = subprocess.run(
        [tar, "-tzf", str(tmp_path / "layer.tgz")], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert "usr/bin/" in listing and f"usr/share/{LONG_NAME}" in listing
    assert tree_state(out) == tree_state(root)


def test_prefix_places_entries_and_adds_parents(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "main.py").write_text("print('hi')\n")
    _, blob = _write(src, prefix="/opt/app/", uid=1000, gid=1000, compression=None)
    entries = members(blob)
    assert [m.name for m in entries] == ["opt", "opt/app", "opt/app/pkg", "opt/app/pkg/main.py"]
    assert all((m.uid, m.gid) == (1000, 1000) for m in entries)
    assert [m.mode for m in entries[:2]] == [0o755, 0o755]


def test_keeps_owners_when_not_forced(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    shutil.chown(src / "f", 1234, 5678)
    _, blob = _write(src, compression=None)
    (m,) = members(blob)
    assert (m.uid, m.gid) == (1234, 5678)


def test_bytes_and_file_sources_give_the_same_blob(tmp_path: Path) -> None:
    data = bytes(range(256)) * 12_000  # ~3 MiB: crosses the compressor's chunking
    (tmp_path / "big").write_bytes(data)
    header = TarEntry.file("a", b"small", mtime=5)
    from_bytes = [header, TarEntry.file("big", data, mtime=5)]
    from_file = [header, TarEntry("big", size=len(data), source=tmp_path / "big", mtime=5)]
    one, two = io.BytesIO(), io.BytesIO()
    assert write_layer(from_bytes, one) == write_layer(from_file, two)
    assert one.getvalue() == two.getvalue()


def test_entries_are_sorted_whatever_the_input_order() -> None:
    entries = [
        TarEntry.file("b/z", b"z"),
        TarEntry.directory("b"),
        TarEntry.whiteout("a/gone"),
        TarEntry.opaque("c"),
        TarEntry.symlink("a-link", "b/z"),
        TarEntry.directory("a"),
    ]
    first, second = io.BytesIO(), io.BytesIO()
    assert write_layer(entries, first) == write_layer(entries[::-1], second)
    names = [m.name for m in members(first.getvalue())]
    assert names == ["a", "a/.wh.gone", "a-link", "b", "b/z", "c/.wh..wh..opq"]


def test_file_that_changes_size_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"12345")
    entry = TarEntry("f", size=10, source=tmp_path / "f")
    with pytest.raises(LayerError, match="changed size"):
        write_layer([entry], io.BytesIO())


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([TarEntry.file("a"), TarEntry.file("a")], "given twice"),
        ([TarEntry.hardlink("a", "b"), TarEntry.file("b")], "before its target"),
    ],
)
def test_bad_entry_lists(entries: list[TarEntry], message: str) -> None:
    with pytest.raises(LayerError, match=message):
        write_layer(entries, io.BytesIO())


def test_hardlink_to_a_lower_layer_is_allowed() -> None:
    info = write_layer([TarEntry.hardlink("a", "lower/file")], io.BytesIO())
    assert info.size > 0


@pytest.mark.parametrize("path", ["/abs", "a/../b", "../up"])
def test_entries_refuse_paths_an_unpacker_would_reject(path: str) -> None:
    with pytest.raises(ValueError):
        TarEntry.file(path)


def test_docker_media_type_is_gzip_only() -> None:
    info = write_layer([TarEntry.file("a")], io.BytesIO(), docker=True)
    assert info.media_type == mediatypes.DOCKER_LAYER
    with pytest.raises(LayerError, match="gzip"):
        write_layer([TarEntry.file("a")], io.BytesIO(), docker=True, compression="zstd")
    with pytest.raises(LayerError, match="unknown"):
        write_layer([TarEntry.file("a")], io.BytesIO(), compression="brotli")


def test_descriptor() -> None:
    info = write_layer([TarEntry.file("a", b"x")], io.BytesIO(), compression="zstd")
    d = info.descriptor()
    assert (d.media_type, d.digest, d.size) == (mediatypes.OCI_LAYER_ZSTD, info.digest, info.size)


def test_special_files(tmp_path: Path) -> None:
    entries = [
        TarEntry("dev/null", EntryType.CHAR, 0o666, devmajor=1, devminor=3),
        TarEntry("dev/loop0", EntryType.BLOCK, 0o660, devmajor=7, devminor=0),
        TarEntry("run/fifo", EntryType.FIFO, 0o600),
    ]
    buf = io.BytesIO()
    write_layer(entries, buf, compression=None)
    by_name = {m.name: m for m in members(buf.getvalue())}
    assert by_name["dev/null"].ischr() and by_name["dev/null"].devminor == 3
    assert by_name["dev/loop0"].isblk() and by_name["dev/loop0"].devmajor == 7
    assert by_name["run/fifo"].isfifo()


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "layer-compress"]


def test_compressing_thread_gives_the_one_thread_bytes(tmp_path: Path) -> None:
    # many 1 MiB pieces, fed in order to the compressing thread: the blob is the
    # one a plain loop over the same pieces makes, whatever the threads' timing
    rng = random.Random(7)
    for i in range(12):
        text = b" ".join(rng.choice([b"alpha", b"beta", b"gamma\n"]) for _ in range(80_000))
        (tmp_path / f"f{i}").write_bytes(text + rng.randbytes(100_000))
    info, blob = _write(tmp_path, epoch=EPOCH)
    plain = io.BytesIO()
    write_layer_from_dir(tmp_path, plain, compression=None, epoch=EPOCH)
    tar = plain.getvalue()
    assert len(tar) > 5 * lc.CHUNK
    one = lc.compressor("gzip")
    expected = b"".join(one.compress(tar[i : i + lc.CHUNK]) for i in range(0, len(tar), lc.CHUNK))
    expected += one.flush()
    assert blob == expected
    assert (str(info.digest), str(info.diff_id)) == (
        "sha256:" + hashlib.sha256(expected).hexdigest(),
        "sha256:" + hashlib.sha256(tar).hexdigest(),
    )
    assert gzip.decompress(blob) == tar
    assert _threads() == []


class _FullDisk(io.RawIOBase):
    def __init__(self, room: int) -> None:
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.room -= len(b)
        if self.room < 0:
            raise OSError(28, "No space left on device")
        return len(b)


def test_failures_end_the_compressing_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(3)
    for i in range(6):
        (tmp_path / f"f{i}").write_bytes(rng.randbytes(1_500_000))
    # the destination fails (its write runs in the caller's thread)
    with pytest.raises(OSError, match="No space left"):
        write_layer_from_dir(tmp_path, _FullDisk(2_000_000))  # type: ignore[arg-type]
    assert _threads() == []
    # a file shrinks while it is read
    entries = [TarEntry(f"f{i}", size=1_500_000, source=tmp_path / f"f{i}") for i in range(6)]
    (tmp_path / "f4").write_bytes(b"short")
    with pytest.raises(LayerError, match="changed size"):
        write_layer(entries, io.BytesIO())
    assert _threads() == []

    # the compressor itself fails, in the thread
    class Broken:
        def compress(self, data: bytes) -> bytes:
            raise MemoryError("compressor out of memory")

        def flush(self) -> bytes:
            return b""

    monkeypatch.setitem(lc._COMPRESSORS, "gzip", Broken)
    with pytest.raises(MemoryError, match="compressor out of memory"):
        write_layer(entries[:3], io.BytesIO())
    assert _threads() == []
