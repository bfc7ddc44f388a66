"""Compression of layer blobs, and the one-pass tar → compress → hash pipeline.

The compressed bytes are part of a layer's digest, so everything that shapes
them is pinned here: the library (python-isal, version range pinned in
pyproject.toml), the level, the gzip header, and the size of the pieces fed
to the compressor (a stateful deflater may cut blocks where its input was
cut, so input is always fed in :data:`CHUNK`-byte pieces whatever the files).
"""

from __future__ import annotations

import io
import queue
import struct
import threading
from collections.abc import Callable
from typing import BinaryIO, Protocol

from isal import isal_zlib

from manyarch.errors import LayerError
from manyarch.oci.digest import Digest, Hasher

#: isal level 1 (of 0-3): ~500 MB/s on one core, ratio close to zlib level 6 on trees of files.
GZIP_LEVEL = 1
#: isal memLevel; it sizes isal's level buffer, which can change the output.
GZIP_MEM_LEVEL = 8
#: zstd level (the zstd CLI default), single-threaded.
ZSTD_LEVEL = 3
#: Size of the pieces of tar stream fed to the compressor.
CHUNK = 1 << 20
#: gzip member header: deflate, no flags, mtime 0, XFL 0, OS 255 ("unknown", as Go writes).
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _Compressor(Protocol):
    def compress(self, data: bytes | memoryview) -> bytes: ...

    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes | memoryview) -> bytes:
        return bytes(data)

    def flush(self) -> bytes:
        return b""


class _Gzip:
    """A single gzip member with a fixed header, around isal raw deflate."""

    def __init__(self) -> None:
        self._deflate = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, -15, GZIP_MEM_LEVEL)
        self._crc = 0
        self._size = 0
        self._started = False

    def compress(self, data: bytes | memoryview) -> bytes:
        self._crc = isal_zlib.crc32(data, self._crc)
        self._size += len(data)
        out: bytes = self._deflate.compress(data)
        if not self._started:
            self._started = True
            return GZIP_HEADER + out
        return out

    def flush(self) -> bytes:
        head = b"" if self._started else GZIP_HEADER
        self._started = True
        tail: bytes = self._deflate.flush()
        return head + tail + struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)


def _zstd() -> _Compressor:
    try:
        import zstandard
    except ImportError as e:  # pragma: no cover - zstandard is a dependency
        raise LayerError("zstd layers need the zstandard package", "pip install zstandard") from e
    c: _Compressor = zstandard.ZstdCompressor(
        level=ZSTD_LEVEL, threads=0, write_checksum=True
    ).compressobj()
    return c


_COMPRESSORS: dict[str | None, Callable[[], _Compressor]] = {
    None: _Identity,
    "gzip": _Gzip,
    "zstd": _zstd,
}


def compressor(compression: str | None) -> _Compressor:
    """A fresh compressor for ``"gzip"``, ``"zstd"`` or ``None`` (plain tar)."""
    try:
        return _COMPRESSORS[compression]()
    except KeyError as e:
        raise LayerError(
            f"unknown layer compression {compression!r}", "use gzip, zstd or none"
        ) from e


class LayerSink:
    """Takes the tar stream; hashes it, compresses it, hashes and writes the blob, in one pass.

    Compression runs in a second thread (isal releases the GIL), fed the same
    :data:`CHUNK`-byte pieces in the same order, so the bytes are those of one
    thread, sooner: the tar is read and hashed, and the compressed pieces
    hashed and written, in the caller's thread while the next piece is
    compressed. A sink must end with :meth:`close` or, on failure, :meth:`abort`.
    """

    def __init__(self, dest: BinaryIO, compression: str | None) -> None:
        self._dest = dest
        self._compressor = compressor(compression)
        self.diff = Hasher()
        self.blob = Hasher()
        self._buf = bytearray()
        self._error: BaseException | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED)
        #: compressed pieces, then None once the thread is done (unbounded: smaller than the input)
        self._done: queue.Queue[bytes | None] = queue.Queue()
        self._finished = False
        self._thread: threading.Thread | None = None
        if compression is not None:
            self._thread = threading.Thread(target=self._work, name="layer-compress", daemon=True)
            self._thread.start()

    def write(self, data: bytes | memoryview) -> None:
        """Append tar bytes."""
        buf = self._buf
        if not buf and len(data) >= CHUNK:
            view = memoryview(data)
            whole = len(view) - len(view) % CHUNK
            for i in range(0, whole, CHUNK):
                self._process(view[i : i + CHUNK])
            buf += view[whole:]
            return
        buf += data
        if len(buf) >= CHUNK:
            view = memoryview(buf)
            whole = len(view) - len(view) % CHUNK
            for i in range(0, whole, CHUNK):
                self._process(view[i : i + CHUNK])
            view.release()
            del buf[:whole]

    def _process(self, piece: memoryview | bytes) -> None:
        self.diff.update(piece)
        if self._thread is None:
            self._emit(piece)
            return
        if self._error is not None:
            raise self._error
        self._queue.put(bytes(piece))  # a copy: the caller's buffer moves on
        self._drain(block=False)

    def _drain(self, *, block: bool, emit: bool = True) -> None:
        # hash and write, in this thread and in order, what has been compressed
        while not self._finished:
            try:
                out = self._done.get(block=block)
            except queue.Empty:
                return
            if out is None:
                self._finished = True
            elif emit:
                self._emit(out)

    def _work(self) -> None:
        try:
            while (piece := self._queue.get()) is not None:
                self._done.put(self._compressor.compress(piece))
            self._done.put(self._compressor.flush())
        except BaseException as e:  # handed to the writing thread
            self._error = e
            while self._queue.get() is not None:  # never leave the writer blocked
                pass
        finally:
            self._done.put(None)

    def _emit(self, out: bytes | memoryview) -> None:
        if out:
            self.blob.update(out)
            self._dest.write(out)

    def close(self) -> tuple[Digest, int, Digest]:
        """Finish the blob; returns (digest, size, diff_id)."""
        if self._buf:
            self._process(bytes(self._buf))
            self._buf.clear()
        self._stop()
        if self._error is not None:
            raise self._error
        return self.blob.digest(), self.blob.size, self.diff.digest()

    def abort(self) -> None:
        """Stop the compressing thread after a failure, writing nothing more."""
        self._stop(emit=False)

    def _stop(self, *, emit: bool = True) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._drain(block=True, emit=emit)
            self._thread.join()
            self._thread = None


#: Pieces waiting for the compressing thread (bounds the memory to a few MiB).
_QUEUED = 4


def sniff(head: bytes) -> str | None:
    """``"gzip"``, ``"zstd"`` or ``None`` from the first bytes of a blob."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


class _Prefixed(io.RawIOBase):
    """A stream that yields ``head`` and then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(b))
        b[: len(data)] = data
        return len(data)


def open_decompressed(stream: BinaryIO) -> BinaryIO:
    """The uncompressed tar stream of a layer blob, whatever its compression (sniffed)."""
    head = stream.read(4)
    raw: BinaryIO = io.BufferedReader(_Prefixed(head, stream), CHUNK)
    kind = sniff(head)
    if kind == "gzip":
        from isal import igzip

        gz: BinaryIO = igzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[no-untyped-call,assignment]
        return gz
    if kind == "zstd":
        import zstandard

        reader: BinaryIO = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return reader
    return raw
