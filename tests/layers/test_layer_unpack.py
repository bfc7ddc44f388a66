"""Unpacking: round trips, whiteouts across a stack, and a corpus of hostile tarballs."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import random
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard
from layertrees import build_tree, tree_state

from manyarch.errors import LayerError, UnsafeLayerEntry
from manyarch.layers import TarEntry, unpack, write_layer, write_layer_from_dir
from manyarch.oci import mediatypes

NOISE = random.Random(0).randbytes(100_000)
GZ = mediatypes.OCI_LAYER_GZIP
TAR = mediatypes.OCI_LAYER


def layer(entries: list[TarEntry], compression: str | None = "gzip") -> io.BytesIO:
    """A layer blob written by us, rewound."""
    buf = io.BytesIO()
    write_layer(entries, buf, compression=compression)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("compression", ["gzip", "zstd", None])
def test_round_trip(tmp_path: Path, compression: str | None) -> None:
    src = build_tree(tmp_path / "src")
    os.chown(src / "etc/shadow", 0, 42, follow_symlinks=False)
    os.chown(src / "usr/bin/tool-symlink", 7, 8, follow_symlinks=False)
    blob = tmp_path / "layer"
    with blob.open("wb") as f:
        info = write_layer_from_dir(src, f, compression=compression)
    out = tmp_path / "out"
    unpack(out, [(str(info.digest), blob, info.media_type)])
    assert tree_state(out) == tree_state(src)


def test_round_trip_as_stream_without_owners(tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src")
    os.chown(src / "etc/shadow", 1, 42)
    blob = io.BytesIO()
    write_layer_from_dir(src, blob)
    blob.seek(0)
    out = tmp_path / "out"
    unpack(out, [("l", blob, GZ)], same_owner=False)
    assert tree_state(out, owners=False) == tree_state(src, owners=False)
    assert (out / "etc/shadow").stat().st_gid == os.getegid()


def test_media_type_is_a_hint_magic_bytes_decide(tmp_path: Path) -> None:
    blob = layer([TarEntry.file("f", b"zstd inside")], "zstd")
    unpack(tmp_path / "r", [("mislabelled", blob, GZ)])
    assert (tmp_path / "r/f").read_bytes() == b"zstd inside"


def test_refuses_a_manifest_as_a_layer(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="not a layer"):
        unpack(tmp_path, [("m", io.BytesIO(b"{}"), mediatypes.OCI_MANIFEST)])


def _flip(blob: bytes, pos: int) -> bytes:
    return blob[:pos] + bytes([blob[pos] ^ 0x55]) + blob[pos + 1 :]


@pytest.mark.parametrize(
    "blob",
    [
        gzip.compress(b"not a tar at all" * 100),
        layer([TarEntry.file("f", NOISE)]).getvalue()[:20_000],
        layer([TarEntry.file("f", NOISE)], None).getvalue()[:20_000],
        gzip.compress(NOISE)[:20_000],
        b"\x1f\x8b\x08\x00garbage",
        zstandard.ZstdCompressor().compress(b"x" * 600),
        _flip(layer([TarEntry.file("f", b"text " * 5000)]).getvalue(), 20),
        _flip(layer([TarEntry.file("f", NOISE)], "zstd").getvalue(), 50_000),
    ],
    ids=[
        "gzip-of-junk",
        "truncated-layer",
        "truncated-tar",
        "truncated-gzip",
        "bad-gzip",
        "zstd-of-junk",
        "flipped-deflate",
        "flipped-zstd",
    ],
)
def test_corrupt_blobs_are_layer_errors(tmp_path: Path, blob: bytes) -> None:
    with pytest.raises(LayerError, match="layer corrupt"):
        unpack(tmp_path / "r", [("corrupt", io.BytesIO(blob), GZ)])


def test_whiteouts_and_opaque_dirs_across_a_stack(tmp_path: Path) -> None:
    one = [
        TarEntry.file("a/x", b"x1"),
        TarEntry.file("a/y", b"y1"),
        TarEntry.file("d/old", b"old"),
        TarEntry.file("d/sub/deep", b"deep"),
        TarEntry.file("d/-sub/old", b"old"),
        TarEntry.file("keep", b"keep"),
        TarEntry.file("gone/inner/f", b"f"),
        TarEntry.symlink("link", "keep"),
    ]
    two = [
        TarEntry.whiteout("a/x"),
        TarEntry.whiteout("gone"),
        TarEntry.whiteout("link"),
        TarEntry.whiteout("never-existed"),
        TarEntry.opaque("d"),
        # sorts before the marker ('-' < '.'): the marker must not remove it
        TarEntry.file("d/-early", b"early"),
        # a lower directory this layer writes into before the marker: kept, emptied
        TarEntry.file("d/-sub/new", b"new"),
        TarEntry.file("d/sub/new", b"new"),
        # a whiteout hides the lower layers only, never its own layer
        TarEntry.whiteout("fresh"),
        TarEntry.file("fresh", b"fresh"),
    ]
    three = [
        TarEntry.file("a/x", b"x3"),
        TarEntry.whiteout("keep"),
        TarEntry.directory("gone"),
    ]
    root = tmp_path / "root"
    unpack(root, [("one", layer(one), GZ), ("two", layer(two), GZ), ("three", layer(three), GZ)])
    found = {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in sorted(root.rglob("*"))
    }
    assert found == {
        "a": None,
        "a/x": b"x3",
        "a/y": b"y1",
        "d": None,
        "d/-early": b"early",
        "d/-sub": None,
        "d/-sub/new": b"new",
        "d/sub": None,
        "d/sub/new": b"new",
        "fresh": b"fresh",
        "gone": None,
    }


def test_later_layers_replace_types(tmp_path: Path) -> None:
    one = [TarEntry.file("p/file", b"1"), TarEntry.file("q", b"q"), TarEntry.symlink("s", "q")]
    two = [
        TarEntry.file("p", b"now a file"),
        TarEntry.directory("q"),
        TarEntry.file("q/inside", b"now a dir"),
    ]
    three = [TarEntry.directory("s"), TarEntry.file("s/t", b"s is a dir")]
    root = tmp_path / "root"
    unpack(root, [("1", layer(one), GZ), ("2", layer(two), GZ), ("3", layer(three), GZ)])
    assert (root / "p").read_bytes() == b"now a file"
    assert (root / "q/inside").read_bytes() == b"now a dir"
    assert not (root / "s").is_symlink() and (root / "s/t").read_bytes() == b"s is a dir"
    # without the directory entry, a file in the way is an error (as with docker)
    with pytest.raises(LayerError, match="needs p to be a directory"):
        unpack(root, [("4", layer([TarEntry.file("p/x", b"x")]), GZ)])


def test_symlinked_parents_resolve_inside_the_root(tmp_path: Path) -> None:
    # Debian's usrmerge: /bin -> usr/bin; /var/run -> /run (absolute)
    base = [
        TarEntry.directory("usr/bin"),
        TarEntry.symlink("bin", "usr/bin"),
        TarEntry.directory("run"),
        TarEntry.directory("var"),
        TarEntry.symlink("var/run", "/run"),
    ]
    top = [TarEntry.file("bin/tool", b"tool"), TarEntry.file("var/run/pid", b"1")]
    root = tmp_path / "root"
    unpack(root, [("base", layer(base), GZ), ("top", layer(top), GZ)])
    assert (root / "usr/bin/tool").read_bytes() == b"tool"
    assert (root / "run/pid").read_bytes() == b"1"
    assert (root / "bin").is_symlink()


def test_absolute_symlink_to_a_host_path_stays_inside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    entries = [TarEntry.symlink("evil", str(outside)), TarEntry.file("evil/pwned", b"x")]
    root = tmp_path / "root"
    unpack(root, [("abs", layer(entries), GZ)])
    assert list(outside.iterdir()) == []
    assert (root / str(outside).lstrip("/") / "pwned").read_bytes() == b"x"


def test_hardlinks_and_lower_layer_hardlinks(tmp_path: Path) -> None:
    one = [TarEntry.file("lower", b"shared", mode=0o640)]
    two = [TarEntry.file("a", b"A"), TarEntry.hardlink("b", "a"), TarEntry.hardlink("c", "lower")]
    root = tmp_path / "root"
    unpack(root, [("1", layer(one), GZ), ("2", layer(two), GZ)])
    assert (root / "a").stat().st_ino == (root / "b").stat().st_ino
    assert (root / "c").stat().st_ino == (root / "lower").stat().st_ino
    assert stat.S_IMODE((root / "c").stat().st_mode) == 0o640


def test_dir_modes_and_mtimes_are_set_after_contents(tmp_path: Path) -> None:
    entries = [
        TarEntry.directory("ro", mode=0o555, mtime=1234),
        TarEntry.file("ro/f", b"x", mtime=99),
    ]
    root = tmp_path / "root"
    unpack(root, [("l", layer(entries), GZ)])
    st = (root / "ro").stat()
    assert stat.S_IMODE(st.st_mode) == 0o555 and st.st_mtime == 1234
    assert (root / "ro/f").stat().st_mtime == 99


def test_device_nodes_need_permission(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from manyarch.layers import EntryType

    entries = [
        TarEntry("dev/null", EntryType.CHAR, 0o666, devmajor=1, devminor=3),
        TarEntry("fifo", EntryType.FIFO, 0o600),
    ]
    root = tmp_path / "root"
    with caplog.at_level(logging.WARNING, logger="manyarch.layers"):
        unpack(root, [("dev", layer(entries), GZ)])
    assert stat.S_ISFIFO(os.lstat(root / "fifo").st_mode)
    if os.geteuid() == 0 and not caplog.records:
        assert stat.S_ISCHR(os.lstat(root / "dev/null").st_mode)
    else:  # no CAP_MKNOD here: skipped with a warning naming the entry
        assert not (root / "dev/null").exists()
        assert "dev/null" in caplog.text


# --- hostile tarballs, written with tarfile, which writes whatever it is told ---

Member = tuple[str, str, str]  # (type: f/d/l/h, name, content or link target)


def hostile_tar(members: list[Member]) -> bytes:
    """A tar of exactly these members, in this order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, name, value in members:
            info = tarfile.TarInfo(name)
            data = None
            if kind == "f":
                data = io.BytesIO(value.encode())
                info.size = len(value)
            elif kind == "d":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            elif kind == "l":
                info.type, info.linkname = tarfile.SYMTYPE, value
            elif kind == "h":
                info.type, info.linkname = tarfile.LNKTYPE, value
            tf.addfile(info, data)
    return buf.getvalue()


