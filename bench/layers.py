"""Layer pipeline throughput on a tree: ours (isal) against stdlib zlib level 6, same tar bytes.

Usage: python bench/layers.py DIR [--repeat N]
Prints MB/s of tar bytes for tar+compress+sha256(tar)+sha256(blob), the ratio, blob sizes,
then the unpack and snapshot/diff timings on the same tree.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

from manyarch.layers import Snapshot, unpack, write_diff_layer, write_layer_from_dir
from manyarch.layers import compress as lc
from manyarch.oci import mediatypes


class Discard(io.RawIOBase):
    """A sink that counts and drops."""

    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.size += len(b)
        return len(b)


class _StdlibGzip:
    """The baseline: stdlib zlib level 6 in the same pipeline (same chunking, same hashing)."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(6, zlib.DEFLATED, 31)

    def compress(self, data: bytes | memoryview) -> bytes:
        return self._z.compress(data)

    def flush(self) -> bytes:
        return self._z.flush()


def run(root: Path, *, baseline: bool) -> tuple[float, int, int]:
    """(seconds, tar bytes, blob bytes) of one layer written from ``root``."""
    saved = lc._COMPRESSORS["gzip"]
    if baseline:
        lc._COMPRESSORS["gzip"] = _StdlibGzip
    try:
        sink = Discard()
        t = time.perf_counter()
        info = write_layer_from_dir(root, sink, epoch=0, uid=0, gid=0)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - t
    finally:
        lc._COMPRESSORS["gzip"] = saved
    tar_size = _tar_size(root)
    assert sink.size == info.size
    return elapsed, tar_size, info.size


_tar_sizes: dict[Path, int] = {}


def _tar_size(root: Path) -> int:
    if root not in _tar_sizes:
        buf = Discard()
        write_layer_from_dir(root, buf, compression=None)  # type: ignore[arg-type]
        _tar_sizes[root] = buf.size
    return _tar_sizes[root]


def best(root: Path, repeat: int, *, baseline: bool) -> tuple[float, int, int]:
    """The fastest of ``repeat`` runs (the others measure the neighbours)."""
    return min((run(root, baseline=baseline) for _ in range(repeat)), key=lambda r: r[0])


def main(argv: list[str]) -> int:
    """Run the benchmark."""
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    root: Path = args.root
    files = sum(len(d) + len(f) for _, d, f in os.walk(root))
    run(root, baseline=False)  # warm the page cache
    ours_t, tar_size, ours_size = best(root, args.repeat, baseline=False)
    base_t, _, base_size = best(root, args.repeat, baseline=True)
    mb = tar_size / 1e6
    print(f"tree: {root} ({files} entries, tar {mb:.1f} MB)")
    print(
        f"ours   isal level {lc.GZIP_LEVEL}: {mb / ours_t:7.1f} MB/s  "
        f"({ours_t:.3f} s, blob {ours_size / 1e6:.1f} MB)"
    )
    print(
        f"stdlib zlib level 6: {mb / base_t:7.1f} MB/s  "
        f"({base_t:.3f} s, blob {base_size / 1e6:.1f} MB)"
    )
    print(f"ratio: {base_t / ours_t:.1f}x faster, blob {ours_size / base_size:.2f}x the size")

    # tmpfs when there is one: measure our code, not the disk's file creation
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        blob = Path(tmp) / "layer.tgz"
        with blob.open("wb") as f:
            info = write_layer_from_dir(root, f)
        t = time.perf_counter()
        out = Path(tmp) / "out"
        unpack(out, [(str(info.digest), blob, mediatypes.OCI_LAYER_GZIP)])
        t_unpack = time.perf_counter() - t
        print(f"unpack into {tmp}: {mb / t_unpack:7.1f} MB/s ({t_unpack:.3f} s)")

        t = time.perf_counter()
        snap = Snapshot.take(out)
        t_take = time.perf_counter() - t
        # a RUN-like change: a few files added, changed, a directory deleted
        (out / "bench-new").mkdir()
        for i in range(50):
            (out / "bench-new" / f"f{i}").write_bytes(os.urandom(10_000))
        victims = sorted(p for p in out.rglob("*") if p.is_dir() and not p.is_symlink())
        if victims:
            shutil.rmtree(victims[len(victims) // 2])
        t = time.perf_counter()
        diff = io.BytesIO()
        write_diff_layer(out, snap, diff)
        t_diff = time.perf_counter() - t
        print(
            f"snapshot: take {t_take:.3f} s, changes+diff layer {t_diff:.3f} s ({len(snap)} paths)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
