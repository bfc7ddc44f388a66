"""Scratch directories: each names its build; a killed build's are swept (unmounted, deleted)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manyarch import procs
from manyarch.imagebuild.workdirs import OWNER, PREFIX, build_dir, sweep
from manyarch.rootfs import mounts_under
from tests.helpers.cli import manyarch
from tests.helpers.isolation import isolated_build
from tests.helpers.tiny_base import TinyBase, tiny_base
from tests.imagebuild.build_helpers import make_context

__all__ = ["isolated_build", "tiny_base"]


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _owned(base: Path, name: str, pid: int, start: str) -> Path:
    d = base / f"{PREFIX}{name}"
    (d / "stage0").mkdir(parents=True)
    (d / OWNER).write_text(f"{pid} {start}\n")
    return d


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs")
def test_sweep_takes_only_dead_builds(tmp_path: Path) -> None:
    me = _owned(tmp_path, "alive", os.getpid(), procs.start_time(os.getpid()))
    dead = _owned(tmp_path, "dead", _dead_pid(), "12345")
    # the pid is alive but is another process than the one that made the directory
    reused = _owned(tmp_path, "reused", os.getpid(), "1")
    starting = tmp_path / f"{PREFIX}starting"
    starting.mkdir()  # no owner yet: a build between mkdtemp and writing it
    other = tmp_path / "not-a-build"
    other.mkdir()
    mount = dead / "stage0" / "rootfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mount)], check=True)
    (mount / "f").write_text("x")
    try:
        assert mounts_under(dead) == [mount]
        assert sweep(tmp_path) == [dead, reused]
        assert mounts_under(tmp_path) == []
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [me.name, starting.name, other.name]
        )
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_scratch_names_its_owner_and_leaves_nothing(isolated_build: Path) -> None:
    with build_dir() as d:
        pid, start = (d / OWNER).read_text().split()
        assert procs.alive(int(pid), start) and d.parent == isolated_build
    assert list(isolated_build.iterdir()) == []


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="overlay views need root")
def test_a_killed_builds_mounts_are_swept_by_the_next_build(
    tmp_path: Path, tiny_base: TinyBase, isolated_build: Path
) -> None:
    ctx = make_context(tmp_path, "ARG BASE\nFROM $BASE\nRUN touch /ready && sleep 60\n")
    cmd = [sys.executable, "-m", "manyarch", "build", "--platform", "linux/amd64"]
    cmd += ["--build-arg", f"BASE={tiny_base.ref}", "--progress", "plain", str(ctx)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list(isolated_build.glob(f"{PREFIX}*/**/rootfs/ready")):
            assert proc.poll() is None and time.monotonic() < deadline, "the RUN never started"
            time.sleep(0.1)
        [left] = isolated_build.glob(f"{PREFIX}*")
        assert mounts_under(left)  # the build's overlay view
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert mounts_under(left), "a SIGKILLed build cannot clean up"
    ctx2 = make_context(tmp_path / "two", "ARG BASE\nFROM $BASE\nRUN true\n")
    cmd2 = [*cmd[:-1], str(ctx2)]
    r = subprocess.run(cmd2, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not left.exists() and mounts_under(isolated_build) == []


def test_prune_sweeps_killed_builds(isolated_build: Path) -> None:
    dead = _owned(isolated_build, "dead", _dead_pid(), "12345")
    r = manyarch(dict(os.environ), "prune", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "removed 1 working directories of builds that were killed" in r.stdout
    assert not dead.exists()