def _hostile_cases(sentinel: Path) -> list[tuple[str, list[Member], str]]:
    return [
        ("dotdot", [("f", "../sentinel/pwned", "x")], "../sentinel/pwned"),
        (
            "dotdot-nested",
            [("f", "a/b/../../../sentinel/pwned", "x")],
            "a/b/../../../sentinel/pwned",
        ),
        ("absolute", [("f", f"{sentinel}/pwned", "x")], f"{sentinel}/pwned"),
        (
            "write-through-escaping-symlink",
            [("l", "evil", "../sentinel"), ("f", "evil/pwned", "x")],
            "evil/pwned",
        ),
        (
            "file-under-symlink-to-outside-dir",
            [("d", "dir", ""), ("l", "dir/up", "../../sentinel"), ("f", "dir/up/pwned", "x")],
            "dir/up/pwned",
        ),
        (
            "symlink-chain-escape",
            [("l", "a", "b/../.."), ("d", "b", ""), ("f", "a/sentinel/pwned", "x")],
            "a/sentinel/pwned",
        ),
        ("hardlink-dotdot", [("h", "h", "../sentinel/secret")], "h"),
        ("hardlink-absolute", [("h", "h", f"{sentinel}/secret")], "h"),
        (
            "hardlink-through-escaping-symlink",
            [("l", "evil", "../sentinel"), ("h", "h", "evil/secret")],
            "h",
        ),
        ("whiteout-dotdot-path", [("f", "../.wh.sentinel", "")], "../.wh.sentinel"),
        (
            "whiteout-through-escaping-symlink",
            [("l", "evil", "../sentinel"), ("f", "evil/.wh.secret", "")],
            "evil/.wh.secret",
        ),
        ("whiteout-of-dotdot", [("d", "a", ""), ("f", "a/.wh..", "")], "a/.wh.."),
        (
            "opaque-through-escaping-symlink",
            [("l", "evil", "../sentinel"), ("f", "evil/.wh..wh..opq", "")],
            "evil/.wh..wh..opq",
        ),
        ("over-long-component", [("f", "a" * 300, "x")], "a" * 300),
        ("over-long-path", [("f", "/".join(["d" * 200] * 21), "x")], "/".join(["d" * 200] * 21)),
        (
            "symlink-loop",
            [("l", "l1", "l2"), ("l", "l2", "l1"), ("f", "l1/x", "x")],
            "l1/x",
        ),
    ]


