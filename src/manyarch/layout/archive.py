"""``oci-archive``: an OCI image layout as one tar (what a build published as an OCI
archive and ``save`` write, and what skopeo's ``oci-archive:`` transport reads);
with ``manifest.json`` added, ``docker save``'s format (:mod:`.dockerarchive`)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, BinaryIO

from manyarch.errors import DigestMismatch, InvalidDigest, InvalidDocument, LayoutError
from manyarch.layout import _fs
from manyarch.layout.blobs import BLOBS_DIR
from manyarch.layout.layout import (
    INDEX_FILE,
    LAYOUT_FILE,
    LAYOUT_VERSION,
    Layout,
)
from manyarch.oci.digest import Digest, Hasher
from manyarch.oci.document import canonical_json
from manyarch.oci.manifest import Index

#: index.json larger than this in an archive is not an index but an attack.
MAX_INDEX_SIZE = 64 << 20


class _HashingReader:
    """Reads a file and hashes what went through, so export never copies a corrupt blob."""

    def __init__(self, f: IO[bytes], algorithm: str) -> None:
        self._f = f
        self.hasher = Hasher(algorithm)

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.hasher.update(data)
        return data


def _info(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.mode = 0o644
        info.size = size
    return info


def _write(layout: Layout, out: IO[bytes], extra: Mapping[str, bytes]) -> None:
    # A shared lock keeps gc from deleting a blob the index snapshot names.
    with layout._lock(shared=True):
        index_bytes = (layout.path / INDEX_FILE).read_bytes()
        layout.index()  # refuse to archive a broken index.json
        blobs = sorted(
            (str(p.relative_to(layout.path)), p, d)
            for p, d in layout._blob_files()
            if d is not None
        )
        entries: list[tuple[str, Path | bytes | None, Digest | None]] = [
            (BLOBS_DIR, None, None),
            *sorted({(str(Path(name).parent), None, None) for name, _, _ in blobs}),
            *((name, p, d) for name, p, d in blobs),
            (INDEX_FILE, index_bytes, None),
            (LAYOUT_FILE, canonical_json({"imageLayoutVersion": LAYOUT_VERSION}), None),
            *((name, data, None) for name, data in extra.items()),
        ]
        entries.sort(key=lambda e: e[0])
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name, content, digest in entries:
                if content is None:
                    tar.addfile(_info(name, directory=True))
                elif isinstance(content, bytes):
                    tar.addfile(_info(name, len(content)), io.BytesIO(content))
                else:
                    assert digest is not None
                    with open(content, "rb") as f:
                        size = os.fstat(f.fileno()).st_size
                        reader = _HashingReader(f, digest.algorithm)
                        tar.addfile(_info(name, size), reader)
                    if reader.hasher.digest() != digest:
                        raise DigestMismatch(
                            str(digest),
                            str(reader.hasher.digest()),
                            f"blob {digest}",
                            hint="the layout is corrupt (run verify); the archive is incomplete",
                        )


def export_tar(
    layout: Layout, dest: Path | BinaryIO, *, extra: Mapping[str, bytes] | None = None
) -> None:
    """Write ``layout`` as a deterministic tar to a path (atomically) or a binary stream.

    ``extra`` files (name -> bytes) go into the tar's root beside ``index.json``.
    """
    extra = dict(extra or {})
    if not isinstance(dest, (str, os.PathLike)):
        _write(layout, dest, extra)
        return
    dest = Path(dest)
    fd, tmp = tempfile.mkstemp(prefix=f"{_fs.TEMP_PREFIX}{dest.name}-", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            _write(layout, out, extra)
            out.flush()
            os.fchmod(out.fileno(), _fs.FILE_MODE)
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fs.fsync_dir(dest.parent)


def _open_tar(src: Path | BinaryIO) -> tarfile.TarFile:
    try:
        if isinstance(src, (str, os.PathLike)):
            return tarfile.open(Path(src), mode="r|*")
        return tarfile.open(fileobj=src, mode="r|*")
    except FileNotFoundError as e:
        raise LayoutError(f"{src} does not exist", "check the archive's path") from e
    except tarfile.TarError as e:
        raise LayoutError(f"{src} is not a tar archive: {e}") from e


def import_tar(layout: Layout, src: Path | BinaryIO) -> None:
    """Store every blob of the archive (verified by its name) and merge its index.json.

    Nothing is extracted to disk by name: entries are streamed into the layout,
    so a hostile path cannot land anywhere. Unknown files (a Docker
    ``manifest.json``) are ignored.
    """
    where = str(src) if isinstance(src, (str, os.PathLike)) else "the archive"
    index_data: bytes | None = None
    marker: bytes | None = None
    try:
        with _open_tar(src) as tar:
            for member in tar:
                name = member.name.removeprefix("./").strip("/")
                parts = name.split("/")
                if member.isdir() or not name:
                    continue
                if ".." in parts:
                    raise LayoutError(f"{where}: entry {member.name!r} leaves the archive root")
                if not member.isfile():
                    raise LayoutError(
                        f"{where}: entry {member.name!r} is not a regular file",
                        "an OCI archive holds only files and directories",
                    )
                f = tar.extractfile(member)
                assert f is not None
                if name == LAYOUT_FILE:
                    marker = f.read(4096)
                elif name == INDEX_FILE:
                    if member.size > MAX_INDEX_SIZE:
                        raise LayoutError(f"{where}: index.json is {member.size} bytes")
                    index_data = f.read()
                elif len(parts) == 3 and parts[0] == BLOBS_DIR:
                    try:
                        digest = Digest(parts[1], parts[2])
                    except InvalidDigest as e:
                        raise LayoutError(f"{where}: {name} is not named by a digest") from e
                    path = layout.blob_path(digest)
                    if path.is_file() and path.stat().st_size == member.size:
                        continue
                    layout.put_stream(f, digest, member.size)
    except tarfile.TarError as e:
        raise LayoutError(f"{where} is a broken tar archive: {e}") from e
    if marker is None:
        raise LayoutError(
            f"{where} is not an OCI archive (no {LAYOUT_FILE})",
            "a Docker `docker save` tarball is not supported; use an OCI archive",
        )
    try:
        version = json.loads(marker).get("imageLayoutVersion")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        version = None
    if not isinstance(version, str) or version.split(".")[0] != "1":
        raise LayoutError(f"{where} has unsupported imageLayoutVersion {version!r}")
    if index_data is None:
        raise LayoutError(f"{where} is an incomplete OCI archive (no {INDEX_FILE})")
    try:
        incoming = Index.parse(index_data)
    except InvalidDocument as e:
        raise LayoutError(f"{where}: index.json is not a valid image index: {e.message}") from e
    missing = [str(d.digest) for d in incoming.manifests if not layout.has_blob(d.digest)]
    if missing:
        raise LayoutError(
            f"{where} is incomplete: index.json names {', '.join(missing)} which it lacks",
            "nothing was tagged; write the archive again",
        )
    layout._merge_index(incoming)


def import_archive(src: Path | BinaryIO, dest: Path) -> Layout:
    """Read an ``oci-archive`` tar into the layout at ``dest`` (made if needed)."""
    layout = Layout.open(dest, create=True)
    with layout.lease():
        import_tar(layout, src)
    return layout
