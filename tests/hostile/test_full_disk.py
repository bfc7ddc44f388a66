"""A full disk under the store, the unpacked trees and the work dir: pull, run and build
end in an error a person can act on (never a traceback), and leave no temporary file
that ``manyarch prune`` cannot take away."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.registry_server import RegistryServer
from tests.helpers.tiny_base import TinyBase, tiny_base

__all__ = ["tiny_base"]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs"),
]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs; unmounted at the end."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture
def env(disk: Path) -> dict[str, str]:
    """Store, data home, caches and work dir on the tmpfs."""
    out = dict(os.environ)
    for var, name in [("MANYARCH_STORE", "store"), ("XDG_DATA_HOME", "data"),
                      ("XDG_CACHE_HOME", "cache"), ("MANYARCH_TMPDIR", "work")]:  # fmt: skip
        (disk / name).mkdir()
        out[var] = str(disk / name)
    r = manyarch(out, "images")  # the store and the data home exist before the disk fills
    assert r.returncode == 0, r.stderr
    return out


def fill(directory: Path) -> Path:
    """Write zeros into ``directory`` until its file system is full; the filler's path."""
    path = directory / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    try:
        while True:
            os.write(fd, b"\0" * 512)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return path


def manyarch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "manyarch", *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _disk_full_error(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    assert "error: " in r.stderr and "No space left on device" in r.stderr, r.stderr
    assert "(?)" not in r.stderr, "the error names where the disk is full"
    assert "hint: " in r.stderr and "space" in r.stderr.split("hint: ", 1)[1], r.stderr


def _temporaries(root: Path) -> list[str]:
    """Files a killed or failed command left: anything named as a temporary."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.name.startswith(".") and not p.name.endswith("lock") and p.name != ".manyarch-complete"
    )


@pytest.fixture
def pushed(tiny_base: TinyBase, registry: RegistryServer) -> str:
    ref = f"{registry.host}/fulldisk/tiny:latest"
    r = subprocess.run(
        [sys.executable, "-m", "manyarch", "copy", tiny_base.ref, ref],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return ref


def test_pull_on_a_full_disk(env: dict[str, str], disk: Path, pushed: str) -> None:
    filler = fill(disk)
    _disk_full_error(manyarch(env, "pull", "--platform", "linux/amd64", pushed))
    filler.unlink()
    r = manyarch(env, "prune", "-f")
    assert r.returncode == 0, r.stderr
    assert _temporaries(disk) == []
    r = manyarch(env, "pull", "--platform", "linux/amd64", pushed)
    assert r.returncode == 0, r.stderr


def test_run_on_a_full_disk(env: dict[str, str], disk: Path, pushed: str) -> None:
    r = manyarch(env, "pull", "--platform", "linux/amd64", pushed)
    assert r.returncode == 0, r.stderr
    fill(disk)
    _disk_full_error(manyarch(env, "run", "--rm", "--platform", "linux/amd64", pushed, "true"))


def test_build_on_a_full_disk(
    env: dict[str, str], disk: Path, tiny_base: TinyBase, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {tiny_base.ref}\nRUN echo hello > /greeting\n")
    fill(disk)
    _disk_full_error(manyarch(env, "build", "--platform", "linux/amd64", str(ctx)))
