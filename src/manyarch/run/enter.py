"""``manyarch exec``: a command in a running container's namespaces (nsenter).

The command joins the mount, UTS, IPC, network and PID namespaces of the
container's PID 1 (and its user namespace when it has one of its own), takes
its root and runs as ``-u`` (else the container's user), in ``-w`` (else the
container's working directory), with the container's environment and ``-e``
over it. A foreign image's programs go through the host's binfmt handler, as
the container's own do. The health check runs its probe the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import struct
import subprocess
import termios
import threading
import tty as tty_mod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from manyarch.errors import CommandNotRunnable, InvalidArgument, ToolMissing
from manyarch.sandbox.users import resolve_user

if TYPE_CHECKING:
    from manyarch.run.container import ContainerState


def nsenter_path() -> str:
    """The nsenter binary, or :class:`ToolMissing`."""
    path = shutil.which("nsenter")
    if not path:
        raise ToolMissing("nsenter", "util-linux")
    return path


def _own_userns(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    except OSError:
        return False


def command(
    pid: int,
    argv: Sequence[str],
    *,
    root: Path,
    user: str = "",
    workdir: str = "/",
) -> list[str]:
    """The nsenter command line that runs ``argv`` in ``pid``'s container."""
    if not argv:
        raise InvalidArgument("exec needs a command", "manyarch exec CONTAINER COMMAND [ARG...]")
    ids = resolve_user(root, user, runtime=True)
    args = [nsenter_path(), "-t", str(pid), "-m", "-u", "-i", "-n", "-p"]
    if _own_userns(pid):
        args.append("-U")
    args += ["-r", f"--wdns={workdir or '/'}", "-S", str(ids.uid), "-G", str(ids.gid)]
    return [*args, "--", *argv]


def environment(base: Mapping[str, str], extra: Mapping[str, str], home: str) -> dict[str, str]:
    """The container's environment, ``-e`` over it (HOME as the user's)."""
    env = {"HOME": home, **base}
    env.update(extra)
    return env


def popen(
    pid: int,
    argv: Sequence[str],
    *,
    root: Path,
    env: Mapping[str, str],
    user: str = "",
    workdir: str = "/",
    **kwargs: Any,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in the container; ``kwargs`` go to :class:`subprocess.Popen`."""
    ids = resolve_user(root, user, runtime=True)
    cmd = command(pid, argv, root=root, user=user, workdir=workdir)
    return subprocess.Popen(cmd, env=environment(env, {}, ids.home), **kwargs)


def run(
    state: ContainerState,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    user: str,
    workdir: str,
    interactive: bool = False,
    tty: bool = False,
    detach: bool = False,
) -> int:
    """``exec``: run ``argv`` in the container; its exit code (126/127 when it cannot run)."""
    root = state.directory / "rootfs"
    found = _lookup(root, argv, env.get("PATH", ""))
    kwargs: dict[str, Any] = {"preexec_fn": _join_cgroups(state.cgroups)}
    if detach:
        kwargs.update(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        popen(state.pid, found, root=root, env=env, user=user, workdir=workdir, **kwargs)
        return 0
    if not tty:
        if not interactive:
            kwargs["stdin"] = subprocess.DEVNULL
        proc = popen(state.pid, found, root=root, env=env, user=user, workdir=workdir, **kwargs)
        return _wait(proc)
    master, secondary = container_pty(state.pid)
    with contextlib.suppress(OSError):
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
    join = kwargs["preexec_fn"]

    def take_terminal() -> None:
        join()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = popen(
        state.pid, found, root=root, env=env, user=user, workdir=workdir,
        stdin=secondary, stdout=secondary, stderr=secondary, start_new_session=True,
        preexec_fn=take_terminal,
    )  # fmt: skip
    os.close(secondary)
    saved = None
    if interactive and os.isatty(0):
        saved = termios.tcgetattr(0)
        tty_mod.setraw(0)
        threading.Thread(target=_pump, args=(0, master), daemon=True).start()
    try:
        _pump(master, 1)
        return _wait(proc)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)


_TIOCGPTN = getattr(termios, "TIOCGPTN", 0x80045430)
_TIOCSPTLCK = getattr(termios, "TIOCSPTLCK", 0x40045431)


def container_pty(pid: int) -> tuple[int, int]:
    """A pseudo-terminal of the container's own /dev/pts (so ``tty`` names it there),
    else one of the host's."""
    root = f"/proc/{pid}/root/dev"
    try:
        master = os.open(f"{root}/ptmx", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return os.openpty()
    try:
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
        (n,) = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, b"\0" * 4))
        secondary = os.open(f"{root}/pts/{n}", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        os.close(master)
        return os.openpty()
    return master, secondary


def _wait(proc: subprocess.Popen[bytes]) -> int:
    code = proc.wait()
    return 128 - code if code < 0 else code


def _pump(src: int, dest: int) -> None:
    while True:
        try:
            data = os.read(src, 65536)
        except OSError:  # EIO: the terminal's other side is gone
            return
        if not data:
            return
        try:
            os.write(dest, data)
        except OSError:
            return


def _join_cgroups(paths: Sequence[str]) -> Callable[[], None]:
    def join() -> None:
        for p in paths:
            with contextlib.suppress(OSError):
                Path(p, "cgroup.procs").write_text(str(os.getpid()))

    return join


def _lookup(root: Path, argv: Sequence[str], path_env: str) -> list[str]:
    """The program looked up in the container's PATH; docker's 126/127 as errors."""
    from manyarch.errors import SandboxError
    from manyarch.run.container import resolve_command

    try:
        return resolve_command(root, argv, path_env)
    except SandboxError as e:
        raise CommandNotRunnable(e.message, 127 if "not found" in e.message else 126) from e
