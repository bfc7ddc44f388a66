"""Compare two builds' layers file by file: what a native install lands against the emulated one.

Every entry: type, mode, owner, link target, and the bytes of regular files;
a pyc: its header (flags, source hash) and its code object, recursively with
``co_filename`` (marshal's reference flags depend on the compiling process's
refcounts, so the bytes may differ while the code is the same).
"""

from __future__ import annotations

import gzip
import io
import marshal
import re
import tarfile
import types
from collections.abc import Callable

from tests.imagebuild.build_helpers import Built

Entries = dict[str, tuple[tarfile.TarInfo, bytes | None]]


def layer_entries(built: Built, platform: str, index: int) -> Entries:
    """Layer ``index`` of ``platform``'s manifest: name -> (header, bytes of a file)."""
    desc = built.manifest(platform).layers[index]
    data = gzip.decompress(built.store.read_blob(desc.digest))
    out: Entries = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isfile() else None
            out[m.name.rstrip("/")] = (m, f.read() if f is not None else None)
    return out


def _filenames(code: types.CodeType) -> list[str]:
    out = [code.co_filename]
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out += _filenames(c)
    return out


def pyc_difference(
    a: bytes, b: bytes, filename: Callable[[str], str] = str, *, any_mtime: bool = False
) -> str | None:
    """Why two pycs differ as Python sees them, or None (``filename`` maps b's co_filename).

    ``any_mtime``: two timestamp pycs (PEP 552 flags 0) may name different
    source mtimes (an import wrote them, at the time its run wrote the source).
    """
    timestamps = any_mtime and a[4:8] == b[4:8] == bytes(4)
    if (a[:8] + a[12:16] if timestamps else a[:16]) != (b[:8] + b[12:16] if timestamps else b[:16]):
        return "header"
    ca, cb = marshal.loads(a[16:]), marshal.loads(b[16:])
    if ca != cb:
        return "code"
    if _filenames(ca) != [filename(f) for f in _filenames(cb)]:
        return "co_filename"
    return None


_UV_LOCK = re.compile(r"^tmp/uv-[0-9a-f]{16}\.lock$")


def layer_differences(
    native: Entries,
    emulated: Entries,
    *,
    pyc_filename: Callable[[str], str] = str,
    pyc_any_mtime: bool = False,
) -> list[str]:
    """Every way ``native`` differs from ``emulated`` (empty: equal for Python and the image)."""
    e = dict(emulated)
    # an emulated RUN's mount points (/etc/resolv.conf, the CA bundle) are removed after
    # it, but /etc's mtime changed: a bare `etc` entry in its layer only
    if "etc" in e and e["etc"][0].isdir() and not any(k.startswith("etc/") for k in e):
        del e["etc"]
    # uv leaves its lock in $TMPDIR: the emulated RUN's is the image's /tmp, which BuildKit
    # keeps (nothing is mounted there); the host's uv leaves it in the host's
    for k in [k for k in e if _UV_LOCK.match(k)]:
        del e[k]
    if "tmp" in e and e["tmp"][0].isdir() and not any(k.startswith("tmp/") for k in e):
        del e["tmp"]
    diffs = [f"only native: {k}" for k in sorted(native.keys() - e.keys())]
    diffs += [f"only emulated: {k}" for k in sorted(e.keys() - native.keys())]
    for name in sorted(native.keys() & e.keys()):
        (n, nb), (m, mb) = native[name], e[name]
        if (n.type, n.mode, n.uid, n.gid) != (m.type, m.mode, m.uid, m.gid):
            diffs.append(f"{name}: {(n.type, oct(n.mode), n.uid, n.gid)} vs emulated "
                         f"{(m.type, oct(m.mode), m.uid, m.gid)}")  # fmt: skip
        elif m.issym() and n.linkname != m.linkname:
            diffs.append(f"{name}: link {n.linkname} vs emulated {m.linkname}")
        elif nb != mb and nb is not None and mb is not None:
            if name.endswith(".pyc"):
                why = pyc_difference(nb, mb, pyc_filename, any_mtime=pyc_any_mtime)
                if why:
                    diffs.append(f"{name}: pyc {why} differs")
            else:
                diffs.append(f"{name}: contents differ")
    return diffs


def assert_last_layers_equal(
    native: Built,
    emulated: Built,
    count: int,
    *,
    platform: str = "linux/arm64",
    pyc_filename: Callable[[str], str] = str,
    pyc_any_mtime: bool = False,
) -> None:
    """The last ``count`` layers of both builds are equal, layer by layer (see above)."""
    n_layers = len(emulated.manifest(platform).layers)
    assert len(native.manifest(platform).layers) == n_layers
    for i in range(n_layers - count, n_layers):
        diffs = layer_differences(
            layer_entries(native, platform, i),
            layer_entries(emulated, platform, i),
            pyc_filename=pyc_filename,
            pyc_any_mtime=pyc_any_mtime,
        )
        assert diffs == [], (i, diffs)
