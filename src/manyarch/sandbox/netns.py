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
from collections.abc import Callable
from pathlib import Path

from manyarch.errors import SandboxError, ToolMissing

_CLONE_NEWNET = 0x40000000
#: Docker's per-container network sysctls (moby ``daemon/oci_linux.go``).
SYSCTLS = (
    ("/proc/sys/net/ipv4/ip_unprivileged_port_start", b"0"),
    ("/proc/sys/net/ipv4/ping_group_range", b"0 2147483647"),
)
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
    if os.geteuid() == 0:
        args += ["--runas", "0:0"]
    else:
        fds.append(os.open(f"/proc/{pid}/ns/user", os.O_RDONLY))
        args += ["--userns", f"/proc/self/fd/{fds[1]}"]
    return [*args, "--netns", f"/proc/self/fd/{fds[0]}"]


def connect(pid: int, *, preexec: Callable[[], object] | None = None) -> subprocess.Popen[bytes]:
    """Wire ``pid``'s network namespace outward (no port forwarded in); returns once its
    default route is up. The caller stops it with :func:`stop`."""
    fds: list[int] = []
    try:
        args = pasta_args(pid, fds)
        args += ["-t", "none", "-u", "none", "-T", "none", "-U", "none"]
        proc = subprocess.Popen(
            args,
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=preexec,
        )
    finally:
        for fd in fds:
            os.close(fd)
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
