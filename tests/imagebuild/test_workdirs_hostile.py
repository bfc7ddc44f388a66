"""The sweep of killed builds' scratch directories in a shared directory (/var/tmp) that
other users write to: it never follows a symlink and only touches the caller's directories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from manyarch.imagebuild.workdirs import OWNER, PREFIX, sweep
from manyarch.rootfs import mounts_under


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs")
def test_sweep_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    shared, victim = tmp_path / "shared", tmp_path / "victim"
    shared.mkdir()
    (victim / "mnt").mkdir(parents=True)
    (victim / OWNER).write_text(f"{_dead_pid()} 12345\n")
    (victim / "keep").write_text("a file of someone else\n")
    os.symlink(victim, shared / f"{PREFIX}planted")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(victim / "mnt")], check=True)
    try:
        assert sweep(shared) == []
        assert mounts_under(victim) == [victim / "mnt"], "a mount of someone else was unmounted"
        assert (victim / "keep").read_text() == "a file of someone else\n"
        assert (shared / f"{PREFIX}planted").is_symlink()
    finally:
        subprocess.run(["umount", "-l", str(victim / "mnt")], capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="gives a directory to another user")
def test_sweep_leaves_other_users_directories(tmp_path: Path) -> None:
    theirs = tmp_path / f"{PREFIX}theirs"
    theirs.mkdir()
    (theirs / OWNER).write_text(f"{_dead_pid()} 12345\n")
    (theirs / "work").write_text("theirs\n")
    os.chown(theirs, 4242, 4242)
    mine = tmp_path / f"{PREFIX}mine"
    mine.mkdir()
    (mine / OWNER).write_text(f"{_dead_pid()} 12345\n")
    assert sweep(tmp_path) == [mine]
    assert (theirs / "work").read_text() == "theirs\n"


def test_sweep_skips_an_owner_file_that_is_a_symlink(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(f"{_dead_pid()} 12345\n")
    d = tmp_path / f"{PREFIX}linked-owner"
    d.mkdir()
    os.symlink(elsewhere, d / OWNER)
    assert sweep(tmp_path) == []
    assert d.is_dir()
