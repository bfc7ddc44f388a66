"""``manyarch emulation`` and sandbox.emulation against the host's real binfmt_misc.

The system's arm64 handler is only read, never removed. Install/uninstall are
exercised on s390x, which nothing else here uses, and the test puts the
s390x state back as it found it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from manyarch.cli.main import main
from manyarch.errors import EmulationError, ToolMissing
from manyarch.oci.platform import Platform
from manyarch.sandbox import emulation

pytestmark = pytest.mark.skipif(
    not emulation.BINFMT_DIR.joinpath("register").exists(), reason="binfmt_misc is not mounted"
)


@pytest.mark.parametrize(
    ("arch", "qemu"),
    [("arm64", "aarch64"), ("aarch64", "aarch64"), ("amd64", "x86_64"), ("x86_64", "x86_64"),
     ("arm", "arm"), ("386", "i386"), ("mips64le", "mips64el"), ("riscv64", "riscv64")],
)  # fmt: skip
def test_qemu_names(arch: str, qemu: str) -> None:
    assert emulation.qemu_name(arch) == qemu


@pytest.mark.parametrize(
    ("platform", "native"),
    [("linux/amd64", True), ("linux/386", True), ("linux/arm64", False),
     ("linux/arm/v7", False), ("linux/s390x", False)],
)  # fmt: skip
def test_runs_natively_on_amd64(platform: str, native: bool) -> None:
    host = Platform.parse("linux/amd64")
    assert emulation.runs_natively(Platform.parse(platform), host) is native


def test_arm64_handler_is_registered_with_fix_binary() -> None:
    h = emulation.handler_for("arm64")
    assert h is not None, "register it: sudo manyarch emulation install arm64"
    assert h.enabled and h.name == "qemu-aarch64"
    assert "F" in h.flags and os.path.exists(h.interpreter)
    emulation.require(Platform.parse("linux/arm64"))  # does not raise


def test_status_lists_arm64_emulated(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulation", "status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("host: linux/amd64")
    rows = {ln.split()[0]: " ".join(ln.split()[1:]) for ln in lines[1:]}
    assert rows["linux/amd64"] == "native"
    assert rows["linux/arm64"].startswith("emulated (") and "flags" in rows["linux/arm64"]


def test_install_is_idempotent_for_a_registered_arch(capsys: pytest.CaptureFixture[str]) -> None:
    before = emulation.handler_for("arm64")
    assert before is not None
    assert main(["emulation", "install", "arm64"]) == 0
    assert main(["emulation", "install", "arm64"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [out[0], out[0]] and out[0].startswith("arm64: qemu-aarch64 -> ")
    assert emulation.handler_for("arm64") == before


@pytest.fixture
def s390x_restored() -> Iterator[None]:
    """Put the s390x handler back as it was (registered or not) after the test."""
    had = emulation.handler_for("s390x") is not None
    try:
        yield
    finally:
        if had:
            emulation.install("s390x")
        else:
            emulation.uninstall("s390x")


@pytest.mark.skipif(os.geteuid() != 0, reason="registering a handler needs root")
def test_install_and_uninstall_a_handler(
    s390x_restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        emulation.conf_file("s390x")
    except ToolMissing:
        pytest.skip("qemu-user-static has no s390x handler here")
    plat = Platform.parse("linux/s390x")
    emulation.uninstall("s390x")
    with pytest.raises(EmulationError) as e:
        emulation.require(plat)
    assert "sudo manyarch emulation install s390x" in str(e.value.hint)
    assert main(["emulation", "install", "s390x"]) == 0
    h = emulation.handler_for("s390x")
    assert h is not None and "F" in h.flags
    first = emulation.install("s390x")  # again: nothing changes
    assert first == h
    emulation.require(plat)
    assert main(["emulation", "uninstall", "s390x"]) == 0
    assert "s390x: removed" in capsys.readouterr().out
    assert emulation.handler_for("s390x") is None
    assert emulation.uninstall("s390x") is False


def test_conf_file_of_unknown_arch_names_the_package() -> None:
    with pytest.raises(ToolMissing) as e:
        emulation.conf_file("no-such-arch")
    assert "qemu-user-static" in str(e.value.hint)


def test_available_arches_come_from_qemu_user_static() -> None:
    arches = emulation.available_arches()
    assert "arm64" in arches and "s390x" in arches
