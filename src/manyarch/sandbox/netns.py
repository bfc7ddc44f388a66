"""A sandbox's own network: a namespace made before bwrap starts, wired outward by pasta.

The namespace is made in bwrap's process before it execs (``unshare(CLONE_NEWNET)``
as the host's root), so it belongs to the host's user namespace: root inside
the sandbox holds no capability over it, and bwrap leaves its loopback to
pasta. Docker's sysctls are set there first: ``ip_unprivileged_port_start=0``
(a non-root image may listen on port 80) and ``ping_group_range`` (ping
without raw sockets).

pasta (Debian's ``passt``, podman's default user-mode network) joins the
namespace while bwrap holds the program, gives it an interface with the host's
addresses and routes, and carries its connections out through the host's own
sockets: the HTTP(S) proxy of the host's environment works as on the host.
``--no-map-gw``: pasta would otherwise map the gateway's address to the host's
loopback, and a RUN step or a container would reach every service that
listens on the host's 127.0.0.1 only (a registry, a package index).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from manyarch.errors import SandboxError, ToolMissing

_CLONE_NEWNET = 0x40000000
#: Docker's per-container network sysctls (moby ``daemon/oci_linux.go``).
SYSCTLS = (
    ("/proc/sys/net/ipv4/ip_unprivileged_port_start", b"0"),
    ("/proc/sys/net/ipv4/ping_group_range", b"0 2147483647"),
)
#: Where a sandbox's DNS queries go when the host's resolver is on its loopback
#: (systemd-resolved's 127.0.0.53): pasta answers there, forwarding to the host's
#: first nameserver (podman's address for the same).
DNS_FORWARD = "169.254.1.1"
#: How long pasta may take to configure the namespace.
READY_TIMEOUT = 10.0


def in_new_netns(then: Callable[[], object] | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` that moves the child into a new network namespace with Docker's
    sysctls, then runs ``then`` (the caller's own ``preexec_fn``)."""
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork

    def preexec() -> None:
        if libc.unshare(_CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
        for path, value in SYSCTLS:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, value)
            finally:
                os.close(fd)
        if then is not None:
            then()

    return preexec


def pasta_path() -> str:
    """The pasta binary, or :class:`ToolMissing`."""
    path = shutil.which("pasta")
    if not path:
        raise ToolMissing("pasta", "passt")
    return path


def pasta_args(pid: int, fds: list[int]) -> list[str]:
    """pasta's options to join ``pid``'s network namespace (files opened into ``fds``).

    As root it must be told to stay root (``--runas 0:0``) and is handed the
    namespace as an open file, because it drops privileges before it would
    open ``/proc/PID/ns/net`` itself.
    """
    fds.append(os.open(f"/proc/{pid}/ns/net", os.O_RDONLY))
    args = [pasta_path(), "--foreground", "--quiet", "--config-net", "--no-map-gw"]
    if needs_dns_forward():
        # only then: pasta answers every query to the host's nameserver as coming from
        # this address, which a resolver that asked the nameserver itself drops (glibc
        # connects its socket), so lookups time out with a non-loopback nameserver
        args += ["--dns-forward", DNS_FORWARD]
    if os.geteuid() == 0:
        args += ["--runas", "0:0"]
    else:
        fds.append(os.open(f"/proc/{pid}/ns/user", os.O_RDONLY))
        args += ["--userns", f"/proc/self/fd/{fds[1]}"]
    return [*args, "--netns", f"/proc/self/fd/{fds[0]}"]


def spawn_pasta(
    pid: int, more: Sequence[str], preexec: Callable[[], object] | None = None
) -> subprocess.Popen[bytes]:
    """pasta on ``pid``'s network namespace with ``more`` options (ports, a log); its
    stderr is piped for the caller's error."""
    fds: list[int] = []
    try:
        return subprocess.Popen(
            [*pasta_args(pid, fds), *more],
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=preexec,
        )
    finally:
        for fd in fds:
            os.close(fd)


def connect(pid: int, *, preexec: Callable[[], object] | None = None) -> subprocess.Popen[bytes]:
    """Wire ``pid``'s network namespace outward (no port forwarded in); returns once its
    default route is up. The caller stops it with :func:`stop`."""
    proc = spawn_pasta(pid, ["-t", "none", "-u", "none", "-T", "none", "-U", "none"], preexec)
    try:
        wait_ready(pid, proc)
    except BaseException:
        stop(proc)
        raise
    return proc


