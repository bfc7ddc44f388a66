"""Join a running sandbox, confined as its own process is (``exec``, health probes).

:func:`command` is the command line of a small helper run by the host's
interpreter, told what to do in an environment variable of its own (the
container's ``ENV`` reaches only the command, never the host's loader). The
helper

1. reads the seccomp filter (the cached BPF the sandbox got from bwrap, see
   :mod:`manyarch.sandbox.seccomp`) and opens the namespaces and root of the
   sandbox's PID 1 while it still sees the host;
2. joins the network, UTS, IPC, PID and mount namespaces as the host's root,
   then the user namespace (nsenter's order: the network namespace belongs to
   the host's user namespace, out of reach from the sandbox's), and takes the
   sandbox's root and working directory;
3. forks (a PID namespace is its children's), and the child becomes the user,
   keeps only the sandbox's capabilities (bounding, permitted, effective,
   inheritable and ambient, as bwrap leaves them: Docker's set, or
   ``--cap-add``/``--cap-drop``'s, for root, none for another user), sets
   ``no_new_privs``, loads the filter, and executes the command;
4. waits, and exits as the command did (killed by the same signal).

Capabilities go last but for the filter: joining the namespaces needs them,
and Docker's profile refuses ``setns`` without ``CAP_SYS_ADMIN``. A privileged
sandbox (no user namespace of its own) is joined as nsenter would: no drop, no
filter.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from manyarch.sandbox import seccomp
from manyarch.sandbox.confine import Security

_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_PR_SET_PDEATHSIG = 1
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_CAP_VERSION_3 = 0x20080522
#: nsenter's: the user namespace last, as the host's root joins the others first
_NAMESPACES = (
    ("net", 0x40000000), ("uts", 0x04000000), ("ipc", 0x08000000), ("pid", 0x20000000),
    ("mnt", 0x00020000),
)  # fmt: skip
_CLONE_NEWUSER = 0x10000000
#: the helper's own environment variable holding what to do (not its command line:
#: ``/proc/PID/environ`` is its owner's only, and the command's environment may hold secrets)
_SPEC = "MANYARCH_JOIN"
#: capability numbers, in ``capability.h``'s order
_CAP_ORDER = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)  # fmt: skip
CAP_NUMBERS = {f"CAP_{name}": i for i, name in enumerate(_CAP_ORDER)}


def own_userns(pid: int) -> bool:
    """Whether ``pid`` runs in a user namespace other than ours (a confined sandbox)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    except OSError:
        return False


def command(
    pid: int,
    argv: Sequence[str],
    *,
    security: Security,
    uid: int,
    gid: int,
    groups: Sequence[int] = (),
    workdir: str = "/",
    env: Mapping[str, str],
) -> tuple[list[str], dict[str, str]]:
    """The helper's command line and environment: ``argv`` run in ``pid``'s sandbox,
    confined as it is, with the environment ``env``."""
    confined = own_userns(pid) and not security.privileged
    spec: dict[str, Any] = {
        "pid": pid,
        "userns": own_userns(pid),
        "uid": uid,
        "gid": gid,
        "groups": list(groups),
        "workdir": workdir or "/",
        "env": dict(env),
        "argv": list(argv),
        "confined": confined,
        "caps": sorted(CAP_NUMBERS[c] for c in security.capabilities()) if uid == 0 else [],
        "seccomp": str(seccomp.compiled(security.capabilities()))
        if confined and security.seccomp
        else "",
    }
    boot = (
        "import sys\nfrom manyarch.sandbox.join import Failed, main\ntry:\n sys.exit(main())\n"
        "except Failed as e:\n sys.stderr.write(f'manyarch: {e}\\n')\n sys.exit(e.code)\n"
    )
    # -P: no module from the caller's working directory shadows the standard library's
    return [sys.executable, "-P", "-c", boot], {**os.environ, _SPEC: json.dumps(spec)}


