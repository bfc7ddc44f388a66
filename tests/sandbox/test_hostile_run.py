"""The hostile probe (see ``test_hostile``) inside ``manyarch run``: amd64, and arm64 under
QEMU; then the explicit ways out (``--privileged``, ``--network host``, ``--cap-add``,
``--security-opt seccomp=unconfined``) do what docker's do."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from manyarch.run.spec import default_gateway
from tests.helpers.cli import manyarch
from tests.helpers.tiny_base import TinyBase, tiny_base
from tests.sandbox.test_hostile import (
    DOCKER_CAPEFF,
    _assert_confined,
    _results,
    loopback_port,
    probes,
)

__all__ = ["loopback_port", "probes", "tiny_base"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers are tested as root")


@pytest.fixture
def env(tmp_path: Path, tiny_base: TinyBase) -> Iterator[dict[str, str]]:
    """A store and data home of the test's own, the tiny base pulled."""
    e = dict(os.environ, MANYARCH_STORE=str(tmp_path / "store"), XDG_DATA_HOME=str(tmp_path))
    r = manyarch(e, "pull", "-q", tiny_base.ref)
    assert r.returncode == 0, r.stderr
    yield e


def _probe(
    env: dict[str, str], ref: str, probes: dict[str, Path], arch: str, *args: str
) -> dict[str, str]:
    d = probes[arch].parent
    r = manyarch(
        env, "run", "--rm", "--platform", f"linux/{arch}", "-v", f"{d}:/probe:ro", *args[:-1],
        ref, f"/probe/probe-{arch}", *args[-1].split(),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return _results(r.stdout.splitlines())


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_a_container_cannot_escape(
    env: dict[str, str],
    tiny_base: TinyBase,
    probes: dict[str, Path],
    loopback_port: int,
    arch: str,
) -> None:
    targets = f"{loopback_port} 127.0.0.1 {default_gateway()}"
    _assert_confined(_probe(env, tiny_base.ref, probes, arch, targets))


def test_a_non_root_container_holds_no_capability(
    env: dict[str, str], tiny_base: TinyBase, probes: dict[str, Path]
) -> None:
    # where uid 1000 may read it (pytest's own directories are root's, 0700)
    shared = Path(tempfile.mkdtemp(prefix="manyarch-probe-"))
    try:
        shared.chmod(0o755)
        shutil.copy2(probes["amd64"], shared / "probe-amd64")
        results = _probe(
            env, tiny_base.ref, {"amd64": shared / "probe-amd64"}, "amd64", "-u", "1000", ""
        )
    finally:
        shutil.rmtree(shared)
    _assert_confined(results, capeff="0000000000000000")


def test_the_explicit_ways_out(
    env: dict[str, str], tiny_base: TinyBase, probes: dict[str, Path], loopback_port: int
) -> None:
    port = str(loopback_port)
    host = _probe(env, tiny_base.ref, probes, "amd64", "--network", "host", f"{port} 127.0.0.1")
    assert host["connect_127.0.0.1"] == "ok"
    assert host["capeff"] == DOCKER_CAPEFF
    none = _probe(env, tiny_base.ref, probes, "amd64", "--network", "none", f"{port} 127.0.0.1")
    assert none["connect_127.0.0.1"].startswith("denied") and none["bind_80"] == "ok"
    added = _probe(env, tiny_base.ref, probes, "amd64", "--cap-add", "SYS_ADMIN", "")
    assert int(added["capeff"], 16) == int(DOCKER_CAPEFF, 16) | 1 << 21
    assert added["mount_tmpfs"] == "ok"  # CAP_SYS_ADMIN in its own user namespace lets it
    assert added["open_by_handle_at"].startswith("denied")  # but never over the host's
    unconfined = _probe(
        env, tiny_base.ref, probes, "amd64", "--security-opt", "seccomp=unconfined", ""
    )
    assert unconfined["unshare_user"] == "ok"  # the filter is what refused it
    privileged = _probe(env, tiny_base.ref, probes, "amd64", "--privileged", "")
    assert privileged["capeff"] == "000001ffffffffff" or int(privileged["capeff"], 16) > int(
        DOCKER_CAPEFF, 16
    )
    assert privileged["mount_tmpfs"] == "ok"
