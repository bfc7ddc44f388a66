"""A hostile image's first moves, from a RUN step and from a container, amd64 and arm64
(under QEMU): each must fail.

The probe (``probe.c``, built static here for both architectures) reports its
effective capabilities and tries the classic escapes: ``open_by_handle_at``
(the "shocker" read of the host's files), mounts (tmpfs, sysfs, binfmt_misc),
the host's binfmt_misc ``register``, ``/dev/kmsg``, ``core_pattern``,
``/proc/sysrq-trigger``, a new user namespace, and a TCP connection to a
port only the host's loopback serves (at 127.0.0.1 and at the gateway's
address, which pasta would map to the host's loopback unless told not to).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from manyarch.errors import BuildError
from manyarch.oci.platform import Platform
from manyarch.run.spec import default_gateway
from tests.helpers.tiny_base import TinyBase, tiny_base
from tests.imagebuild.build_helpers import BOTH, make_context, run_build

__all__ = ["tiny_base"]

#: Docker's 14 default capabilities as /proc/self/status shows them (root inside).
DOCKER_CAPEFF = "00000000a80425fb"
COMPILERS = {"amd64": "gcc", "arm64": "aarch64-linux-gnu-gcc"}
ATTEMPTS = (
    "open_by_handle_at", "mount_tmpfs", "mount_sysfs", "mount_binfmt", "binfmt_register",
    "kmsg", "core_pattern", "sysrq", "unshare_user",
)  # fmt: skip


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The probe, static, per architecture."""
    out = tmp_path_factory.mktemp("probe")
    source = Path(__file__).with_name("probe.c")
    built = {}
    for arch, cc in COMPILERS.items():
        if not shutil.which(cc):
            pytest.skip(f"{cc} is not installed")
        dest = out / f"probe-{arch}"
        subprocess.run([cc, "-static", "-O1", "-o", str(dest), str(source)], check=True)
        built[arch] = dest
    return built


@pytest.fixture
def loopback_port() -> Iterator[int]:
    """A port only the host's loopback listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def _probe_context(tmp_path: Path, probes: dict[str, Path], run: str) -> Path:
    df = f"ARG BASE\nFROM $BASE\nARG TARGETARCH\nCOPY probe-$TARGETARCH /probe\n{run}\n"
    files = {f"probe-{a}": p.read_bytes() for a, p in probes.items()}
    ctx = make_context(tmp_path, df, files)
    for a in probes:
        (ctx / f"probe-{a}").chmod(0o755)
    return ctx


def _results(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        name, _, rest = line.partition(" ")
        out[name] = rest
    return out


def _assert_confined(results: dict[str, str], capeff: str = DOCKER_CAPEFF) -> None:
    assert results.get("capeff") == capeff, results
    for name in ATTEMPTS:
        assert results.get(name, "").startswith("denied"), (name, results)
    assert results.get("bind_80") == "ok", results  # what it may do, it still can
    for name, rest in results.items():
        if name.startswith("connect_"):
            assert rest.startswith("denied"), (name, results)


@pytest.mark.usefixtures("isolated_build")
def test_a_run_step_cannot_escape(
    tmp_path: Path, tiny_base: TinyBase, probes: dict[str, Path], loopback_port: int
) -> None:
    run = f"RUN /probe {loopback_port} 127.0.0.1 {default_gateway()}"
    built = run_build(_probe_context(tmp_path, probes, run), tiny_base.ref, BOTH)
    for platform in ("linux/amd64", "linux/arm64"):
        _assert_confined(_results(built.output(platform)))


@pytest.mark.usefixtures("isolated_build")
def test_a_non_root_run_step_holds_no_capability(
    tmp_path: Path, tiny_base: TinyBase, probes: dict[str, Path]
) -> None:
    ctx = _probe_context(tmp_path, probes, "USER app\nRUN /probe")
    built = run_build(ctx, tiny_base.ref, (Platform.parse("linux/amd64"),))
    _assert_confined(_results(built.output("linux/amd64")), capeff="0000000000000000")


@pytest.mark.usefixtures("isolated_build")
@pytest.mark.parametrize(
    ("run", "entitlement"),
    [
        ("RUN --network=host true", "network.host"),
        ("RUN --security=insecure true", "security.insecure"),
    ],
)
def test_escape_hatches_need_their_entitlement(
    tmp_path: Path, tiny_base: TinyBase, probes: dict[str, Path], run: str, entitlement: str
) -> None:
    ctx = _probe_context(tmp_path, probes, run)
    with pytest.raises(BuildError, match=entitlement):
        run_build(ctx, tiny_base.ref, (Platform.parse("linux/amd64"),))


@pytest.mark.usefixtures("isolated_build")
def test_with_the_entitlements_a_run_step_is_the_hosts(
    tmp_path: Path, tiny_base: TinyBase, probes: dict[str, Path], loopback_port: int
) -> None:
    ctx = _probe_context(
        tmp_path, probes, f"RUN --network=host --security=insecure /probe {loopback_port} 127.0.0.1"
    )
    built = run_build(
        ctx,
        tiny_base.ref,
        (Platform.parse("linux/amd64"),),
        allow=frozenset({"network.host", "security.insecure"}),
    )
    results = _results(built.output("linux/amd64"))
    assert results["connect_127.0.0.1"] == "ok"
    assert results["capeff"] != DOCKER_CAPEFF


@pytest.mark.usefixtures("isolated_build")
def test_a_run_step_has_buildkits_names_and_its_network_choices(
    tmp_path: Path, tiny_base: TinyBase, probes: dict[str, Path]
) -> None:
    run = (
        "RUN cat /etc/hosts /etc/hostname && cat /proc/net/dev | wc -l\n"
        "RUN --network=none cat /proc/net/dev | wc -l"
    )
    built = run_build(
        _probe_context(tmp_path, probes, run), tiny_base.ref, (Platform.parse("linux/amd64"),)
    )
    out = built.output("linux/amd64")
    assert out[0] == "127.0.0.1\tlocalhost buildkitsandbox"
    assert "buildkitsandbox" in out
    own, none = int(out[-2]), int(out[-1])
    assert (own, none) == (4, 3)  # header lines, lo, and pasta's interface; then lo alone