class Failed(Exception):
    """The helper could not run the command: the exit status to give (126, 127, 1)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def main() -> int:
    """The helper (see the module's documentation): the command's exit status."""
    spec = json.loads(os.environ[_SPEC])
    libc = ctypes.CDLL(None, use_errno=True)
    bpf = open(spec["seccomp"], "rb").read() if spec["seccomp"] else b""  # noqa: SIM115
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last_cap = int(f.read())
    pid = spec["pid"]
    fds = [(os.open(f"/proc/{pid}/ns/{n}", os.O_RDONLY), t) for n, t in _NAMESPACES]
    if spec["userns"]:
        fds.append((os.open(f"/proc/{pid}/ns/user", os.O_RDONLY), _CLONE_NEWUSER))
    root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
    try:
        later = []
        for fd, nstype in fds:  # nsenter's two passes: a caller that is not root joins
            try:  # a namespace of the sandbox's own once in its user namespace
                _setns(libc, fd, nstype)
            except PermissionError:
                later.append((fd, nstype))
        for fd, nstype in later:
            _setns(libc, fd, nstype)
        os.fchdir(root)
        os.chroot(".")
        os.chdir(spec["workdir"])
    except OSError as e:
        raise Failed(f"cannot enter the container: {e}", 1) from e
    os.close(root)
    child = os.fork()
    if child == 0:
        _become(libc, spec, last_cap, bpf)  # executes the command, or raises Failed
    return _relay(child)


def _become(libc: Any, spec: dict[str, Any], last_cap: int, bpf: bytes) -> None:
    """In the child: the user, the capabilities, no_new_privs, the filter; then exec."""
    try:
        _setgroups(spec["groups"])
        os.setresgid(spec["gid"], spec["gid"], spec["gid"])
        caps = set(spec["caps"])
        if spec["confined"]:
            for cap in range(last_cap + 1):
                if cap not in caps:
                    _prctl(libc, _PR_CAPBSET_DROP, cap)
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
        if spec["confined"]:
            _capset(libc, caps)
            _prctl(libc, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
            for cap in sorted(caps):
                _prctl(libc, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, cap)
            _prctl(libc, _PR_SET_NO_NEW_PRIVS, 1)
        _prctl(libc, _PR_SET_PDEATHSIG, signal.SIGKILL)  # after the credentials: they clear it
        if bpf:
            _load_filter(libc, bpf)
    except OSError as e:
        raise Failed(f"cannot confine the process: {e}", 126) from e
    _default_dispositions(libc)
    argv, env = spec["argv"], spec["env"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        code = 127 if isinstance(e, FileNotFoundError) else 126
        raise Failed(f"{argv[0]}: {e.strerror}", code) from e


#: rt_sigaction(2) by architecture (the host's: this helper runs natively).
_SYS_RT_SIGACTION = {"x86_64": 13, "aarch64": 134}


def _default_dispositions(libc: ctypes.CDLL) -> None:
    """Every signal's disposition back to its default, as a container's process starts.

    Python ignores SIGPIPE and SIGXFSZ; a caller started in the background ignores
    SIGINT and SIGQUIT, nohup SIGHUP, and some callers glibc's own 32 and 33, which
    Python's :func:`signal.signal` cannot touch: none of it is the command's. The raw
    system call (a zeroed ``struct sigaction`` is SIG_DFL) reaches them all.
    """
    number = _SYS_RT_SIGACTION.get(os.uname().machine)
    action = (ctypes.c_ulong * 4)()  # handler, flags, restorer, mask
    for sig in range(1, signal.SIGRTMAX + 1):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        if number is not None:
            libc.syscall(number, sig, ctypes.byref(action), None, 8)
        else:
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_DFL)


def _setgroups(groups: list[int]) -> None:
    """setgroups(2), but where the user namespace refuses it to everyone (a caller that is
    not root: bwrap's own namespace, ``/proc/self/setgroups`` ``deny``), as bwrap's own
    process there."""
    try:
        os.setgroups(groups)
    except PermissionError:
        with open("/proc/self/setgroups") as f:
            if f.read().strip() != "deny":
                raise


def _setns(libc: Any, fd: int, nstype: int) -> None:
    """setns(2) (``os.setns`` is Python 3.12's)."""
    if libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    os.close(fd)


def _prctl(libc: Any, option: int, arg: int = 0, arg3: int = 0) -> None:
    if libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(arg3), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}, {arg}): {os.strerror(err)}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _capset(libc: Any, caps: set[int]) -> None:
    mask = sum(1 << c for c in caps)
    data = (_CapData * 2)()
    for i in range(2):
        word = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = data[i].inheritable = word
    if libc.capset(ctypes.byref(_CapHeader(_CAP_VERSION_3, 0)), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _load_filter(libc: Any, bpf: bytes) -> None:
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _prctl(libc, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog))


def _relay(child: int) -> int:
    """Wait for the command, passing signals sent to this process on; its exit status.

    A terminal's ^C and ^\\ reach the command itself (the same process group): this
    process ignores them, so that a command that ignores them too goes on."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, lambda s, _f: os.kill(child, s))
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    _, status = os.waitpid(child, 0)  # retried when a signal interrupts it (PEP 475)
    if os.WIFSIGNALED(status):
        killed = os.WTERMSIG(status)
        signal.signal(killed, signal.SIG_DFL)
        os.kill(os.getpid(), killed)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1
