"""Blobs of a layout on disk: where one lives, and how one is written (a temp file,
hashed as it is written, that becomes ``blobs/<alg>/<hex>`` only once verified)."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from manyarch.errors import DigestMismatch, DiskFull, LayoutError, ManyarchError
from manyarch.layout import _fs
from manyarch.oci.digest import Digest, Hasher

BLOBS_DIR = "blobs"
CHUNK = 1 << 20


def blob_path(root: Path, digest: Digest) -> Path:
    """``ROOT/blobs/<alg>/<hex>``."""
    return root / BLOBS_DIR / digest.algorithm / digest.hex


def size_mismatch(what: str, expected: int, actual: int) -> DigestMismatch:
    """A :class:`DigestMismatch` about a length rather than a hash."""
    return DigestMismatch(
        f"{expected} bytes",
        f"{actual} bytes",
        what,
        message=f"{what} is {actual} bytes, expected {expected}",
    )


def unreadable(layout: Path, e: OSError) -> ManyarchError:
    """The error for a layout that could not be read (or written: a full disk)."""
    where = e.filename or layout
    full = DiskFull.of(e, f"cannot write the OCI image layout {layout}", where)
    if full is not None:
        return full
    return LayoutError(
        f"cannot read the OCI image layout {layout}: {e.strerror or e} ({where})",
        "check the path and its permissions",
    )


class BlobWriter:
    """A temp file in the layout that becomes a blob on :meth:`commit`.

    Hashes while written; file-like enough for ``shutil.copyfileobj``,
    ``gzip.GzipFile(fileobj=...)`` and ``tarfile.open(fileobj=..., mode="w|")``.
    """

    def __init__(
        self, root: Path, algorithm: str = "sha256", *, verified_elsewhere: bool = False
    ) -> None:
        self._root = root
        self._hasher = Hasher(algorithm)
        # the writer of a stream that its producer already verifies (the registry
        # client's fetch_blob raises before commit on a mismatch) need not hash it twice
        self._hashing = not verified_elsewhere
        self._written = 0
        directory = root / BLOBS_DIR / algorithm
        directory.mkdir(parents=True, exist_ok=True)
        self._fd, self.temp_path = _fs.create_locked_temp(directory)
        self.closed = False
        self.committed: tuple[Digest, int] | None = None

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._written

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append bytes; returns how many."""
        if self.closed:
            raise ValueError("write to a closed BlobWriter")
        try:
            _fs.write_all(self._fd, data)
        except OSError as e:
            full = DiskFull.of(e, "cannot store a blob", self._root)
            if full is not None:
                raise full from e
            raise
        if self._hashing:
            self._hasher.update(data)
        self._written += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered; present for file-like callers."""

    def tell(self) -> int:
        """Bytes written so far (for callers that ask a file its position)."""
        return self.size

    def writable(self) -> bool:
        """Always true while open."""
        return not self.closed

    def seekable(self) -> bool:
        """Rewinding to the start is possible (see :meth:`seek`)."""
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Stay where we are, or rewind to the start, which discards what was written.

        A blob writer only appends; a download that must start over (the
        server ignored a ``Range``) rewinds it.
        """
        if whence == os.SEEK_SET and offset == self.size:
            return offset
        if whence != os.SEEK_SET or offset != 0:
            raise io.UnsupportedOperation("a BlobWriter only rewinds to its start")
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self._hasher = Hasher(self._hasher.algorithm)
        self._written = 0
        return 0

    def truncate(self, size: int | None = None) -> int:
        """Only at the current end (a rewind already truncated)."""
        if size not in (None, self.size):
            raise io.UnsupportedOperation("a BlobWriter only truncates at its end")
        return self.size

    def commit(self, expected: Digest | None = None, size: int | None = None) -> tuple[Digest, int]:
        """Verify against ``expected``/``size``, then move under the final name.

        On a mismatch the temp file is discarded, nothing is stored and
        :class:`DigestMismatch` is raised.
        """
        if self.committed is not None:
            return self.committed
        if self.closed:
            raise ValueError("commit of a discarded BlobWriter")
        try:
            if not self._hashing:
                if expected is None or size is None:
                    raise ValueError("a writer verified elsewhere commits a known digest and size")
                if size != self.size:
                    raise size_mismatch(f"blob {expected}", size, self.size)
                actual = expected
            else:
                actual = self._hasher.digest()
            if expected is not None and expected.algorithm != actual.algorithm:
                actual = hash_file(self.temp_path, expected.algorithm)
            if size is not None and size != self.size:
                raise size_mismatch(f"blob {expected or actual}", size, self.size)
            if expected is not None and actual != expected:
                raise DigestMismatch(str(expected), str(actual), "blob")
            os.fchmod(self._fd, _fs.FILE_MODE)
            os.fsync(self._fd)
            final = blob_path(self._root, actual)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.temp_path, final)
            _fs.fsync_dir(final.parent)
        except BaseException:
            self.discard()
            raise
        self._close()
        self.committed = (actual, self.size)
        return self.committed

    def discard(self) -> None:
        """Drop the temp file (no-op after commit)."""
        if self.closed:
            return
        self._close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_path)

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._fd)


def hash_file(path: Path, algorithm: str = "sha256") -> Digest:
    """The digest of a file's bytes."""
    h = Hasher(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.digest()


def chunks_of(source: Iterable[bytes] | BinaryIO) -> Iterator[bytes]:
    """Bytes in pieces, from a file or an iterable of them."""
    read = getattr(source, "read", None)
    if read is None:
        yield from source
        return
    while chunk := read(CHUNK):
        yield chunk
