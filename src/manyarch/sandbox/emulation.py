"""Foreign architectures through binfmt_misc and qemu-user-static.

Debian's ``qemu-user-static`` ships one ``/usr/lib/binfmt.d/qemu-ARCH.conf``
per architecture; registering it with the ``F`` (fix binary) flag makes the
kernel open the interpreter once, so it works inside chroots and sandboxes.
Since Linux 6.7 binfmt_misc is per user namespace: a sandbox that mounts a
fresh instance sees no handlers (that is how ``--emulation=off`` works).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from manyarch.errors import EmulationError, ManyarchError, ToolMissing
from manyarch.oci.platform import Platform, host_platform

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF_DIRS = (Path("/usr/lib/binfmt.d"), Path("/etc/binfmt.d"))

#: OCI architecture -> QEMU's name for it.
QEMU_ARCH: dict[str, str] = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "arm": "arm",
    "386": "i386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64le": "mips64el",
    "loong64": "loongarch64",
}


@dataclass(frozen=True)
class Handler:
    """A registered binfmt_misc entry."""

    name: str
    enabled: bool
    interpreter: str
    flags: str


def qemu_name(arch: str) -> str:
    """QEMU's name for an OCI architecture (``arm64`` -> ``aarch64``)."""
    return QEMU_ARCH.get(Platform.of("linux", arch).architecture, arch)


def _mounted() -> bool:
    return (BINFMT_DIR / "register").exists()


def ensure_mounted() -> None:
    """Mount binfmt_misc when it is not (needs root)."""
    if _mounted():
        return
    _need_root("mount binfmt_misc")
    r = subprocess.run(
        ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0 or not _mounted():
        raise EmulationError(
            f"cannot mount binfmt_misc: {r.stderr.strip() or 'unknown error'}",
            "run as root on a Linux kernel with binfmt_misc",
        )


def handlers() -> list[Handler]:
    """The registered handlers visible here (none when binfmt_misc is not mounted)."""
    if not _mounted():
        return []
    out = []
    for entry in sorted(BINFMT_DIR.iterdir()):
        if entry.name in ("register", "status"):
            continue
        try:
            text = entry.read_text()
        except OSError:
            continue
        fields = {}
        lines = text.splitlines()
        for line in lines[1:]:
            key, _, value = line.partition(" ")
            fields[key] = value.strip()
        out.append(
            Handler(
                name=entry.name,
                enabled=bool(lines) and lines[0].strip() == "enabled",
                interpreter=fields.get("interpreter", ""),
                flags=fields.get("flags:", ""),
            )
        )
    return out


def handler_for(arch: str) -> Handler | None:
    """The enabled qemu handler for an architecture, if any."""
    name = f"qemu-{qemu_name(arch)}"
    for h in handlers():
        if h.name == name and h.enabled:
            return h
    return None


def runs_natively(platform: Platform, host: Platform | None = None) -> bool:
    """Whether the host CPU runs this platform without emulation."""
    host = host or host_platform()
    return any(platform.same(p) for p in host.fallbacks()) or (
        host.architecture == "amd64" and platform.architecture in ("amd64", "386")
    )


def can_run(platform: Platform) -> bool:
    """Natively or through a registered handler."""
    return runs_natively(platform) or handler_for(platform.architecture) is not None


def require(platform: Platform) -> None:
    """Raise :class:`EmulationError` with the fix when ``platform`` cannot run here."""
    if not can_run(platform):
        raise EmulationError(
            f"cannot run {platform} programs on this {host_platform()} machine: "
            "no binfmt_misc handler is registered for it",
            f"register one: sudo manyarch emulation install {platform.architecture} "
            "(needs the qemu-user-static package)",
        )


def conf_file(arch: str) -> Path:
    """The binfmt.d configuration qemu-user-static ships for an architecture."""
    name = qemu_name(arch)
    for d in BINFMT_CONF_DIRS:
        p = d / f"qemu-{name}.conf"
        if p.exists():
            return p
    raise ToolMissing(f"qemu-{name}-static (binfmt.d/qemu-{name}.conf)", "qemu-user-static")


def install(arch: str) -> Handler:
    """Register the qemu handler for ``arch`` with the ``F`` flag; idempotent."""
    existing = handler_for(arch)
    if existing is not None and "F" in existing.flags:
        return existing
    _need_root(f"register an emulation handler for {arch}")
    ensure_mounted()
    line = conf_file(arch).read_text().strip()
    parts = line.split(":")
    # :name:type:offset:magic:mask:interpreter:flags
    if len(parts) < 8:
        raise EmulationError(f"unexpected binfmt.d line in {conf_file(arch)}")
    if "F" not in parts[7]:
        parts[7] += "F"
    name = parts[1]
    if (BINFMT_DIR / name).exists():
        (BINFMT_DIR / name).write_text("-1")
    try:
        (BINFMT_DIR / "register").write_text(":".join(parts))
    except OSError as e:
        raise EmulationError(
            f"cannot register {name}: {e}",
            f"registering needs root and a writable {BINFMT_DIR}/register",
        ) from e
    h = handler_for(arch)
    if h is None:
        raise EmulationError(
            f"registered {name} but it is not enabled",
            f"see {BINFMT_DIR / name}; enable it with: echo 1 > {BINFMT_DIR / name}",
        )
    return h


def uninstall(arch: str) -> bool:
    """Remove the qemu handler for ``arch``; False when there was none."""
    name = f"qemu-{qemu_name(arch)}"
    entry = BINFMT_DIR / name
    if not entry.exists():
        return False
    _need_root(f"remove the emulation handler for {arch}")
    entry.write_text("-1")
    return True


def available_arches() -> list[str]:
    """OCI architectures for which qemu-user-static ships a handler here."""
    return [
        a
        for a, q in QEMU_ARCH.items()
        if any((d / f"qemu-{q}.conf").exists() for d in BINFMT_CONF_DIRS)
    ]


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise ManyarchError(f"root is needed to {what}", "run it again with sudo")
