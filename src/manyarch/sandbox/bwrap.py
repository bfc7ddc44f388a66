"""Run a process in a rootfs with bubblewrap (own PID, IPC, UTS and mount namespaces;
fresh /proc and /dev, and /tmp unless told). Shared by RUN steps and by containers.

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
    network: str = "host"  # "host" (shared), "none", or "private" (own netns, wired by the caller)
    binds: Sequence[Bind] = ()
    hostname: str = "manyarch"
    #: /etc/hosts to show (None: the rootfs's own)
    hosts: str | None = None
    emulation: bool = True
    resolv_conf: bool = True
    #: setsid: a sandbox cannot reach its caller's terminal (off to give it one)
    new_session: bool = True
    #: more bwrap options, placed before the command (e.g. --json-status-fd, --block-fd)
    bwrap_args: Sequence[str] = ()
    #: resource limits as prlimit(1) sets them before bwrap starts (``--nofile=1024:2048``)
    prlimit: Sequence[str] = ()
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
    args = [
        bwrap_path(),
        "--bind", str(root), "/",
        "--proc", "/proc",
        "--dev", "/dev",
        *(["--tmpfs", "/tmp"] if spec.tmp_tmpfs else []),
        "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--hostname", spec.hostname,
        "--die-with-parent",
    ]  # fmt: skip
    if spec.new_session:
        args.append("--new-session")
    if spec.network in ("none", "private"):
        args.append("--unshare-net")
    elif spec.network != "host":
        raise SandboxError(
            f"unsupported network mode {spec.network!r}", "use host, none or private"
        )
    if spec.resolv_conf and spec.network != "none" and Path("/etc/resolv.conf").exists():
        _ensure_mountpoint(root, "etc/resolv.conf", directory=False, created=created)
        args += ["--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]
    for b in spec.binds:
        _ensure_mountpoint(root, b.dest.lstrip("/"), directory=b.source.is_dir(), created=created)
        args += ["--ro-bind" if b.readonly else "--bind", str(b.source), b.dest]
    for dest, size in spec.tmpfs:
        _ensure_mountpoint(root, dest.lstrip("/"), directory=True, created=created)
        args += [*(["--size", str(size)] if size else []), "--tmpfs", dest]
    if (ids.uid, ids.gid) != (0, 0) or os.geteuid() != 0:
        args += ["--unshare-user", "--uid", str(ids.uid), "--gid", str(ids.gid)]
        if userns_block_fd is not None:
            args += ["--userns-block-fd", str(userns_block_fd)]
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
        sys.executable, "-c",
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


def _on_host_as_user(spec: SandboxSpec, ids: Ids) -> bool:
    """Whether a root caller runs this non-root sandbox as its user on the host itself.

    bwrap maps a sandbox's ``--uid`` onto its caller's uid: run by root, a
    ``USER app`` process would be root on the host, unable to write app's own
    files (owned by 1000, which that map leaves unmapped) and recording what
    it writes as root's. Instead bwrap is started as the user (uid, gid and
    supplementary groups), and :func:`start` writes the identity map into its
    user namespace, so uid 1000 inside is uid 1000 on disk and root's files
    stay root's. bwrap still sets the sandbox up with its namespace's
    capabilities, so a rootfs under root's private directories is reachable.
    Not with emulation off, whose wrapper maps root alone.
    """
    return os.geteuid() == 0 and spec.emulation and (ids.uid, ids.gid) != (0, 0)


_IDENTITY_MAP = "0 0 4294967295\n"


def _ensure_mountpoint(
    root: Path, rel: str, *, directory: bool, created: list[Path] | None
) -> None:
    # bwrap needs the mount point to exist inside a --bind root; create it
    # (and remember what was created, deepest last) so it can be removed.
    target = root / rel
    if target.is_symlink() or target.exists():
        return
    missing = []
    p = target.parent
    while not (p.exists() or p.is_symlink()) and p != root:
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
        raise SandboxError(f"cannot create mount point /{rel} in the rootfs: {e}") from e


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
    **kwargs: Any,
) -> Sandboxed:
    """Start ``spec`` and return once bwrap has made the sandbox (or failed to).

    ``before_spawn`` runs once the mount points are made, before bwrap starts;
    ``kwargs`` go to :class:`subprocess.Popen`. The caller waits on ``.proc``
    and removes ``created`` afterwards.
    """
    ids = resolve_user(spec.rootfs.resolve(), spec.user, runtime=True) if spec.argv else None
    as_user = ids is not None and _on_host_as_user(spec, ids)
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe() if as_user else (-1, -1)
    mine = [info_w] + ([block_r] if as_user else [])
    try:
        extra = ["--info-fd", str(info_w)]
        if spec.hosts is not None:  # a memfd bwrap copies to /etc/hosts (nothing on disk)
            hosts_fd = os.memfd_create("hosts")
            mine.append(hosts_fd)
            os.write(hosts_fd, spec.hosts.encode())
            os.lseek(hosts_fd, 0, os.SEEK_SET)
            _ensure_mountpoint(spec.rootfs.resolve(), "etc/hosts", directory=False, created=created)
            extra = ["--ro-bind-data", str(hosts_fd), "/etc/hosts", *extra]
        spec = replace(spec, bwrap_args=[*spec.bwrap_args, *extra])
        cmd = full_command(spec, created, ids=ids, userns_block_fd=block_r if as_user else None)
        if before_spawn is not None:
            before_spawn()
        if as_user:
            assert ids is not None
            kwargs.update(user=ids.uid, group=ids.gid, extra_groups=list(ids.groups))
        proc: subprocess.Popen[bytes] = subprocess.Popen(cmd, pass_fds=(*mine, *pass_fds), **kwargs)
    except BaseException:
        os.close(info_r)
        if block_w != -1:
            os.close(block_w)
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
    if as_user:
        try:
            if child is not None:
                _write_identity_map(child)
        except BaseException:
            Sandboxed(proc, child).kill()  # nobody else would wait for it
            proc.wait()
            raise
        finally:
            # bwrap goes on (and fails cleanly if the maps could not be written)
            with contextlib.suppress(OSError):
                os.write(block_w, b"1")
            os.close(block_w)
    return Sandboxed(proc, child)


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
