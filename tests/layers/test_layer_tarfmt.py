"""The hand-written tar headers: whatever we write, tarfile and GNU tar read back the same."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manyarch.layers import tarfmt

_component = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"),
    min_size=1,
    max_size=60,
).filter(lambda s: s not in (".", ".."))
names = st.lists(_component, min_size=1, max_size=6).map("/".join)


def _one_entry(name: bytes, **kw: int | bytes) -> bytes:
    data = b"payload"
    head = tarfmt.header(name, typeflag=b"0", size=len(data), **kw)  # type: ignore[arg-type]
    return head + data + tarfmt.padding(len(data)) + tarfmt.END_OF_ARCHIVE


def _read(tar: bytes) -> tarfile.TarInfo:
    with tarfile.open(fileobj=io.BytesIO(tar), encoding="utf-8", errors="surrogateescape") as tf:
        (member,) = tf.getmembers()
        assert tf.extractfile(member).read() == b"payload"  # type: ignore[union-attr]
        return member


@settings(max_examples=150, deadline=None)
@given(
    name=names,
    link=names,
    mode=st.integers(0, 0o7777),
    uid=st.integers(0, 2**32 - 1),
    gid=st.integers(0, 2**32 - 1),
    mtime=st.integers(0, 8**12),
    uname=st.text(max_size=40).filter(lambda s: "\x00" not in s),
)
def test_tarfile_reads_back_what_we_write(
    name: str, link: str, mode: int, uid: int, gid: int, mtime: int, uname: str
) -> None:
    tar = _one_entry(
        name.encode(),
        mode=mode,
        uid=uid,
        gid=gid,
        mtime=mtime,
        linkname=link.encode(),
        uname=uname.encode(),
    )
    assert len(tar) % tarfmt.BLOCK == 0
    m = _read(tar)
    assert (m.name, m.linkname, m.mode, m.uid, m.gid, m.mtime, m.uname) == (
        name,
        link,
        mode,
        uid,
        gid,
        mtime,
        uname,
    )


def test_ustar_only_when_everything_fits() -> None:
    head = tarfmt.header(b"etc/hostname", typeflag=b"0", mode=0o644, uid=0, gid=0, size=9, mtime=0)
    assert len(head) == tarfmt.BLOCK
    assert head[257:265] == b"ustar\x0000"
    # checksum: the sum of the header bytes with the checksum field as spaces
    assert int(head[148:154], 8) == sum(head[:148]) + 8 * 32 + sum(head[156:])


@pytest.mark.parametrize(
    ("name", "records"),
    [
        (b"x" * 101, [b"path"]),
        ("é".encode(), [b"path"]),
        (b"\xff\xfe-not-utf8", [b"hdrcharset", b"path"]),
    ],
)
def test_pax_records_only_when_needed(name: bytes, records: list[bytes]) -> None:
    head = tarfmt.header(name, typeflag=b"0", mode=0o644, uid=0, gid=0, size=0, mtime=0)
    assert head[156:157] == b"x"
    size = int(head[124:135], 8)
    body = head[512 : 512 + size]
    keys = [line.split(b" ", 1)[1].split(b"=", 1)[0] for line in body.splitlines()]
    assert keys == records
    assert len(head) == 512 + 512 * ((size + 511) // 512) + 512


def test_non_utf8_names_survive_tarfile() -> None:
    m = _read(_one_entry(b"\xff\xfe-raw", mode=0o644, uid=0, gid=0, mtime=0))
    assert m.name.encode("utf-8", "surrogateescape") == b"\xff\xfe-raw"


def test_gnu_tar_lists_long_and_unicode_names(tmp_path: object) -> None:
    tar = shutil.which("tar")
    if tar is None:
        pytest.skip("GNU tar is not installed")
    long_name = ("d" * 90 + "/") * 3 + "f"
    blob = b"".join(
        tarfmt.header(n.encode(), typeflag=b"0", mode=0o644, uid=0, gid=0, size=0, mtime=0)
        for n in (long_name, "café", "short")
    )
    listing = subprocess.run(
        [tar, "-tf", "-"], input=blob + tarfmt.END_OF_ARCHIVE, capture_output=True, check=True
    ).stdout.decode()
    assert listing.splitlines() == [long_name, "café", "short"]


def test_mtime_beyond_the_field_goes_to_pax() -> None:
    m = _read(_one_entry(b"f", mode=0o644, uid=0, gid=0, mtime=8**11 + 5))
    assert m.mtime == 8**11 + 5
