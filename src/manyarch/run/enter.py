"""``manyarch exec``: a command in a running container's namespaces, confined as it is.

The command joins the mount, UTS, IPC, network and PID namespaces of the
container's PID 1 (and its user namespace when it has one of its own), gets
the container's capabilities, ``no_new_privs`` and seccomp filter
(:mod:`manyarch.sandbox.join`; none of them when it runs ``--privileged``), takes
its root and runs as ``-u`` (else the container's user), in ``-w`` (else the
container's working directory), with the container's environment and ``-e``
over it. A foreign image's programs go through the host's binfmt handler, as
the container's own do. The health check runs its probe the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import subprocess
import termios
import threading
import tty as tty_mod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from manyarch.errors import CommandNotRunnable, InvalidArgument
from manyarch.sandbox import join
from manyarch.sandbox.confine import Security
from manyarch.sandbox.users import resolve_user

if TYPE_CHECKING:
    from manyarch.run.container import ContainerState


def command(
    pid: int,
    argv: Sequence[str],
    *,
    root: Path,
    env: Mapping[str, str],
    security: Security,
    user: str = "",
    workdir: str = "/",
) -> tuple[list[str], dict[str, str]]:
    """The command line (and its environment) that runs ``argv`` in ``pid``'s container,
    confined as the container is (:mod:`manyarch.sandbox.join`)."""
    if not argv:
        raise InvalidArgument("exec needs a command", "manyarch exec CONTAINER COMMAND [ARG...]")
    ids = resolve_user(root, user, runtime=True)
    return join.command(
        pid, argv, security=security, uid=ids.uid, gid=ids.gid, groups=ids.groups,
        workdir=workdir or "/", env=environment(env, {}, ids.home),
    )  # fmt: skip


def environment(base: Mapping[str, str], extra: Mapping[str, str], home: str) -> dict[str, str]:
    """The container's environment, ``-e`` over it (HOME as the user's)."""
    env = {"HOME": home, **base}
    env.update(extra)
    return env


def popen(
    state: ContainerState,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    user: str = "",
    workdir: str = "/",
    **kwargs: Any,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in the container; ``kwargs`` go to :class:`subprocess.Popen`."""
    cmd, helper_env = command(
        state.pid, argv, root=state.directory / "rootfs", env=env,
        security=Security.from_json(state.security), user=user, workdir=workdir,
    )  # fmt: skip
    return subprocess.Popen(cmd, env=helper_env, **kwargs)


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
        popen(state, found, env=env, user=user, workdir=workdir, **kwargs)
        return 0
    if not tty:
        if not interactive:
            kwargs["stdin"] = subprocess.DEVNULL
        proc = popen(state, found, env=env, user=user, workdir=workdir, **kwargs)
        return _wait(proc)
    master, secondary = container_pty(state.pid)
    with contextlib.suppress(OSError):
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
    join = kwargs["preexec_fn"]

    def take_terminal() -> None:
        join()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = popen(
        state, found, env=env, user=user, workdir=workdir,
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
