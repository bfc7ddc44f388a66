"""tarscan: the members tarfile lists, field for field, and the bytes that are each one's."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manyarch.layers.tarscan import Member, ScanUnsupported, Spans, scan


def _listed(data: bytes) -> list[tuple[object, ...]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tf:
        return [
            (m.name, m.type, m.mode, m.uid, m.gid, m.mtime, m.size, m.linkname,
             dict(m.pax_headers), m.offset)
            for m in tf
        ]  # fmt: skip


def _scanned(data: bytes) -> list[tuple[object, ...]]:
    return [
        (m.name, m.type, m.mode, m.uid, m.gid, m.mtime, m.size, m.linkname, dict(m.pax), m.start)
        for m in scan(io.BytesIO(data))
    ]


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = 1_700_000_000
    for k, v in kw.items():
        setattr(info, k, v)
    return info


def _members() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    long = "usr/lib/python3.11/site-packages/" + "a" * 90 + "/" + "b" * 80 + ".py"
    return [
        (_info("usr", tarfile.DIRTYPE, mode=0o755), None),
        (_info("usr/bin", tarfile.DIRTYPE, mode=0o700, uid=5, gid=7), None),
        (_info("usr/bin/empty", size=0), b""),
        (_info("usr/bin/one", size=1, mode=0o4755), b"x"),
        (_info("usr/bin/block", size=513), b"y" * 513),
        (_info("usr/bin/big", size=70_000), bytes(range(256)) * 273 + b"z" * 112),
        (_info("usr/bin/sym", tarfile.SYMTYPE, linkname="one"), None),
        (_info("usr/bin/hard", tarfile.LNKTYPE, linkname="usr/bin/one"), None),
        (_info("usr/bin/fifo", tarfile.FIFOTYPE), None),
        (_info(long, size=3), b"abc"),
        (_info("usr/" + "c" * 120, tarfile.SYMTYPE, linkname="d" * 150), None),
        (_info("usr/é/ünïcode.txt", size=2), b"hi"),
        (_info("usr/bin/.wh.gone", size=0), b""),
        (_info("usr/big-ids", size=0, uid=3_000_000, gid=2_100_000), b""),
    ]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_scan_lists_what_tarfile_lists(fmt: int) -> None:
    members = _members()
    if fmt == tarfile.USTAR_FORMAT:  # no long link names, no large ids in ustar
        members = [(i, d) for i, d in members if len(i.linkname) < 100 and i.uid < 2_000_000]
    data = _tar(members, fmt)
    assert _scanned(data) == _listed(data)


def test_scan_reads_pax_xattrs_and_mtime() -> None:
    info = _info("etc/ping", size=1)
    info.pax_headers = {"SCHILY.xattr.security.capability": "\x01\x00", "mtime": "12.5"}
    data = _tar([(info, b"p")], tarfile.PAX_FORMAT)
    (m,) = scan(io.BytesIO(data))
    assert m.pax["SCHILY.xattr.security.capability"] == "\x01\x00"
    assert m.mtime == 12.5
    assert _scanned(data) == _listed(data)


def test_a_v7_directory_is_a_directory() -> None:
    info = _info("old/", tarfile.AREGTYPE)
    data = _tar([(info, b"")], tarfile.USTAR_FORMAT)
    (m,) = scan(io.BytesIO(data))
    assert (m.name, m.isdir()) == ("old", True)
    assert _scanned(data) == _listed(data)


def test_the_end_is_where_tarfile_ends() -> None:
    data = _tar([(_info("a", size=1), b"a"), (_info("b", size=1), b"b")], tarfile.USTAR_FORMAT)
    garbage = data[:1024] + b"not a header".ljust(512, b"!") + data[1024:]
    assert [m.name for m in scan(io.BytesIO(garbage))] == ["a"]
    assert _scanned(garbage) == _listed(garbage)


@pytest.mark.parametrize(
    "case",
    ["empty", "global pax", "sparse", "truncated", "first block bad"],
)
def test_what_tarfile_is_left_to(case: str) -> None:
    if case == "empty":
        data = b""
    elif case == "global pax":
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                          pax_headers={"comment": "x"}) as tf:  # fmt: skip
            tf.addfile(_info("a", size=1), io.BytesIO(b"a"))
        data = buf.getvalue()
    elif case == "sparse":
        data = _tar([(_info("s", tarfile.GNUTYPE_SPARSE, size=0), b"")], tarfile.GNU_FORMAT)
    elif case == "truncated":
        data = _tar([(_info("a", size=5000), b"a" * 5000)], tarfile.USTAR_FORMAT)[:2048]
    else:
        data = b"\x01" * 1024
    with pytest.raises(ScanUnsupported):
        list(scan(io.BytesIO(data)))


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_spans_hand_over_only_the_members_asked(fmt: int) -> None:
    data = _tar(_members(), fmt)
    members: list[Member] = list(scan(io.BytesIO(data)))
    kept = [m for m in members if m.name.endswith(("one", "big", ".py", "hard", "bin"))]
    spans = [(m.start, m.end) for m in kept]
    part = Spans(io.BytesIO(data), spans)
    with tarfile.open(fileobj=part, mode="r|") as tf:
        got = []
        for m in tf:
            f = tf.extractfile(m) if m.isreg() else None
            got.append((m.name, m.linkname, f.read() if f is not None else None))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as whole:
        want = []
        for m in whole.getmembers():
            if m.name in {k.name for k in kept}:
                f = whole.extractfile(m) if m.isreg() else None
                want.append((m.name, m.linkname, f.read() if f is not None else None))
    assert got == want and len(got) == len(kept)


def test_spans_of_nothing_is_an_empty_tar() -> None:
    data = _tar(_members(), tarfile.PAX_FORMAT)
    assert Spans(io.BytesIO(data), []).read() == bytes(1024)


_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00/"), min_size=1, max_size=120
)


@settings(max_examples=60, deadline=None)
@given(
    entries=st.lists(
        st.tuples(
            st.lists(_names, min_size=1, max_size=3).map("/".join),
            st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE]),
            st.binary(max_size=1500),
            st.integers(0, 2**21 - 1),
        ),
        max_size=8,
    ),
    fmt=st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]),
)
def test_scan_agrees_with_tarfile_on_any_archive(
    entries: list[tuple[str, bytes, bytes, int]], fmt: int
) -> None:
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for name, kind, data, uid in entries:
        info = _info(name, kind, uid=uid)
        if kind == tarfile.REGTYPE:
            info.size = len(data)
            members.append((info, data))
        else:
            info.linkname = name[::-1] if kind == tarfile.SYMTYPE else ""
            members.append((info, None))
    data = _tar(members, fmt)
    assert _scanned(data) == _listed(data)


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_grabbed_members_come_with_their_bytes(fmt: int) -> None:
    data = _tar(_members(), fmt)
    members = list(scan(io.BytesIO(data), grab=lambda m: "bin" in m.name or "aaaa" in m.name))
    grabbed = [m for m in members if m.raw is not None]
    assert len(grabbed) > 5 and any(m.pax or len(m.name) > 100 for m in grabbed)
    for m in members:
        assert m.raw is None or m.raw == data[m.start : m.end]
    assert [m.name for m in members] == [m.name for m in scan(io.BytesIO(data))]
