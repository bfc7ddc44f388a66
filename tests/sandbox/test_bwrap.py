"""The bubblewrap sandbox on the tiny base's real rootfs (amd64 natively, arm64 through QEMU)."""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

import pytest

from manyarch.errors import SandboxError
from manyarch.images import LayoutSource, resolve_image
from manyarch.layers import unpack
from manyarch.layout import Layout
from manyarch.oci.platform import Platform
from manyarch.sandbox import bwrap
from manyarch.sandbox.bwrap import Bind, SandboxSpec, command, remove_created, run, start
from tests.helpers.tiny_base import TinyBase, tiny_base

__all__ = ["tiny_base"]


def _rootfs(base: TinyBase, platform: str, dest: Path) -> Path:
    layout = Layout.open(base.layout)
    image = resolve_image(LayoutSource(layout, base.tag), Platform.parse(platform))
    unpack(
        dest,
        [(str(d.digest), layout.blob_path(d.digest), d.media_type) for d in image.manifest.layers],
    )
    return dest


@pytest.fixture(scope="module")
def amd64_root(tiny_base: TinyBase, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny base's amd64 rootfs."""
    return _rootfs(tiny_base, "linux/amd64", tmp_path_factory.mktemp("bwrap") / "amd64")


@pytest.fixture(scope="module")
def arm64_root(tiny_base: TinyBase, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny base's arm64 rootfs."""
    return _rootfs(tiny_base, "linux/arm64", tmp_path_factory.mktemp("bwrap") / "arm64")


def _out(spec: SandboxSpec) -> tuple[int, str]:
    r = run(spec, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return r.returncode, r.stdout.decode()


def test_env_cwd_user_and_fresh_namespaces(amd64_root: Path) -> None:
    script = (
        'echo "$GREETING|$(pwd)|$(id -u):$(id -g)|$HOME|$(cat /proc/sys/kernel/hostname)|$$"; '
        "ls -A /tmp | wc -l"
    )
    spec = SandboxSpec(
        amd64_root, ["/bin/sh", "-c", script], env={"GREETING": "hi"}, cwd="/home/app", user="app"
    )
    rc, out = _out(spec)
    assert rc == 0, out
    first, count = out.splitlines()
    greeting, cwd, ids, home, host, pid = first.split("|")
    assert (greeting, cwd, ids, home, host) == (
        "hi",
        "/home/app",
        "1000:1000",
        "/home/app",
        "manyarch",
    )
    assert int(pid) < 10 and count == "0"


def _interfaces(net_dev: str) -> list[str]:
    return sorted(line.split(":")[0].strip() for line in net_dev.splitlines()[2:])


@pytest.mark.parametrize("network", ["none", "host"])
def test_network_modes(amd64_root: Path, network: str) -> None:
    spec = SandboxSpec(amd64_root, ["/bin/cat", "/proc/net/dev"], network=network)
    rc, out = _out(spec)
    assert rc == 0, out
    # host: the host's own interfaces, not a fresh namespace's lone loopback
    expected = ["lo"] if network == "none" else _interfaces(Path("/proc/net/dev").read_text())
    assert network == "none" or expected != ["lo"], (
        "a host with only lo cannot tell the modes apart"
    )
    assert _interfaces(out) == expected


def test_exit_status_and_mount_points_removed(amd64_root: Path, tmp_path: Path) -> None:
    host_file = tmp_path / "data.txt"
    host_file.write_text("from the host")
    assert not (amd64_root / "etc/resolv.conf").exists()
    spec = SandboxSpec(
        amd64_root,
        ["/bin/sh", "-c", "cat /mnt/x/data.txt; echo no > /mnt/x/data.txt; exit 5"],
        binds=[Bind(tmp_path, "/mnt/x")],
    )
    rc, out = _out(spec)
    assert rc == 5
    assert out.startswith("from the host") and "Read-only file system" in out
    assert host_file.read_text() == "from the host"
    # the mount points bwrap needed are gone: they must never reach a layer
    assert not (amd64_root / "mnt/x").exists()
    assert not (amd64_root / "etc/resolv.conf").exists()


def test_writes_stay_in_the_rootfs(amd64_root: Path, tmp_path: Path) -> None:
    marker = tmp_path.name
    rc, _ = _out(
        SandboxSpec(amd64_root, ["/bin/sh", "-c", f"echo x > /{marker}; echo y > /tmp/{marker}"])
    )
    assert rc == 0
    assert (amd64_root / marker).read_text() == "x\n"
    assert not Path("/", marker).exists() and not Path("/tmp", marker).exists()
    (amd64_root / marker).unlink()


@pytest.mark.parametrize(("emulation", "ok"), [(True, True), (False, False)])
def test_foreign_arch_with_and_without_emulation(
    arm64_root: Path, emulation: bool, ok: bool
) -> None:
    rc, out = _out(SandboxSpec(arm64_root, ["/bin/uname", "-m"], emulation=emulation))
    if ok:
        assert (rc, out.strip()) == (0, "aarch64")
    else:
        assert rc != 0 and "Exec format error" in out


def test_unknown_user_and_empty_argv(amd64_root: Path) -> None:
    with pytest.raises(SandboxError, match="unable to find user nobody-here"):
        command(SandboxSpec(amd64_root, ["/bin/true"], user="nobody-here"))
    with pytest.raises(SandboxError, match="no command"):
        command(SandboxSpec(amd64_root, []))


@pytest.mark.parametrize("emulation", [True, False])
def test_kill_right_after_start_stops_the_sandbox(amd64_root: Path, emulation: bool) -> None:
    # bwrap's init binds itself to bwrap (--die-with-parent) only once its
    # namespaces are set up: killing bwrap alone in those first milliseconds
    # left the command running (the cause of a 60 s CI build that should have
    # stopped at once). Kill at every delay through that window.
    spec = SandboxSpec(amd64_root, ["/bin/sleep", "30"], network="none", emulation=emulation)
    for step in range(30):
        created: list[Path] = []
        s = start(spec, created, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        assert s.child_pid is not None
        time.sleep(step * 0.0003)
        s.kill()
        s.proc.wait(timeout=10)
        assert s.proc.stdout is not None
        # every writer of the pipe is gone: it reads as end-of-file at once
        ready, _, _ = select.select([s.proc.stdout], [], [], 5)
        assert ready and s.proc.stdout.read() == b"", f"the sandbox outlived a kill at step {step}"
        s.proc.stdout.close()
        assert _gone(s.child_pid)
        remove_created(created)


def _gone(pid: int) -> bool:
    """``pid`` has exited (or is a zombie) within 5 s."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX":
                return True
        except (OSError, IndexError):
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64"])
def test_a_user_is_that_user_on_disk_and_root_stays_root(
    tiny_base: TinyBase, tmp_path: Path, platform: str
) -> None:
    # the rootfs sits under a directory only root may enter, as a build's does
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    root = _rootfs(tiny_base, platform, private / "rootfs")
    (root / "home/app/secret").mkdir(mode=0o700)
    os.chown(root / "home/app/secret", 1000, 1000)
    script = (
        "touch /home/app/secret/mine && echo 1 > /tmp/t && "
        "stat -c %u:%g /etc/passwd /home/app/secret && "
        "(touch /etc/nope 2>/dev/null && echo wrote || echo denied)"
    )
    rc, out = _out(SandboxSpec(root, ["/bin/sh", "-c", script], user="app"))
    assert rc == 0, out
    assert out.splitlines() == ["0:0", "1000:1000", "denied"]
    st = (root / "home/app/secret/mine").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert not (root / "etc/nope").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the identity map is written by root")
def test_a_user_map_that_cannot_be_written_leaves_no_sandbox(
    amd64_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []

    def refuse(pid: int) -> None:
        seen.append(pid)
        raise SandboxError("cannot map the sandbox's users")

    monkeypatch.setattr(bwrap, "_write_identity_map", refuse)
    spec = SandboxSpec(amd64_root, ["/bin/sleep", "30"], user="app", network="none")
    r, w = os.pipe()
    try:
        with pytest.raises(SandboxError, match="cannot map"):
            start(
                spec,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(w,),
                preexec_fn=lambda: os.write(w, b"%d" % os.getpid()),  # bwrap's pid
            )
        bwrap_pid = int(os.read(r, 64))
    finally:
        os.close(r)
        os.close(w)
    # the sandbox is killed and bwrap reaped: not left running, nor a zombie
    assert len(seen) == 1 and _gone(seen[0])
    assert not Path(f"/proc/{bwrap_pid}").exists()