def wait_ready(pid: int, proc: subprocess.Popen[bytes], timeout: float = READY_TIMEOUT) -> None:
    """Wait until pasta has given ``pid``'s namespace its default route (its last step)."""
    route = Path(f"/proc/{pid}/net/route")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace")
            raise SandboxError(f"pasta could not set up the network: {err.strip() or 'no reason'}")
        try:
            lines = route.read_text().splitlines()[1:]
        except OSError:
            return  # the sandbox is gone already: its own exit status tells
        if any(len(f) > 1 and f[1] == "00000000" for f in (ln.split() for ln in lines)):
            return
        time.sleep(0.002)
    raise SandboxError(f"pasta did not set up the network within {timeout:g} s")


def needs_dns_forward(path: Path = Path("/etc/resolv.conf")) -> bool:
    """Whether sandboxes are given :data:`DNS_FORWARD` (the host's resolver is on its
    loopback, see :func:`resolv_conf`)."""
    try:
        return resolv_conf(path.read_text(errors="replace")) is not None
    except OSError:
        return False


def resolv_conf(text: str) -> str | None:
    """The resolv.conf a sandbox with its own network sees, when the host's will not do.

    A nameserver on the host's loopback is out of the sandbox's reach; when
    every nameserver is one, they give way to :data:`DNS_FORWARD` (search and
    options kept), as Docker and podman do. None: the host's file as it is.
    """
    lines = text.splitlines()
    servers = [
        ln.split()[1] for ln in lines if ln.split()[:1] == ["nameserver"] and len(ln.split()) > 1
    ]
    if not servers or not all(s.startswith("127.") or s == "::1" for s in servers):
        return None
    kept = [ln for ln in lines if ln.split()[:1] != ["nameserver"]]
    return "\n".join([f"nameserver {DNS_FORWARD}", *kept]) + "\n"


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a pasta (it holds the namespace open, so it never ends by itself)."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


def join_netns(path: str, then: Callable[[], object] | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` that moves the child into the network namespace at ``path``."""
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns(CLONE_NEWNET) failed")
        finally:
            os.close(fd)
        if then is not None:
            then()

    return preexec


#: The holder: idle in the namespace until its stdin ends (the build closed it, or
#: died), then it kills the pasta whose pid it was told (pasta unshares a user
#: namespace of its own to sandbox itself, which clears its parent-death signal).
_HOLDER = 'read pid; cat >/dev/null; kill -KILL "$pid" 2>/dev/null'


class Network:
    """A network namespace held open by an idle process and wired by pasta.

    The RUN steps of one platform run one after the other in it: each step's
    processes die with its PID namespace, and root inside holds no capability
    over a namespace the host's user namespace owns (no address, route or
    sysctl can change), so the next step finds it as new, without paying
    pasta's start (tens of milliseconds) again. Should :meth:`close` never run
    (the build killed), the holder reads the end of its stdin and kills pasta.
    """

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            [shutil.which("sh") or "/bin/sh", "-c", _HOLDER],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=in_new_netns(),
        )
        assert self.holder.stdin is not None
        self.pasta: subprocess.Popen[bytes] | None = None  # for close() if pasta fails
        try:
            self.pasta = connect(self.holder.pid)
            self.holder.stdin.write(f"{self.pasta.pid}\n".encode())
            self.holder.stdin.flush()
        except BaseException:
            self.close()
            raise

    @property
    def path(self) -> str:
        """The namespace, for :func:`join_netns`."""
        return f"/proc/{self.holder.pid}/ns/net"

    def alive(self) -> bool:
        """Whether the namespace and its pasta are still there."""
        return self.holder.poll() is None and self.pasta is not None and self.pasta.poll() is None

    def close(self) -> None:
        """Let the namespace go, then stop pasta (the holder first: it must not kill a pid
        pasta no longer holds)."""
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait()
        if self.holder.stdin is not None:
            with contextlib.suppress(OSError):
                self.holder.stdin.close()
        stop(self.pasta)
        self.pasta = None
