"""Unpacked image trees: what ``manyarch prune --all`` may remove, and what it keeps."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from manyarch import rootfs
from manyarch.oci.digest import Digest


def _tree(name: bytes) -> Digest:
    digest = Digest.of(name)
    path = rootfs.cached_path(digest)
    (path / "etc").mkdir(parents=True)
    (path / rootfs.COMPLETE).touch()
    return digest


def test_prune_keeps_what_is_used_or_mounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    kept, lower, gone = _tree(b"tagged"), _tree(b"lower"), _tree(b"unused")
    upper, work, merged = (tmp_path / n for n in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        d.mkdir()
    opts = f"lowerdir={rootfs.cached_path(lower)},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
    try:
        assert rootfs.cached_path(lower) in rootfs.mounted_lowers()
        assert rootfs.prune_unused({str(kept)}) == [gone]
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    assert set(rootfs.cached_digests()) == {kept, lower}
    assert rootfs.prune_unused(set()) == sorted([kept, lower])
