"""Unpacked image trees and the store are not reachable by other host users.

An image's setuid files and device nodes, once unpacked, would be usable by any
host user who can reach them (containerd's CVE-2021-41103): the roots are 0700.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from manyarch import rootfs
from manyarch.oci import Manifest
from manyarch.run.mounts import prepare_volume
from manyarch.store import data_home, open_store
from tests.layout.layout_image import write_image


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty data home under the usual umask, as a first run finds it."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("MANYARCH_STORE", raising=False)
    old = os.umask(0o022)
    try:
        yield data_home()
    finally:
        os.umask(old)


def test_store_and_data_home_are_private(data: Path) -> None:
    open_store()
    assert _mode(data) == 0o700
    assert _mode(data / "store") == 0o700


def test_a_data_home_made_by_an_older_version_is_closed(data: Path) -> None:
    (data / "store").mkdir(parents=True)
    os.chmod(data, 0o755)
    os.chmod(data / "store", 0o755)
    open_store()
    assert (_mode(data), _mode(data / "store")) == (0o700, 0o700)


def test_unpacked_trees_are_private(data: Path, tmp_path: Path) -> None:
    store = open_store()
    image = write_image(store, tmp_path)
    desc = image.platforms["amd64"].manifest
    tree = rootfs.unpacked(store, desc.digest, Manifest.parse(store.read_document(desc)))
    assert (tree / "etc" / "hello.txt").exists()
    assert _mode(rootfs.cache_dir()) == 0o700 and _mode(data) == 0o700


def test_volumes_are_private(data: Path, tmp_path: Path) -> None:
    image_root = tmp_path / "image"
    (image_root / "data").mkdir(parents=True)
    path = prepare_volume("v1", image_root, "/data")
    assert path.is_dir()
    assert _mode(data / "volumes") == 0o700 and _mode(data) == 0o700
