"""What this process runs as: OCI platform, libc, kernel and QEMU emulation.

Standard library only: the module runs inside the demo image, where only
``requirements.txt`` is installed, and the emulation test copies it into a
bare foreign root file system.

How emulation is detected. Under qemu-user (binfmt_misc), QEMU rewrites what
the guest sees of itself: ``uname`` reports the emulated machine,
``/proc/self/exe`` and ``/proc/self/maps`` are faked. QEMU only intercepts
paths spelled ``/proc/self/...`` or ``/proc/<pid>/...`` though, so
``/proc/thread-self/exe`` still leads to the binary the kernel really runs:
``qemu-aarch64-static``, an x86-64 ELF file. The ELF machine of that file
against the one ``platform.machine()`` implies is the main signal; the
kernel's own architecture (``/proc/sys/kernel/arch``, which QEMU leaves
alone) is the fallback when the first cannot be read.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

#: ELF ``e_machine`` values (System V gABI, elf.h) for the machines we name.
EM_386 = 3
EM_MIPS = 8
EM_PPC64 = 21
EM_S390 = 22
EM_ARM = 40
EM_X86_64 = 62
EM_AARCH64 = 183
EM_RISCV = 243
EM_LOONGARCH = 258

#: ``uname -m`` -> the ELF machine of programs built for it.
MACHINE_ELF: dict[str, int] = {
    "x86_64": EM_X86_64,
    "amd64": EM_X86_64,
    "i386": EM_386,
    "i486": EM_386,
    "i586": EM_386,
    "i686": EM_386,
    "aarch64": EM_AARCH64,
    "arm64": EM_AARCH64,
    "armv5l": EM_ARM,
    "armv5tel": EM_ARM,
    "armv6l": EM_ARM,
    "armv7l": EM_ARM,
    "armv8l": EM_ARM,
    "ppc64le": EM_PPC64,
    "ppc64": EM_PPC64,
    "s390x": EM_S390,
    "riscv64": EM_RISCV,
    "mips": EM_MIPS,
    "mips64": EM_MIPS,
    "loongarch64": EM_LOONGARCH,
}

#: Kernels that run these 32-bit programs natively (compat mode), without QEMU.
_COMPAT = {EM_X86_64: {EM_386}, EM_AARCH64: {EM_ARM}}


@dataclass(frozen=True)
class OciPlatform:
    """An OCI platform triple, as in an image index (``linux/arm64``)."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        """``os/architecture[/variant]``."""
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)


@dataclass(frozen=True)
class Emulation:
    """Whether this process runs under a user-mode emulator, and which one."""

    emulated: bool
    emulator: str = ""
    host_machine: str = ""


def oci_platform(machine: str | None = None, byteorder: str | None = None) -> OciPlatform:
    """The OCI platform of a ``uname -m`` machine, with containerd's names.

    Kept apart from ``manyarch.oci.platform`` on purpose: this runs in the image.
    """
    m = (machine if machine is not None else platform.machine()).lower()
    little = (byteorder or sys.byteorder) == "little"
    if m in ("x86_64", "amd64", "x86-64"):
        return OciPlatform("linux", "amd64")
    if m in ("aarch64", "arm64", "aarch64_be"):
        return OciPlatform("linux", "arm64")
    if m in ("i386", "i486", "i586", "i686", "x86"):
        return OciPlatform("linux", "386")
    if m.startswith("armv") and m[4:5].isdigit():
        return OciPlatform("linux", "arm", "v" + m[4])
    if m == "arm":
        return OciPlatform("linux", "arm", "v7")
    if m in ("ppc64le", "ppc64"):
        return OciPlatform("linux", "ppc64le" if little else "ppc64")
    if m in ("mips64", "mips"):
        return OciPlatform("linux", m + ("le" if little else ""))
    if m == "loongarch64":
        return OciPlatform("linux", "loong64")
    return OciPlatform("linux", m)


def elf_machine(path: str | os.PathLike[str]) -> int | None:
    """The ``e_machine`` of an ELF file, or None when it is not one (or unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    # EI_DATA: 1 is little-endian, 2 big-endian (s390x, ppc64).
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def detect_emulation(machine: str | None = None, proc: Path = Path("/proc")) -> Emulation:
    """Tell whether this process is run by an emulator such as qemu-user."""
    m = (machine if machine is not None else platform.machine()).lower()
    want = MACHINE_ELF.get(m)
    host = _read(proc / "sys" / "kernel" / "arch")
    # thread-self, not self: QEMU fakes /proc/self/exe but not this spelling.
    real_exe = proc / "thread-self" / "exe"
    try:
        exe = os.readlink(real_exe)
    except OSError:
        exe = ""
    got = elf_machine(real_exe)
    if want is not None and got is not None:
        if got == want or want in _COMPAT.get(got, set()):
            return Emulation(False, host_machine=host)
        return Emulation(True, emulator=exe, host_machine=host)
    if want is not None and host:
        host_elf = MACHINE_ELF.get(host.lower())
        if host_elf is not None and host_elf != want and want not in _COMPAT.get(host_elf, set()):
            return Emulation(True, host_machine=host)
    return Emulation(False, host_machine=host)
