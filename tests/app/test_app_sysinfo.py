"""Platform naming and emulation detection, natively and under real QEMU."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.sysinfo import (
    EM_386,
    EM_AARCH64,
    EM_X86_64,
    MACHINE_ELF,
    Emulation,
    OciPlatform,
    detect_emulation,
    elf_machine,
    oci_platform,
)
from manyarch.oci.platform import Platform

APP = Path(__file__).resolve().parents[2] / "app"


@pytest.mark.parametrize(
    ("machine", "byteorder", "expected"),
    [
        ("x86_64", "little", "linux/amd64"),
        ("aarch64", "little", "linux/arm64"),
        ("arm64", "little", "linux/arm64"),
        ("armv7l", "little", "linux/arm/v7"),
        ("armv6l", "little", "linux/arm/v6"),
        ("armv8l", "little", "linux/arm/v8"),
        ("i686", "little", "linux/386"),
        ("i386", "little", "linux/386"),
        ("ppc64le", "little", "linux/ppc64le"),
        ("ppc64", "big", "linux/ppc64"),
        ("s390x", "big", "linux/s390x"),
        ("riscv64", "little", "linux/riscv64"),
        ("mips64", "little", "linux/mips64le"),
        ("loongarch64", "little", "linux/loong64"),
    ],
)
def test_oci_platform_names(machine: str, byteorder: str, expected: str) -> None:
    p = oci_platform(machine, byteorder)
    assert str(p) == expected
    # The app must not import manyarch, but must agree with it.
    assert Platform.parse(str(p)) == Platform.parse(expected)


def test_oci_platform_of_this_process() -> None:
    assert oci_platform() == oci_platform(platform.machine(), sys.byteorder)
    assert str(OciPlatform("linux", "arm", "v7")) == "linux/arm/v7"


def test_elf_machine_of_this_interpreter(tmp_path: Path) -> None:
    assert elf_machine(os.path.realpath(sys.executable)) == MACHINE_ELF[platform.machine()]
    text = tmp_path / "script.sh"
    text.write_text("#!/bin/sh\n")
    assert elf_machine(text) is None
    assert elf_machine(tmp_path / "absent") is None
    short = tmp_path / "short"
    short.write_bytes(b"\x7fELF\x02\x01")
    assert elf_machine(short) is None


def test_native_process_is_not_emulated() -> None:
    arch = Path("/proc/sys/kernel/arch")
    e = detect_emulation()
    assert e == Emulation(False, "", arch.read_text().strip() if arch.exists() else "")


@pytest.mark.skipif(
    platform.machine() != "x86_64", reason="the table is written for an x86_64 host"
)
@pytest.mark.parametrize(
    ("claimed", "emulated"),
    [("x86_64", False), ("i686", False), ("aarch64", True), ("riscv64", True)],
)
def test_claimed_machine_against_the_running_binary(claimed: str, emulated: bool) -> None:
    # What QEMU makes uname say, against the x86_64 binary the kernel really runs.
    e = detect_emulation(machine=claimed)
    assert e.emulated is emulated
    assert (e.emulator != "") is emulated


@pytest.mark.parametrize(
    ("kernel_arch", "claimed", "emulated"),
    [
        ("x86_64", "aarch64", True),
        ("x86_64", "x86_64", False),
        ("x86_64", "i686", False),
        ("aarch64", "armv7l", False),
        ("aarch64", "x86_64", True),
        ("", "aarch64", False),
    ],
)
def test_falls_back_to_the_kernel_architecture(
    tmp_path: Path, kernel_arch: str, claimed: str, emulated: bool
) -> None:
    # A /proc without thread-self (an old kernel, a partial mount) leaves kernel.arch.
    (tmp_path / "sys" / "kernel").mkdir(parents=True)
    if kernel_arch:
        (tmp_path / "sys" / "kernel" / "arch").write_text(kernel_arch + "\n")
    e = detect_emulation(machine=claimed, proc=tmp_path)
    assert e == Emulation(emulated, "", kernel_arch)


def test_elf_constants_match_the_table() -> None:
    assert (MACHINE_ELF["x86_64"], MACHINE_ELF["i686"], MACHINE_ELF["aarch64"]) == (
        EM_X86_64,
        EM_386,
        EM_AARCH64,
    )


# --- under real QEMU: an arm64 Debian root file system run through binfmt_misc ---

PROBE = (
    "import json, platform, sys; sys.path.insert(0, '/probe'); import sysinfo, dataclasses; "
    "print(json.dumps({'machine': platform.machine(), "
    "**dataclasses.asdict(sysinfo.detect_emulation())}))"
)


@pytest.fixture(scope="module")
def arm64_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("arm64") / "rootfs"
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=extract",
            "--include=python3",
            "--arch=arm64",
            "bookworm",
            str(root),
        ],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (root / "probe").mkdir()
    shutil.copy(APP / "sysinfo.py", root / "probe" / "sysinfo.py")
    (root / "proc").mkdir(exist_ok=True)
    return root


def run_chroot(root: Path) -> dict[str, object]:
    # A private mount namespace, so the /proc mounted for the chroot goes away with it.
    script = f'mount -t proc proc "$1/proc" && exec chroot "$1" /usr/bin/python3 -c "{PROBE}"'
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(root)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def run_bwrap(root: Path) -> dict[str, object]:
    out = subprocess.run(
        [
            "bwrap",
            "--bind",
            str(root),
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "/usr/bin/python3",
            "-c",
            PROBE,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("runner", [run_chroot, run_bwrap], ids=["chroot", "bwrap"])
def test_detects_qemu_for_a_foreign_python(arm64_root: Path, runner: object) -> None:
    assert callable(runner)
    seen = runner(arm64_root)
    assert seen["machine"] == "aarch64"  # what QEMU makes uname say
    assert seen["emulated"] is True
    assert "qemu-aarch64" in str(seen["emulator"])
    assert seen["host_machine"] == platform.machine()