def _sentinel_state(sentinel: Path) -> dict[str, tuple[int, int, str]]:
    out = {}
    for p in [sentinel, *sorted(sentinel.rglob("*"))]:
        st = os.lstat(p)
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out[str(p)] = (st.st_mode, st.st_mtime_ns, digest)
    return out


CASE_IDS = [c[0] for c in _hostile_cases(Path("/s"))]


@pytest.mark.parametrize("case", CASE_IDS)
@pytest.mark.parametrize("compress", [gzip.compress, lambda b: b], ids=["gzip", "tar"])
def test_hostile_layers_are_rejected(
    tmp_path: Path, case: str, compress: Callable[[bytes], bytes]
) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "secret").write_text("do not touch")
    before = _sentinel_state(sentinel)
    (_, members, entry) = next(c for c in _hostile_cases(sentinel) if c[0] == case)
    blob = compress(hostile_tar(members))
    root = tmp_path / "root"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    with pytest.raises(UnsafeLayerEntry) as err:
        unpack(root, [(digest, io.BytesIO(blob), TAR)])
    assert err.value.layer == digest
    assert err.value.entry == entry
    assert digest in str(err.value) and repr(entry) in str(err.value)
    assert _sentinel_state(sentinel) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root", "sentinel"]


def test_a_safe_layer_after_a_hostile_one_is_not_reached(tmp_path: Path) -> None:
    bad = hostile_tar([("f", "../x", "x")])
    good = layer([TarEntry.file("ok", b"ok")])
    with pytest.raises(UnsafeLayerEntry):
        unpack(tmp_path / "root", [("bad", io.BytesIO(bad), TAR), ("good", good, GZ)])
    assert not (tmp_path / "root/ok").exists()


def test_replacing_an_escaping_symlink_by_a_file_does_not_follow_it(tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "secret").write_text("do not touch")
    blob = hostile_tar([("l", "evil", "../sentinel/secret"), ("f", "evil", "replaced")])
    unpack(tmp_path / "root", [("l", io.BytesIO(blob), TAR)])
    assert (sentinel / "secret").read_text() == "do not touch"
    assert (tmp_path / "root/evil").read_text() == "replaced"


def test_unpacks_what_gnu_tar_writes(tmp_path: Path) -> None:
    tar = shutil.which("tar")
    if tar is None:
        pytest.skip("GNU tar is not installed")
    src = build_tree(tmp_path / "src")
    blob = tmp_path / "gnu.tar.gz"
    # GNU format, "./" prefixes, the root entry itself: what `tar -C dir .` makes
    subprocess.run([tar, "--format=gnu", "-C", str(src), "-czf", str(blob), "."], check=True)
    out = tmp_path / "out"
    unpack(out, [("gnu", blob, mediatypes.DOCKER_LAYER)])
    assert tree_state(out) == tree_state(src)
