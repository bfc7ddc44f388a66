"""The build host's CA certificates, trusted by RUN steps and never kept in a layer.

Machines that build often sit behind a TLS-intercepting proxy: pip, uv, curl
and apt in a RUN must trust the host's CAs. BuildKit's own sandbox sees only
the image's store; here the host's bundle is added for the step's duration:

- the image has a bundle (``/etc/ssl/certs/ca-certificates.crt``, Debian's,
  Alpine's, Ubuntu's): the host's certificates are appended to it between two
  marker lines for the step, and taken out afterwards. The file stays the
  image's and writable: a step that rewrites it (``update-ca-certificates``)
  keeps what it wrote, one that appends keeps its lines, minus the host's.
- the image has none: the host's bundle is mounted read-only at
  :data:`SIDE_BUNDLE`, outside the image's own files.

Either way ``SSL_CERT_FILE``, ``PIP_CERT`` and ``REQUESTS_CA_BUNDLE`` name the
bundle (pip trusts certifi's bundle, not the system's, without them), unless
the image or the step sets them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from manyarch.sandbox.bwrap import Bind, SandboxSpec

#: Where the host keeps its bundle, and where Debian-like images keep theirs.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
#: Where the host's bundle is mounted when the image has none.
SIDE_BUNDLE = "/run/manyarch/host-ca-certificates.crt"
_ENV = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE")
_BEGIN = b"# manyarch: the build host's CA certificates, for this RUN only\n"
_END = b"# manyarch: end of the build host's CA certificates\n"


def host_block(host: Path | None = None) -> bytes | None:
    """The host's certificates between the marker lines, or None without a host bundle."""
    try:
        data = (host or HOST_CA_BUNDLE).read_bytes()
    except OSError:
        return None
    if not data.endswith(b"\n"):
        data += b"\n"
    return _BEGIN + data + _END


def _image_bundle(rootfs: Path) -> Path | None:
    p = rootfs / IMAGE_CA_BUNDLE.lstrip("/")
    # a regular file of the image's own; a symlink could point anywhere
    if p.is_symlink() or not p.is_file():
        return None
    for parent in p.relative_to(rootfs).parents:
        if (rootfs / parent).is_symlink():
            return None
    return p


def _with_env(spec: SandboxSpec, path: str) -> SandboxSpec:
    env = dict(spec.env)
    for k in _ENV:
        env.setdefault(k, path)
    return replace(spec, env=env)


@contextmanager
def trusting_host_cas(
    spec: SandboxSpec, restored: list[Path], host: Path | None = None
) -> Iterator[SandboxSpec]:
    """``spec`` trusting the host's CAs while the block runs; the image's files after it.

    A bundle put back unchanged is added to ``restored`` (its ctime moved,
    which no layer records).
    """
    block = host_block(host)
    if block is None:
        yield spec
        return
    bundle = _image_bundle(spec.rootfs)
    if bundle is None:
        side = replace(spec, binds=[*spec.binds, Bind(host or HOST_CA_BUNDLE, SIDE_BUNDLE)])
        yield _with_env(side, SIDE_BUNDLE)
        return
    original = bundle.read_bytes()
    st = bundle.stat()
    merged = original + (b"" if not original or original.endswith(b"\n") else b"\n") + block
    _rewrite(bundle, merged)
    try:
        yield _with_env(spec, IMAGE_CA_BUNDLE)
    finally:
        _take_out(bundle, original, merged, block, (st.st_atime_ns, st.st_mtime_ns), restored)


def _rewrite(path: Path, data: bytes) -> None:
    # in place: the file keeps its inode, owner and mode
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()


def _take_out(
    bundle: Path,
    original: bytes,
    merged: bytes,
    block: bytes,
    times: tuple[int, int],
    restored: list[Path],
) -> None:
    if bundle.is_symlink() or not bundle.is_file():
        return  # the step replaced it by something else: its own
    now = bundle.read_bytes()
    if now == merged:
        _rewrite(bundle, original)
        os.utime(bundle, ns=times)
        # and its directories, which an overlay copied up to write it (same times, another inode)
        rootfs = bundle.parents[len(Path(IMAGE_CA_BUNDLE).parts) - 2]
        restored += [bundle, *[d for d in bundle.parents if rootfs in d.parents]]
        return
    at = now.find(block)
    if at < 0:
        return  # rewritten by the step (update-ca-certificates): what it wrote stays
    st = bundle.stat()
    _rewrite(bundle, now[:at] + now[at + len(block) :])
    os.utime(bundle, ns=(st.st_atime_ns, st.st_mtime_ns))
