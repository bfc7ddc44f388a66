"""Byte-exact tar headers (POSIX.1-2001 pax on top of ustar).

Written by hand rather than with :mod:`tarfile` so that the bytes, hence the
layer digests, do not move with the Python version. Like Go's ``archive/tar``
an extended header is added only when a field does not fit ustar (a long or
non-ASCII name, a large id or size); such an archive is valid pax either way.
"""

from __future__ import annotations

BLOCK = 512
#: Two zero blocks end an archive.
END_OF_ARCHIVE = bytes(2 * BLOCK)
#: Name of the extended header block that precedes an entry (as Python writes it).
PAX_HEADER_NAME = b"././@PaxHeader"

_MAGIC = b"ustar\x0000"
_NAME = 100
_UNAME = 32


def padding(size: int) -> bytes:
    """The zero bytes that round ``size`` up to a whole block."""
    return bytes(-size % BLOCK)


def _octal(value: int, width: int) -> bytes:
    # width-1 octal digits and a NUL, as GNU tar and Go write them.
    return b"%0*o\x00" % (width - 1, value)


def _fits(value: int, width: int) -> bool:
    return 0 <= value < 1 << (3 * (width - 1))


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    # The length prefix counts its own digits.
    n = len(body) + 1
    while len(b"%d" % n) + len(body) != n:
        n += 1
    return b"%d" % n + body


def _ascii(b: bytes) -> bool:
    return b.isascii() and b"\x00" not in b


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _ustar(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    typeflag: bytes,
    linkname: bytes,
    uname: bytes,
    gname: bytes,
    devmajor: int,
    devminor: int,
) -> bytes:
    parts = [
        name.ljust(_NAME, b"\x00"),
        _octal(mode, 8),
        _octal(uid, 8),
        _octal(gid, 8),
        _octal(size, 12),
        _octal(mtime, 12),
        b" " * 8,  # checksum placeholder, summed as spaces
        typeflag,
        linkname.ljust(_NAME, b"\x00"),
        _MAGIC,
        uname.ljust(_UNAME, b"\x00"),
        gname.ljust(_UNAME, b"\x00"),
        _octal(devmajor, 8),
        _octal(devminor, 8),
    ]
    header = b"".join(parts).ljust(BLOCK, b"\x00")
    checksum = b"%06o\x00 " % sum(header)
    return header[:148] + checksum + header[156:]


def header(
    name: bytes,
    *,
    typeflag: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    linkname: bytes = b"",
    uname: bytes = b"",
    gname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
) -> bytes:
    """The header block(s) of one entry: an optional pax extended header, then ustar."""
    records: list[bytes] = []
    if len(name) > _NAME or not _ascii(name):
        records.append(_pax_record(b"path", name))
        name = _placeholder(name)
    if len(linkname) > _NAME or not _ascii(linkname):
        records.append(_pax_record(b"linkpath", linkname))
        linkname = _placeholder(linkname)
    for key, value in ((b"uname", uname), (b"gname", gname)):
        if len(value) > _UNAME or not _ascii(value):
            records.append(_pax_record(key, value))
    if len(uname) > _UNAME or not _ascii(uname):
        uname = b""
    if len(gname) > _UNAME or not _ascii(gname):
        gname = b""
    for key, number, width in (
        (b"uid", uid, 8),
        (b"gid", gid, 8),
        (b"size", size, 12),
        (b"mtime", mtime, 12),
    ):
        if not _fits(number, width):
            records.append(_pax_record(key, b"%d" % number))
    if records and not all(_utf8(r) for r in records):
        # pax says names are UTF-8 unless the archive says otherwise.
        records.insert(0, _pax_record(b"hdrcharset", b"BINARY"))
    out = b""
    if records:
        data = b"".join(records)
        out = (
            _ustar(PAX_HEADER_NAME, 0o644, 0, 0, len(data), 0, b"x", b"", b"", b"", 0, 0)
            + data
            + padding(len(data))
        )
    uid = uid if _fits(uid, 8) else 0
    gid = gid if _fits(gid, 8) else 0
    size = size if _fits(size, 12) else 0
    mtime = mtime if _fits(mtime, 12) else 0
    return out + _ustar(
        name, mode, uid, gid, size, mtime, typeflag, linkname, uname, gname, devmajor, devminor
    )


def _placeholder(value: bytes) -> bytes:
    # What readers without pax support see: an ASCII cut of the real value.
    return (
        value.decode("ascii", "replace")
        .replace("\ufffd", "_")
        .encode("ascii")[:_NAME]
        .replace(b"\x00", b"_")
    )
