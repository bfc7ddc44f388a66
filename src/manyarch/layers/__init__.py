"""Layers: the deterministic tar writer, safe unpacking, and filesystem diffs.

write_layer / write_layer_from_dir   entries or a tree -> one blob, LayerInfo
unpack                               a stack of blobs -> a rootfs, nothing outside it
Snapshot / write_diff_layer          what a step changed -> a layer with whiteouts
recompress                           a blob in another compression, the same tar
tarscan.scan / tarscan.Spans         a tar's members and their bytes; only some of them
"""

from manyarch.layers.compress import GZIP_LEVEL, ZSTD_LEVEL, open_decompressed, recompress
from manyarch.layers.entry import OPAQUE_MARKER, WHITEOUT_PREFIX, EntryType, TarEntry
from manyarch.layers.snapshot import Changes, FileState, Snapshot, write_diff_layer
from manyarch.layers.unpack import LayerSource, unpack
from manyarch.layers.writer import (
    LayerInfo,
    entries_from_dir,
    entries_from_paths,
    write_layer,
    write_layer_from_dir,
)

__all__ = [
    "GZIP_LEVEL",
    "OPAQUE_MARKER",
    "WHITEOUT_PREFIX",
    "ZSTD_LEVEL",
    "Changes",
    "EntryType",
    "FileState",
    "LayerInfo",
    "LayerSource",
    "Snapshot",
    "TarEntry",
    "entries_from_dir",
    "entries_from_paths",
    "open_decompressed",
    "recompress",
    "unpack",
    "write_diff_layer",
    "write_layer",
    "write_layer_from_dir",
]
