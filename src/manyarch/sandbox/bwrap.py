"""Run a process in a rootfs with bubblewrap (own user, PID, IPC, UTS, mount and
network namespaces; fresh /proc and /dev, and /tmp for containers). Shared by RUN
steps, containers and host tools.

The user namespace maps every id to itself: bwrap holds (``--userns-block-fd``)
until its privileged caller has written ``0 0 4294967295`` into its maps, so
root inside owns files as root on disk and ``USER app`` as 1000, yet no
process inside holds a capability over the host's namespaces (mounts,
``open_by_handle_at``, sysctls, kernel keyrings...). Capabilities, the seccomp
filter and the masked /proc follow Docker's defaults (:mod:`manyarch.sandbox.confine`).

Foreign architectures run through the host's binfmt_misc handlers (registered
with the ``F`` flag, so the interpreter is found inside the sandbox). With
``emulation=False`` the sandbox runs in a user namespace that mounts a fresh
binfmt_misc (Linux >= 6.7: per user namespace) which has no handlers, so the
kernel itself answers ``Exec format error``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from manyarch.errors import SandboxError, ToolMissing
from manyarch.sandbox import confine, netns, seccomp
from manyarch.sandbox.confine import Security
from manyarch.sandbox.netns import in_new_netns, join_netns
from manyarch.sandbox.rootpath import resolve_in_root
from manyarch.sandbox.users import Ids, resolve_user

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Bind:
    """A host path mounted into the sandbox."""

    source: Path
    dest: str
    readonly: bool = True


@dataclass(frozen=True)
class SandboxSpec:
    """Everything a sandboxed process needs; the rootfs is used in place."""

    rootfs: Path
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"
    user: str = ""
    #: "host" (shared), "none" (loopback only), or "private" (a network namespace made
    #: before bwrap starts, wired by the caller: pasta, see :mod:`manyarch.sandbox.netns`)
    network: str = "host"
    binds: Sequence[Bind] = ()
    hostname: str = "manyarch"
    #: /etc/hosts to show, with /etc/hostname (None: the rootfs's own)
    hosts: str | None = None
    emulation: bool = True
    resolv_conf: bool = True
    #: setsid: a sandbox cannot reach its caller's terminal (off to give it one)
    new_session: bool = True
    #: more bwrap options, placed before the command (e.g. --json-status-fd, --block-fd)
    bwrap_args: Sequence[str] = ()
    #: resource limits as prlimit(1) sets them before bwrap starts (``--nofile=1024:2048``)
    prlimit: Sequence[str] = ()
    #: a "private" network to join (``/proc/PID/ns/net``, see :class:`netns.Network`)
    #: instead of a new one
    netns: str | None = None
    #: capabilities, seccomp, masked /proc; privileged: as the host's root (explicit only)
    security: Security = field(default_factory=Security)
    #: a fresh tmpfs on /tmp (containers); RUN steps keep the image's /tmp, as BuildKit
    tmp_tmpfs: bool = True
    #: more tmpfs mounts: (path, size in bytes or None), after the binds (RUN --mount=type=tmpfs)
    tmpfs: Sequence[tuple[str, int | None]] = ()


def bwrap_path() -> str:
    """The bwrap binary, or :class:`ToolMissing`."""
    path = shutil.which("bwrap")
    if not path:
        raise ToolMissing("bwrap", "bubblewrap")
    return path


def command(
    spec: SandboxSpec,
    created: list[Path] | None = None,
    *,
    ids: Ids | None = None,
    userns_block_fd: int | None = None,
) -> list[str]:
    """The bwrap command line for ``spec`` (without the emulation-off wrapper).

    Mount points it had to create in the rootfs are appended to ``created`` so
    the caller removes them afterwards (they must not end up in a layer).
    ``ids``: ``spec.user`` already resolved. ``userns_block_fd``: bwrap waits
    on it until the caller has written the user namespace's maps (see :func:`start`).
    """
    if not spec.argv:
        raise SandboxError("no command to run", "give the image a CMD or ENTRYPOINT, or a command")
    root = spec.rootfs.resolve()
    if ids is None:
        ids = resolve_user(root, spec.user, runtime=True)
    confined = not spec.security.privileged
    for name in ("proc", "dev"):
        if (root / name).is_symlink():  # bwrap would mount (and mkdir) where it points
            raise SandboxError(f"the image's /{name} is a symbolic link", "it must be a directory")
    tmp = "/tmp"
    if spec.tmp_tmpfs and (root / "tmp").is_symlink():
        tmp = _mountpoint(root, tmp, directory=True, created=created)
    args = [
        bwrap_path(),
        "--bind", str(root), "/",
        "--proc", "/proc",
        *(confine.proc_args() if confined else ()),
        "--dev", "/dev",
        *(["--tmpfs", tmp] if spec.tmp_tmpfs else []),
        "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--hostname", spec.hostname,
        "--die-with-parent",
    ]  # fmt: skip
    if spec.new_session:
        args.append("--new-session")
    if spec.network == "none" or (spec.network == "private" and not _makes_netns(spec)):
        args.append("--unshare-net")
    elif spec.network not in ("host", "private"):
        raise SandboxError(
            f"unsupported network mode {spec.network!r}", "use host, none or private"
        )
    if spec.resolv_conf and spec.network != "none" and Path("/etc/resolv.conf").exists():
        dest = _mountpoint(root, "/etc/resolv.conf", directory=False, created=created)
        args += ["--ro-bind", "/etc/resolv.conf", dest]
    for b in spec.binds:
        dest = _mountpoint(root, b.dest, directory=b.source.is_dir(), created=created)
        args += ["--ro-bind" if b.readonly else "--bind", str(b.source), dest]
    for tdest, size in spec.tmpfs:
        tdest = _mountpoint(root, tdest, directory=True, created=created)
        args += [*(["--size", str(size)] if size else []), "--tmpfs", tdest]
    if (ids.uid, ids.gid) != (0, 0) or os.geteuid() != 0 or _identity_mapped(spec, ids):
        args += ["--unshare-user", "--uid", str(ids.uid), "--gid", str(ids.gid)]
        if userns_block_fd is not None:
            args += ["--userns-block-fd", str(userns_block_fd)]
    if confined:
        args += confine.cap_args(spec.security, ids.uid)
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": spec.hostname, "HOME": ids.home}
    env.update(spec.env)
    args.append("--clearenv")
    for k, v in env.items():
        args += ["--setenv", k, v]
    args += [*spec.bwrap_args, "--chdir", spec.cwd or "/", "--", *spec.argv]
    return args


def emulation_off_wrapper() -> list[str]:
    """Prefix that runs a command in a user namespace with a fresh, empty binfmt_misc."""
    unshare = shutil.which("unshare")
    if not unshare:
        raise ToolMissing("unshare", "util-linux")
    return [
        unshare, "--user", "--map-root-user", "--mount", "--",
        sys.executable, "-P", "-c",
        "import os,subprocess,sys;"
        "subprocess.run(['mount','-t','binfmt_misc','binfmt_misc','/proc/sys/fs/binfmt_misc'],"
        "check=True);os.execv(sys.argv[1],sys.argv[1:])",
    ]  # fmt: skip


def full_command(
    spec: SandboxSpec,
    created: list[Path] | None = None,
    *,
    ids: Ids | None = None,
    userns_block_fd: int | None = None,
) -> list[str]:
    """The command to spawn: bwrap, wrapped when emulation is off."""
    cmd = command(spec, created, ids=ids, userns_block_fd=userns_block_fd)
    if spec.prlimit:
        prlimit = shutil.which("prlimit")
        if not prlimit:
            raise ToolMissing("prlimit", "util-linux")
        cmd = [prlimit, *spec.prlimit, "--", *cmd]
    return [*emulation_off_wrapper(), *cmd] if not spec.emulation else cmd


def _identity_mapped(spec: SandboxSpec, ids: Ids) -> bool:
    """Whether a root caller writes the identity map of this sandbox's user namespace.

    Always, but for root inside a privileged sandbox (the host's root, by the
    user's choice) and with emulation off (its wrapper's namespace maps root).
    A non-root user's bwrap is started as that user (uid, gid and supplementary
    groups): bwrap maps its sandbox's ``--uid`` onto its caller's uid, so uid
    1000 inside is uid 1000 on disk. bwrap still sets the sandbox up with its
    namespace's capabilities, so a rootfs under root's private directories is
    reachable.
    """
    if os.geteuid() != 0 or not spec.emulation:
        return False
    return not spec.security.privileged or (ids.uid, ids.gid) != (0, 0)


def _makes_netns(spec: SandboxSpec) -> bool:
    """Whether a "private" network is a namespace made before bwrap starts (as root).

    Made by the caller's side, it belongs to the host's user namespace: pasta
    configures it (and its loopback) before bwrap starts the program, and root
    inside holds no capability over it.
    """
    return spec.network == "private" and os.geteuid() == 0


_IDENTITY_MAP = "0 0 4294967295\n"


def _mountpoint(root: Path, dest: str, *, directory: bool, created: list[Path] | None) -> str:
    """Where in ``root`` to mount ``dest``: made when missing (and added to ``created``,
    deepest last, so it can be removed: it must not end up in a layer).

    The path is resolved inside the root first, every symlink of the image
    followed as the container would (``resolve_in_root``), and bwrap is given
    the resolved path: an image whose ``/etc/resolv.conf`` or ``/etc`` is a
    link to a host path never makes manyarch create, mount over or remove a
    file of the host (runc's CVE-2021-30465 class).
    """
    target = resolve_in_root(root, dest)
    inside = "/" + os.path.relpath(target, root).removeprefix(".")
    if target.exists():
        return inside
    missing = []
    p = target.parent
    while not p.exists() and p != root:
        missing.append(p)
        p = p.parent
    try:
        for d in reversed(missing):
            d.mkdir()
            if created is not None:
                created.append(d)
        if directory:
            target.mkdir()
        else:
            target.touch()
        if created is not None:
            created.append(target)
    except OSError as e:
        raise SandboxError(f"cannot create mount point {dest} in the rootfs: {e}") from e
    return inside


def remove_created(created: list[Path]) -> None:
    """Remove mount points :func:`command` created, deepest first."""
    for p in reversed(created):
        try:
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            else:
                p.unlink()
        except OSError:
            pass
    created.clear()


class Sandboxed:
    """A started sandbox: bwrap's process and the sandbox's init, which bwrap named.

    Killing bwrap alone is not enough: bwrap's init binds itself to its parent
    (``--die-with-parent``) only once its namespaces are set up, so a bwrap
    killed in those first milliseconds leaves the command running, holding
    its output pipe. :meth:`kill` kills the sandbox's init, which takes the
    whole PID namespace with it.
    """

    def __init__(self, proc: subprocess.Popen[bytes], child_pid: int | None) -> None:
        self.proc = proc
        #: The sandbox's init in our PID namespace; None when bwrap failed before making it.
        self.child_pid = child_pid

    def kill(self) -> None:
        """SIGKILL the sandbox and bwrap; harmless once they have exited."""
        if self.proc.poll() is not None:
            return
        if self.child_pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.child_pid, signal.SIGKILL)
        self.proc.kill()


def start(
    spec: SandboxSpec,
    created: list[Path] | None = None,
    *,
    before_spawn: Callable[[], object] | None = None,
    pass_fds: Sequence[int] = (),
    hold: Callable[[int], object] | None = None,
    **kwargs: Any,
) -> Sandboxed:
    """Start ``spec`` and return once bwrap has made the sandbox (or failed to).

    ``before_spawn`` runs once the mount points are made, before bwrap starts;
    ``hold`` is called with bwrap's pid while bwrap holds the program (``--block-fd``),
    e.g. to wire its network; ``kwargs`` go to :class:`subprocess.Popen`. The
    caller waits on ``.proc`` and removes ``created`` afterwards.
    """
    ids = resolve_user(spec.rootfs.resolve(), spec.user, runtime=True) if spec.argv else None
    as_user = ids is not None and _identity_mapped(spec, ids)
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe() if as_user else (-1, -1)
    hold_r, hold_w = os.pipe() if hold is not None else (-1, -1)
    mine = [info_w] + ([block_r] if as_user else []) + ([hold_r] if hold is not None else [])
    try:
        extra = ["--info-fd", str(info_w)]
        if hold is not None:
            extra += ["--block-fd", str(hold_r)]
        extra = [*_fd_args(spec, ids is not None, created, mine), *extra]
        spec = replace(spec, bwrap_args=[*spec.bwrap_args, *extra])
        cmd = full_command(spec, created, ids=ids, userns_block_fd=block_r if as_user else None)
        if before_spawn is not None:
            before_spawn()
        if as_user and ids is not None and (ids.uid, ids.gid) != (0, 0):
            if _makes_netns(spec):  # the namespace first, as root: Popen's user= comes earlier
                kwargs["preexec_fn"] = _netns(spec, _switch_to(ids, kwargs.get("preexec_fn")))
            else:
                kwargs.update(user=ids.uid, group=ids.gid, extra_groups=list(ids.groups))
        elif _makes_netns(spec):
            kwargs["preexec_fn"] = _netns(spec, kwargs.get("preexec_fn"))
        proc: subprocess.Popen[bytes] = subprocess.Popen(cmd, pass_fds=(*mine, *pass_fds), **kwargs)
    except BaseException:
        for fd in (info_r, block_w, hold_w):
            if fd != -1:
                os.close(fd)
        raise
    finally:
        for fd in mine:
            os.close(fd)
    with os.fdopen(info_r, "rb") as info:
        data = info.read()  # bwrap closes it once written, or exits
    try:
        child: int | None = int(json.loads(data)["child-pid"])
    except (ValueError, KeyError, TypeError):
        child = None
    if as_user:  # bwrap fails cleanly if the maps could not be written
        _then_release(proc, child, _write_identity_map, block_w)
    if hold is not None:
        _then_release(proc, child, hold, hold_w)
    return Sandboxed(proc, child)


def _then_release(
    proc: subprocess.Popen[bytes], child: int | None, work: Callable[[int], object], fd: int
) -> None:
    """``work`` on bwrap's child, then bwrap goes on (a byte on ``fd``); should ``work``
    fail, bwrap is killed and waited for (nobody else would)."""
    try:
        if child is not None:
            work(child)
    except BaseException:
        Sandboxed(proc, child).kill()
        proc.wait()
        raise
    finally:
        with contextlib.suppress(OSError):
            os.write(fd, b"1")
        os.close(fd)


def _fd_args(
    spec: SandboxSpec, runs: bool, created: list[Path] | None, fds: list[int]
) -> list[str]:
    """bwrap's options that read a file descriptor (opened into ``fds``): the seccomp
    filter, and /etc/hosts, /etc/hostname and (a private network's, when the host's
    resolver is on its loopback) /etc/resolv.conf as memfds bwrap copies (nothing on disk)."""
    args: list[str] = []
    if runs and not spec.security.privileged and spec.security.seccomp:
        fds.append(seccomp.open_filter(spec.security.capabilities()))
        args += ["--seccomp", str(fds[-1])]
    files: list[tuple[str, str]] = []
    if spec.hosts is not None:
        files += [("hosts", spec.hosts), ("hostname", spec.hostname + "\n")]
    if spec.network == "private" and spec.resolv_conf and Path("/etc/resolv.conf").exists():
        own = netns.resolv_conf(Path("/etc/resolv.conf").read_text(errors="replace"))
        files += [("resolv.conf", own)] if own is not None else []
    for name, text in files:
        fds.append(os.memfd_create(name))
        os.write(fds[-1], text.encode())
        os.lseek(fds[-1], 0, os.SEEK_SET)
        dest = _mountpoint(spec.rootfs.resolve(), f"/etc/{name}", directory=False, created=created)
        args = ["--ro-bind-data", str(fds[-1]), dest, *args]
    return args


def _netns(spec: SandboxSpec, then: Callable[[], object] | None) -> Callable[[], None]:
    """The ``preexec_fn`` that gives bwrap its private network: ``spec.netns``, or a new one."""
    return join_netns(spec.netns, then) if spec.netns else in_new_netns(then)


def _switch_to(ids: Ids, then: Callable[[], object] | None) -> Callable[[], None]:
    """A ``preexec_fn`` that becomes ``ids`` (as Popen's ``user=``), then runs ``then``."""

    def switch() -> None:
        os.setgroups(list(ids.groups))
        os.setresgid(ids.gid, ids.gid, ids.gid)
        os.setresuid(ids.uid, ids.uid, ids.uid)
        if then is not None:
            then()

    return switch


def _write_identity_map(pid: int) -> None:
    for name in ("uid_map", "gid_map"):
        try:
            Path(f"/proc/{pid}/{name}").write_text(_IDENTITY_MAP)
        except ProcessLookupError:
            return  # bwrap's child already gone: bwrap reports it
        except OSError as e:
            raise SandboxError(
                f"cannot map the sandbox's users ({name} of process {pid}): {e.strerror}",
                "running a non-root USER needs root (or sudo) for the build",
            ) from e


def run(
    spec: SandboxSpec,
    *,
    stdout: int | None = None,
    stderr: int | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run to completion; the exit status is the sandboxed process's."""
    created: list[Path] = []
    try:
        s = start(spec, created, stdout=stdout, stderr=stderr)
        try:
            out, err = s.proc.communicate(timeout=timeout)
        except BaseException:
            s.kill()
            s.proc.wait()
            raise
        return subprocess.CompletedProcess(s.proc.args, s.proc.returncode, out, err)
    finally:
        remove_created(created)


def popen(spec: SandboxSpec, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start in the background (the caller waits and cleans up)."""
    return start(spec, **kwargs).proc
