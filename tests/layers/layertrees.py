"""Helpers for the layer tests: a fixed tree, and the comparable state of a tree."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

#: Names the golden tree contains beyond the plain ones.
LONG_NAME = "long-" + "n" * 150 + ".txt"
UNICODE_NAME = "café-ünïcode.txt"

TreeState = dict[str, tuple[object, ...]]


def _pseudo_random(n: int, seed: bytes) -> bytes:
    out = bytearray()
    block = seed
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def build_tree(root: Path, *, mtime: int = 1_600_000_000, umask: int = 0o022) -> Path:
    """A fixed tree with every kind of entry a layer carries; modes are set explicitly."""
    old = os.umask(umask)
    try:
        root.mkdir(parents=True, exist_ok=True)
        files: dict[str, tuple[bytes, int]] = {
            "etc/hostname": (b"manyarch\n", 0o644),
            "etc/shadow": (b"root:*:19000:0:99999:7:::\n", 0o640),
            "usr/bin/tool": (b"#!/bin/sh\necho tool\n", 0o755),
            "usr/bin/suid": (b"\x7fELF fake", 0o4755),
            "usr/share/data.bin": (_pseudo_random(300_000, b"manyarch"), 0o644),
            "usr/share/zeros": (bytes(2_500_000), 0o644),
            f"usr/share/{LONG_NAME}": (b"long name\n", 0o644),
            f"usr/share/{UNICODE_NAME}": (b"unicode\n", 0o644),
            "empty": (b"", 0o600),
        }
        dirs = {
            "etc": 0o755,
            "usr": 0o755,
            "usr/bin": 0o755,
            "usr/share": 0o755,
            "tmp": 0o1777,
            "var": 0o755,
            "var/empty": 0o700,
        }
        for d in sorted(dirs):
            (root / d).mkdir(exist_ok=True)
        for name, (data, mode) in files.items():
            p = root / name
            p.write_bytes(data)
            p.chmod(mode)
        os.link(root / "usr/bin/tool", root / "usr/bin/tool-hardlink")
        os.symlink("tool", root / "usr/bin/tool-symlink")
        os.symlink("/etc/hostname", root / "etc/abs-symlink")
        os.symlink("../usr/share", root / "var/share")
        os.symlink("dangling-target", root / "var/dangling")
        for d, mode in dirs.items():
            (root / d).chmod(mode)
        for dirpath, dirnames, filenames in os.walk(root):
            for n in dirnames + filenames:
                os.utime(os.path.join(dirpath, n), (mtime, mtime), follow_symlinks=False)
        os.utime(root, (mtime, mtime))
        return root
    finally:
        os.umask(old)


def tree_state(root: Path, *, owners: bool = True, times: bool = True) -> TreeState:
    """Everything that a round trip must keep: types, modes, content, links, hard link groups."""
    out: TreeState = {}
    inode_first: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            content: object = None
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            link_group = None
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                link_group = inode_first.setdefault(st.st_ino, rel)
            out[rel] = (
                kind,
                stat.S_IMODE(st.st_mode) if not stat.S_ISLNK(st.st_mode) else None,
                content,
                link_group,
                (st.st_uid, st.st_gid) if owners else None,
                int(st.st_mtime) if times else None,
            )
    return out
