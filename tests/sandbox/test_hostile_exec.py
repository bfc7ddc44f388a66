"""The hostile probe (see ``test_hostile``) through ``manyarch exec`` and a health check:
a process that joins a running container gets that container's confinement (its
capabilities, no new privileges, its seccomp filter), as ``docker exec`` does, and
nothing more than it when the container was started ``--privileged``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import manyarch
from tests.helpers.tiny_base import TinyBase, tiny_base
from tests.sandbox.test_hostile import DOCKER_CAPEFF, _assert_confined, _results, probes
from tests.sandbox.test_hostile_run import env

__all__ = ["env", "probes", "tiny_base"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers are tested as root")
BINFMT_ARM64 = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


@pytest.fixture
def shared(probes: dict[str, Path]) -> Iterator[Path]:
    """The probes where uid 1000 may run them too (pytest's own directories are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="manyarch-probe-"))
    try:
        d.chmod(0o755)
        for arch, p in probes.items():
            shutil.copy2(p, d / f"probe-{arch}")
        yield d
    finally:
        shutil.rmtree(d)


def _start(env: dict[str, str], ref: str, d: Path, name: str, arch: str, *args: str) -> None:
    r = manyarch(
        env, "run", "-d", "--name", name, "--platform", f"linux/{arch}", "-v", f"{d}:/probe:ro",
        *args, ref, "sleep", "120",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


def _exec(env: dict[str, str], name: str, arch: str, *args: str) -> dict[str, str]:
    r = manyarch(env, "exec", *args, name, f"/probe/probe-{arch}")
    assert r.returncode == 0, r.stderr
    return _results(r.stdout.splitlines())


def _assert_like_the_container(results: dict[str, str], capeff: str = DOCKER_CAPEFF) -> None:
    _assert_confined(results, capeff)
    assert results["nonewprivs"] == "1" and results["seccomp"] == "2", results


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_exec_gets_the_containers_confinement(
    env: dict[str, str], tiny_base: TinyBase, shared: Path, arch: str
) -> None:
    if arch == "arm64" and not BINFMT_ARM64.exists():
        pytest.skip("no arm64 emulation handler registered")
    name = f"confined-{arch}"
    _start(env, tiny_base.ref, shared, name, arch)
    try:
        root = _exec(env, name, arch)
        _assert_like_the_container(root)
        assert root["capbnd"] == DOCKER_CAPEFF
        status = manyarch(env, "exec", name, "head", "-n", "60", "/proc/self/status").stdout
        assert "SigIgn:\t0000000000000000" in status  # not the helper's interpreter's
        app = _exec(env, name, arch, "-u", "1000")
        _assert_like_the_container(app, capeff="0000000000000000")
    finally:
        manyarch(env, "rm", "-f", name)


def test_exec_keeps_the_containers_choices(
    env: dict[str, str], tiny_base: TinyBase, shared: Path
) -> None:
    _start(env, tiny_base.ref, shared, "added", "amd64", "--cap-add", "SYS_ADMIN")
    _start(env, tiny_base.ref, shared, "unconfined", "amd64", "--security-opt",
           "seccomp=unconfined")  # fmt: skip
    _start(env, tiny_base.ref, shared, "privileged", "amd64", "--privileged")
    try:
        added = _exec(env, "added", "amd64")
        assert int(added["capeff"], 16) == int(DOCKER_CAPEFF, 16) | 1 << 21
        assert added["mount_tmpfs"] == "ok" and added["seccomp"] == "2"
        assert added["open_by_handle_at"].startswith("denied")
        unconfined = _exec(env, "unconfined", "amd64")
        assert unconfined["seccomp"] == "0" and unconfined["capeff"] == DOCKER_CAPEFF
        assert unconfined["unshare_user"] == "ok" and unconfined["mount_tmpfs"].startswith("denied")
        privileged = _exec(env, "privileged", "amd64")
        assert privileged["seccomp"] == "0" and privileged["mount_tmpfs"] == "ok"
    finally:
        manyarch(env, "rm", "-f", "added", "unconfined", "privileged")


def test_a_health_probe_gets_the_containers_confinement(
    env: dict[str, str], tiny_base: TinyBase, shared: Path
) -> None:
    _start(env, tiny_base.ref, shared, "probed", "amd64", "--health-cmd", "/probe/probe-amd64",
           "--health-interval", "1s", "--health-start-interval", "300ms")  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            r = manyarch(env, "inspect", "probed")
            assert r.returncode == 0, r.stderr
            log = (json.loads(r.stdout)[0]["State"].get("Health") or {}).get("Log") or []
            if log:
                break
            assert time.monotonic() < deadline, "no health probe ran"
            time.sleep(0.3)
        _assert_like_the_container(_results(log[-1]["Output"].splitlines()))
    finally:
        manyarch(env, "rm", "-f", "probed")


def test_no_helper_imports_a_module_where_the_command_is_typed(
    env: dict[str, str], tiny_base: TinyBase, tmp_path: Path
) -> None:
    # a cloned repository's json.py, subprocess.py: helper interpreters run as root
    script = Path(sys.executable).with_name("manyarch")
    if not script.exists():
        pytest.skip("manyarch's console script is not installed beside this interpreter")
    for name in ("json", "subprocess", "ctypes", "signal"):
        (tmp_path / f"{name}.py").write_text("raise SystemExit('imported from the cwd')\n")

    def typed(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )

    assert typed("run", "-d", "--name", "cwd", tiny_base.ref, "sleep", "60").returncode == 0
    try:
        r = typed("exec", "cwd", "echo", "ok")
        assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
        r = typed("inspect", "-f", "{{.State.Status}}", "cwd")
        assert r.stdout.strip() == "running", r.stderr
    finally:
        manyarch(env, "rm", "-f", "cwd")
