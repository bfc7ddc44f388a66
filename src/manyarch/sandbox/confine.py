"""What a sandbox may do: Docker's default capabilities, masked and read-only /proc.

Every sandbox (RUN steps, containers, host tools) runs in a user namespace of
its own (see :mod:`manyarch.sandbox.bwrap`), with the capabilities Docker
gives a container (runc's ``specconv.Example``: 14 of them, and none for a
non-root user), Docker's default seccomp profile
(:mod:`manyarch.sandbox.seccomp`), and no new privileges (bubblewrap always
sets ``PR_SET_NO_NEW_PRIVS``). ``/proc`` is masked as runc masks it: files
some kernels expose about the host (``/proc/keys``, ``/proc/timer_list``, ...)
show ``/dev/null``, directories an empty read-only tmpfs; ``/proc/sys``,
``/proc/sysrq-trigger``, ``/proc/irq``, ``/proc/bus`` and ``/proc/fs`` are
read-only (bound from the host's /proc, whose files answer for the reader's own
namespaces). ``/sys`` is
not mounted at all, so its masked paths (``/sys/firmware``, ...) are moot.

``--privileged`` (``manyarch run``) and ``RUN --security=insecure`` (with
``--allow security.insecure``) are the user's explicit way out: as root, no
user namespace, every capability, no filter, an unmasked ``/proc``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manyarch.errors import InvalidArgument

#: Docker's default capabilities (moby ``oci/caps/defaults.go``, runc's example spec).
DEFAULT_CAPS = frozenset(
    {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
        "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    }
)  # fmt: skip
#: Every capability this kernel ABI names (``capability.h``), for ``--cap-add ALL``.
ALL_CAPS = frozenset(
    {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
        "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
        "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
        "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    }
)  # fmt: skip
#: runc's default masked paths (moby ``oci/defaults.go``) under /proc.
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi",
)  # fmt: skip
#: runc's default read-only paths. bubblewrap's ``--proc`` means to cover the first four
#: itself, but skips any its own ``access(W_OK)`` refuses, which in a user namespace
#: whose root is the host's uid 0 is not what the sandbox's root is refused.
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def parse_cap(name: str) -> str:
    """A capability as docker's ``--cap-add`` takes it (``NET_ADMIN``, ``cap_sys_admin``, ALL)."""
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    cap = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if cap not in ALL_CAPS:
        raise InvalidArgument(f"unknown capability {name!r}", "e.g. --cap-add NET_ADMIN")
    return cap


@dataclass(frozen=True)
class Security:
    """A sandbox's confinement: Docker's defaults unless the user asked otherwise."""

    #: --privileged / RUN --security=insecure: every capability, no user namespace, no filter
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    #: False: --security-opt seccomp=unconfined
    seccomp: bool = True

    @classmethod
    def of(
        cls,
        *,
        privileged: bool = False,
        cap_add: Iterable[str] = (),
        cap_drop: Iterable[str] = (),
        seccomp: bool = True,
    ) -> Security:
        """Checked and normalised (``NET_ADMIN`` → ``CAP_NET_ADMIN``)."""
        return cls(
            privileged,
            tuple(parse_cap(c) for c in cap_add),
            tuple(parse_cap(c) for c in cap_drop),
            seccomp,
        )

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Security:
        """As a container's state keeps it (``dataclasses.asdict``); {} is the default."""
        return cls(
            bool(obj.get("privileged", False)),
            tuple(obj.get("cap_add", ())),
            tuple(obj.get("cap_drop", ())),
            bool(obj.get("seccomp", True)),
        )

    def capabilities(self) -> frozenset[str]:
        """The bounding set of a root process inside (docker's order: drop, then add)."""
        if self.privileged:
            return ALL_CAPS
        caps = set(DEFAULT_CAPS)
        caps -= ALL_CAPS if "ALL" in self.cap_drop else set(self.cap_drop)
        caps |= ALL_CAPS if "ALL" in self.cap_add else set(self.cap_add)
        return frozenset(caps)


def cap_args(security: Security, uid: int) -> list[str]:
    """bwrap's options for the capabilities: none at all for a non-root user (as Docker's
    effective set), the allowed ones for root."""
    args = ["--cap-drop", "ALL"]
    if uid == 0:
        for cap in sorted(security.capabilities()):
            args += ["--cap-add", cap]
    return args


def proc_args(proc: Path = Path("/proc")) -> list[str]:
    """bwrap's options masking /proc as runc does (after ``--proc /proc``).

    Only paths this kernel has: bwrap would otherwise create them, and cannot in /proc.
    """
    args: list[str] = []
    for path in MASKED_PATHS:
        host = proc / path.removeprefix("/proc/")
        if host.is_dir():
            args += ["--perms", "0555", "--tmpfs", path, "--remount-ro", path]
        elif host.exists():
            # a device node on a mount bwrap made nodev could not be opened: --dev-bind
            args += ["--dev-bind", "/dev/null", path]
    for path in READONLY_PATHS:
        if (proc / path.removeprefix("/proc/")).exists():
            args += ["--ro-bind", path, path]
    return args
