"""Mount points are made inside the root, never through an image's symlink to the host
(runc's CVE-2021-30465 class): /etc/resolv.conf, /etc/hosts, /etc/hostname, binds, /tmp."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from manyarch.errors import SandboxError
from manyarch.sandbox.bwrap import Bind, SandboxSpec, run
from tests.helpers.tiny_base import TinyBase, tiny_base
from tests.sandbox.test_bwrap import _rootfs

__all__ = ["tiny_base"]


@pytest.fixture
def root(tiny_base: TinyBase, tmp_path: Path) -> Path:
    """A fresh amd64 rootfs of the tiny base."""
    return _rootfs(tiny_base, "linux/amd64", tmp_path / "root")


def _run(spec: SandboxSpec) -> tuple[int, str]:
    r = run(spec, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return r.returncode, r.stdout.decode()


@pytest.mark.parametrize("absolute", [True, False])
def test_a_resolv_conf_linked_to_the_host_is_followed_inside_the_root(
    root: Path, tmp_path: Path, absolute: bool
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    victim = host / "resolv.conf"  # missing on the host: nothing may create it
    (root / "etc" / "resolv.conf").unlink(missing_ok=True)
    target = str(victim) if absolute else "../" * 12 + str(victim).lstrip("/")
    os.symlink(target, root / "etc" / "resolv.conf")
    spec = SandboxSpec(
        root, ["/bin/sh", "-c", "cat /etc/resolv.conf; cat /etc/hostname"], hosts="127.0.0.1 x\n"
    )
    rc, out = _run(spec)
    assert rc == 0, out
    assert Path("/etc/resolv.conf").read_text() in out
    assert not victim.exists() and list(host.iterdir()) == []
    assert not (root / str(victim).lstrip("/")).exists()  # made inside the root, then removed


def test_an_etc_linked_to_the_host_gets_no_hosts_file_there(root: Path, tmp_path: Path) -> None:
    host = tmp_path / "host-etc"
    host.mkdir()
    os.rename(root / "etc", root / "etc.real")
    os.symlink(str(host), root / "etc")
    spec = SandboxSpec(root, ["/bin/sh", "-c", "cat /etc/hosts"], hosts="127.0.0.1 box\n")
    rc, out = _run(spec)
    assert rc == 0, out
    assert "127.0.0.1 box" in out
    assert list(host.iterdir()) == []


def test_a_bind_below_a_link_lands_inside_the_root(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), root / "data")
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("mine\n")
    spec = SandboxSpec(
        root, ["/bin/cat", "/data/sub/f"], binds=[Bind(src, "/data/sub")], resolv_conf=False
    )
    rc, out = _run(spec)
    assert (rc, out) == (0, "mine\n")
    assert list(outside.iterdir()) == []


def test_a_proc_that_is_a_link_is_refused(root: Path, tmp_path: Path) -> None:
    os.rmdir(root / "proc") if (root / "proc").is_dir() else None
    os.symlink(str(tmp_path), root / "proc")
    with pytest.raises(SandboxError, match="/proc is a symbolic link"):
        _run(SandboxSpec(root, ["/bin/true"]))
