"""Supervising a container: in the foreground (``manyarch run``) or detached (``-d``).

The supervisor mounts the container's view, starts bwrap (the image's
process, or with ``--init`` tini, is PID 1 of its namespace, as under Docker),
puts it in its cgroup and wires ``-p`` ports with pasta while bwrap holds it,
runs the health check, copies its output into the log (docker's json-file
format) and, in the foreground, to the terminal, forwards SIGINT/SIGTERM/SIGHUP,
restarts it as ``--restart`` says, and when it ends stops pasta, unmounts,
and with ``--rm`` deletes the container. With ``-t`` the program gets a
pseudo-terminal of its own, sized as the caller's, which the supervisor relays.
Every helper it starts dies with it (``PR_SET_PDEATHSIG``); a reaper process
cleans up after a supervisor that was killed.

An exec that fails is reported as runc reports it (``exec /usr/local/bin/uvicorn:
exec format error``): the words are the kernel's errno, as bwrap's ``execvp``
got it, reformatted; for a foreign architecture a hint names the fix.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time
import tty as ttymod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from manyarch import procs, rootfs
from manyarch.errors import ManyarchError
from manyarch.oci.digest import Digest
from manyarch.oci.manifest import Manifest
from manyarch.oci.platform import Platform
from manyarch.run import cgroups, enter, logs
from manyarch.run.container import (
    STOPPED_MARK,
    ContainerState,
    load_state,
    now,
    resolve_command,
)
from manyarch.run.execerrors import emulation_hint, exec_error_code, reword_exec_error
from manyarch.run.health import Monitor
from manyarch.run.network import allow_low_ports, start_forwarding
from manyarch.run.spec import (
    INIT_PATH,
    init_argv,
    init_binary,
    make_workdir,
    mount_binds,
    name_files,
)
from manyarch.sandbox import netns
from manyarch.sandbox.bwrap import DEFAULT_PATH, Bind, Sandboxed, SandboxSpec, start
from manyarch.sandbox.confine import Security
from manyarch.store import open_store

SUPERVISOR_LOG = "supervisor.log"
#: docker's restart back-off: 100 ms doubling, reset after 10 s of running
_BACKOFF_FIRST, _BACKOFF_MAX, _BACKOFF_RESET = 0.1, 60.0, 10.0


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """(preexec) SIGKILL this child when the process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _take_terminal() -> None:
    """(preexec, after setsid) make stdin, a pty's secondary, the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    die_with_parent()


def copy_winsize(src: int, dest: int) -> None:
    """Give terminal ``dest`` the size of terminal ``src`` (nothing when src is none)."""
    with contextlib.suppress(OSError):
        fcntl.ioctl(dest, termios.TIOCSWINSZ, fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8))


@dataclass
class Supervisor:
    """Runs one container to its end; the exit code is the container process's."""

    state: ContainerState
    #: copy the output to this process's stdout and stderr (the foreground's terminal)
    echo: bool = True
    stdout_fd: int = 1
    stderr_fd: int = 2
    on_started: Callable[[ContainerState], None] | None = None
    #: where the final state is written as JSON (the starter of a detached --rm container)
    result_fd: int = -1
    _sandbox: Sandboxed | None = None
    _signals: int = 0
    _pending: int = 0
    _log: logs.Writer | None = None
    _master: int = -1
    _seen: list[str] = field(default_factory=list)
    #: what serves one start of the program (set by _run_once)
    _copiers: list[threading.Thread] = field(default_factory=list)
    _saved_tty: list[Any] | None = None
    _pasta: subprocess.Popen[bytes] | None = None
    _group: cgroups.Cgroup | None = None
    _monitor: Monitor | None = None

    def forward(self, signum: int) -> None:
        """Pass a signal to the container's process; the second one kills it."""
        self._signals += 1
        pid = self.state.pid
        if pid <= 0:
            self._pending = signum
            return
        sig = signum if self._signals == 1 else signal.SIGKILL
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def resize(self) -> None:
        """The caller's terminal changed size: so does the container's."""
        if self._master >= 0:
            copy_winsize(0, self._master)

    def _say(self, text: str) -> None:
        """A line of manyarch's own, to the log and the terminal."""
        data = text.encode()
        if self._log is not None:
            self._log.write("stderr", data)
        if self.echo:
            with contextlib.suppress(OSError):
                os.write(self.stderr_fd, data)

    def run(self) -> int:
        """Mount, then start (and restart) the program until it ends for good; clean up."""
        state = self.state
        store = open_store()
        digest = Digest.parse(state.manifest_digest)
        lower = rootfs.unpacked(store, digest, Manifest.parse(store.read_blob(digest)))
        view = rootfs.View(lower, state.directory)
        state.supervisor = os.getpid()
        state.supervisor_start = procs.start_time(os.getpid())
        state.save()
        lifeline = start_reaper(state.directory)
        self._log = logs.Writer(state.log)
        code = 125
        try:
            view.mount()
            delay = _BACKOFF_FIRST
            while True:
                began = time.monotonic()
                code = self._run_once(view)
                if not self._restarts(code):
                    break
                if time.monotonic() - began > _BACKOFF_RESET:
                    delay = _BACKOFF_FIRST
                state.restart_count += 1
                state.status = "restarting"
                state.exit_code = code
                state.save()
                time.sleep(delay)
                if (state.directory / STOPPED_MARK).exists():
                    break
                delay = min(delay * 2, _BACKOFF_MAX)
        except ManyarchError as e:
            self._say(f"error: {e.message}\n" + (f"hint: {e.hint}\n" if e.hint else ""))
            state.exec_error = e.message
        finally:
            state.status = "exited"
            state.exit_code = code
            state.finished = now()
            state.pid = 0
            self._log.close()
            if state.remove:
                view.remove()
                shutil.rmtree(state.directory, ignore_errors=True)
            else:
                view.unmount()
                state.save()
            if self.result_fd >= 0:
                with contextlib.suppress(OSError):
                    os.write(self.result_fd, json.dumps(asdict(state)).encode())
                    os.close(self.result_fd)
            os.close(lifeline)
        return code

    def _restarts(self, code: int) -> bool:
        """Whether ``--restart`` starts the program again after it ended with ``code``."""
        state = self.state
        if state.exec_error or self._signals or (state.directory / STOPPED_MARK).exists():
            return False
        name, _, count = state.restart.partition(":")
        if name in ("always", "unless-stopped"):
            return True
        if name == "on-failure" and code != 0:
            return not count or state.restart_count < int(count)
        return False

    def _spec(self, view: rootfs.View, extra: list[str]) -> SandboxSpec:
        """The sandbox of one start: the view, mounts, names, the init, bwrap's options."""
        state = self.state
        argv = resolve_command(view.path, state.argv, state.env.get("PATH", DEFAULT_PATH))
        make_workdir(view.path, state.cwd)
        binds, tmpfs = mount_binds(state.mount_list, view.path)
        binds += name_files(
            state.directory, state.hostname, [(n, ip) for n, ip in state.extra_hosts],
            host_network=state.network == "host",
        )  # fmt: skip
        if state.init:
            binds.append(Bind(init_binary(), INIT_PATH, readonly=True))
            argv = init_argv(argv)
        extra = [*extra, *tmpfs]
        if state.read_only:
            extra += ["--remount-ro", "/"]
        return SandboxSpec(
            rootfs=view.path,
            argv=argv,
            env=state.env,
            cwd=state.cwd,
            user=state.user,
            network={"host": "host", "none": "none"}.get(state.network, "private"),
            security=Security.from_json(state.security),
            hostname=state.hostname or state.id[:12],
            emulation=state.emulation,
            binds=binds,
            bwrap_args=extra,
            # a new session would cut the container off its terminal
            new_session=not state.tty,
        )

    def _run_once(self, view: rootfs.View) -> int:
        """Start the program once and wait for it; its exit code."""
        state = self.state
        self._seen, self._copiers, self._saved_tty = [], [], None
        self._pasta, self._group, self._monitor = None, None, None
        code = 125
        status_r, status_w = os.pipe()
        # bwrap holds the program until its cgroup and ports are ready
        hold = bool(state.limits) or state.network not in ("host", "none")
        block_r, block_w = os.pipe() if hold else (-1, -1)
        fds = [status_w] + ([block_r] if hold else [])
        try:
            extra = ["--as-pid-1", "--json-status-fd", str(status_w)]
            if hold:
                extra += ["--block-fd", str(block_r)]
            spec = self._spec(view, extra)
            if state.limits:
                self._group = cgroups.create(state.id[:12], state.limits)
                state.cgroups = [str(p) for p in self._group.paths]
            kwargs, secondary = self._stdio()
            try:
                self._sandbox = start(spec, pass_fds=fds, start_new_session=True, **kwargs)
            finally:
                for fd in [*fds, secondary]:
                    if fd >= 0:
                        os.close(fd)
            proc = self._sandbox.proc
            self._copy_output(proc)
            with os.fdopen(status_r, "rb") as status:
                self._running(status.readline())
                if hold and state.pid:
                    try:
                        self._wire()
                    finally:
                        os.write(block_w, b"1")
                        os.close(block_w)
                        block_w = -1
                self._started()
                code = proc.wait()
        except ManyarchError as e:
            self._say(f"error: {e.message}\n" + (f"hint: {e.hint}\n" if e.hint else ""))
            code = exec_error_code(e.message) if e.message.startswith("exec") else 125
            state.exec_error = e.message
            if self._sandbox is not None:
                self._sandbox.kill()  # its init too: bwrap alone may leave it running
                self._sandbox.proc.wait()
        finally:
            if block_w >= 0:
                os.close(block_w)
            code = self._after(code)
        return code

    def _stdio(self) -> tuple[dict[str, Any], int]:
        """How the program's stdin/out/err are given: a pty of its own (-t), else pipes."""
        if self.state.tty:
            self._master, secondary = os.openpty()
            copy_winsize(0 if self.echo else -1, secondary)
            kwargs: dict[str, Any] = {"preexec_fn": _take_terminal}
            kwargs.update(stdin=secondary, stdout=secondary, stderr=secondary)
            return kwargs, secondary
        stdin = None if self.state.interactive else subprocess.DEVNULL
        kwargs = {"stdin": stdin, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        kwargs["preexec_fn"] = die_with_parent
        return kwargs, -1

    def _copy_output(self, proc: subprocess.Popen[bytes]) -> None:
        """Start the threads that copy the output (and, with -it, the terminal's input)."""
        state = self.state
        hint = emulation_hint(Platform.parse(state.platform), state.emulation)
        if state.tty:
            master = os.fdopen(self._master, "rb", buffering=0, closefd=False)
            self._copiers.append(self._copier(master, "stdout", self.stdout_fd, hint))
            if state.interactive and self.echo and os.isatty(0):
                self._saved_tty = termios.tcgetattr(0)
                ttymod.setraw(0)
                threading.Thread(target=self._feed, args=(self._master,), daemon=True).start()
            return
        assert proc.stdout is not None and proc.stderr is not None
        self._copiers.append(self._copier(proc.stdout, "stdout", self.stdout_fd, None))
        self._copiers.append(self._copier(proc.stderr, "stderr", self.stderr_fd, hint))

    def _running(self, status_line: bytes) -> None:
        """bwrap said which process is the container's PID 1: the state says it runs."""
        state = self.state
        try:
            state.pid = int(json.loads(status_line)["child-pid"])
        except (ValueError, KeyError):
            state.pid = 0
        state.status = "running"
        state.started = now()
        state.oom_killed = False
        state.save()

    def _wire(self) -> None:
        """While bwrap holds the program: its cgroup, and pasta for its ports."""
        state = self.state
        if self._group is not None:
            self._group.add(state.pid)
        if state.ports:
            allow_low_ports(state.pid)
            self._pasta = start_forwarding(
                state.pid, state.port_mappings, state.directory / "pasta.log",
                preexec=die_with_parent,
            )  # fmt: skip
        elif state.network not in ("host", "none"):
            self._pasta = netns.connect(state.pid, preexec=die_with_parent)

    def _started(self) -> None:
        """The program runs: a signal that came early, the health check, the caller's hook."""
        state = self.state
        if self._pending and state.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.pid, self._pending)
        check = state.health
        if check is not None and state.pid:
            self._monitor = Monitor(check, state.directory, self._probe)
            self._monitor.start()
        if self.on_started is not None:
            self.on_started(state)

    def _after(self, code: int) -> int:
        """Stop what served this start; the exit code (126/127 for bwrap's exec failure)."""
        state = self.state
        if self._monitor is not None:
            self._monitor.stopped.set()
        if self._pasta is not None:
            self._pasta.terminate()
            try:
                self._pasta.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._pasta.kill()
                self._pasta.wait()
        for c in self._copiers:
            c.join(timeout=5)
        if self._saved_tty is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self._saved_tty)
        if self._master >= 0:
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = -1
        if self._group is not None:
            state.oom_killed = self._group.oom_killed()
            self._group.remove()
        if self._seen and not state.exec_error:
            state.exec_error = self._seen[0]
            if code == 1:
                code = exec_error_code(self._seen[0])
        self._sandbox = None
        return code

    def _copier(self, src: IO[bytes], stream: str, dest: int, hint: str | None) -> threading.Thread:
        """A thread copying one output stream to the log (and the terminal)."""

        def copy() -> None:
            head: bytes | None = (
                b""  # the start of the stream, held while it may be bwrap's exec failure
            )
            read = getattr(src, "read1", src.read)
            while True:
                try:
                    chunk = read(65536)
                except OSError:  # EIO: the pty's last writer is gone
                    chunk = b""
                if head is not None:
                    # bwrap writes its exec failure as one line, alone, in several writes
                    # (stderr is unbuffered): hold the start until the line is whole
                    head += chunk
                    if chunk and _may_be_exec_failure(head) and b"\n" not in head:
                        continue
                    line, nl, rest = head.partition(b"\n")
                    chunk = reword_exec_error(line + nl, hint, self._seen) + rest
                    head = None
                if not chunk:
                    break
                if self._log is not None:
                    self._log.write(stream, chunk)
                if self.echo:
                    with contextlib.suppress(OSError):
                        os.write(dest, chunk)

        t = threading.Thread(target=copy, daemon=True)
        t.start()
        return t

    @staticmethod
    def _feed(master: int) -> None:
        """Copy this process's stdin (a terminal in raw mode) to the container's."""
        while True:
            try:
                data = os.read(0, 4096)
                if not data:
                    return
                os.write(master, data)
            except OSError:
                return

    def _probe(self, argv: list[str], timeout: float) -> tuple[int, bytes]:
        """Run the health check's command in the container."""
        state = self.state
        proc = enter.popen(
            state,
            argv,
            env=state.env,
            user=state.user,
            workdir=state.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        return proc.returncode, out


def supervise_command(*args: str) -> list[str]:
    """The command of a supervisor (or reaper) process: :func:`manyarch.run.supervise.main`."""
    boot = "import sys; from manyarch.run.supervise import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-P", "-c", boot, *args]  # -P: nothing from the cwd


def start_reaper(directory: Path) -> int:
    """Start the process that cleans up if the supervisor dies; returns the supervisor's end.

    The reaper waits for EOF on a pipe only the supervisor holds open, so it wakes
    however the supervisor ends (SIGKILL included), and finds nothing to do when
    the supervisor cleaned up itself.
    """
    r, w = os.pipe()
    try:
        subprocess.Popen(
            supervise_command("--reap", str(directory), str(r)),
            pass_fds=(r,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        os.close(r)
    return w


def run_foreground(state: ContainerState) -> int:
    """Supervise in this process; SIGINT, SIGTERM and SIGHUP go to the container."""
    sup = Supervisor(state)
    old: dict[int, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            old[sig] = signal.signal(sig, lambda s, _f: sup.forward(s))
        if state.tty:
            old[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda _s, _f: sup.resize())
        return sup.run()
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)


def output_of(state: ContainerState) -> bytes:
    """What a container wrote, both streams in order."""
    return b"".join(r.data for r in logs.read(state.log))


def start_detached(state: ContainerState, *, wait: float = 10.0) -> tuple[ContainerState, bytes]:
    """Start a detached supervisor; returns once the program runs (or has already ended).

    The bytes are what the container wrote meanwhile when it has ended (read even when
    ``--rm`` already deleted its log).
    """
    (state.directory / STOPPED_MARK).unlink(missing_ok=True)
    state.log.touch()
    reader = open(state.log, "rb")  # noqa: SIM115 - survives the log's removal
    own_log = open(state.directory / SUPERVISOR_LOG, "ab")  # noqa: SIM115 - handed to the child
    result_r, result_w = os.pipe()
    with own_log, reader, os.fdopen(result_r, "rb") as result:
        try:
            proc = subprocess.Popen(
                supervise_command(str(state.directory), str(result_w)),
                stdin=subprocess.DEVNULL,
                stdout=own_log,
                stderr=own_log,
                start_new_session=True,
                pass_fds=(result_w,),
            )
        finally:
            os.close(result_w)
        deadline = time.monotonic() + wait
        current: ContainerState | None = state
        while time.monotonic() < deadline:
            current = load_state(state.directory)
            if current is None or current.status == "exited" or proc.poll() is not None:
                proc.wait()
                try:
                    final = ContainerState(**json.loads(result.read()))
                except (ValueError, TypeError):
                    final = replace(state, status="exited", exit_code=proc.returncode)
                records = [logs.decode(line) for line in reader.read().splitlines()]
                return final, b"".join(r.data for r in records if r is not None)
            # bwrap's child execs the program: its name changes from "bwrap" (by comm,
            # which a foreign mount namespace does not disguise as it does exe)
            if current.status == "running" and current.pid:
                comm = procs.comm(current.pid)
                if comm and comm != "bwrap":
                    return current, b""
            time.sleep(0.02)
        return current or state, b""


def start_again(state: ContainerState) -> ContainerState:
    """``manyarch start``: a stopped container runs again, detached (its view kept)."""
    if state.status in ("running", "restarting"):
        return state
    # the last run's supervisor may still be tidying up (its network, its cgroup): its
    # final write of the state must come before this start's, not over it
    deadline = time.monotonic() + 10
    while procs.alive(state.supervisor, state.supervisor_start) and time.monotonic() < deadline:
        time.sleep(0.02)
    state = replace(
        state,
        status="created",
        exit_code=None,
        pid=0,
        exec_error="",
        started="",
        finished="",
        detached=True,
        interactive=False,
    )
    state.save()
    started, output = start_detached(state)
    if started.status == "exited" and (started.exec_error or started.exit_code == 125):
        message = output.decode(errors="replace").strip().splitlines()
        raise ManyarchError(
            f"cannot start container {state.name}: "
            f"{message[-1] if message else started.exec_error or 'it failed'}",
            f"see `manyarch logs {state.name}`",
        )
    return started


_EXEC_FAILURE_PREFIX = b"bwrap: execvp "


def _may_be_exec_failure(head: bytes) -> bool:
    """Whether a stream's first bytes are, or may grow into, bwrap's exec failure line."""
    n = min(len(head), len(_EXEC_FAILURE_PREFIX))
    return head[:n] == _EXEC_FAILURE_PREFIX[:n] and len(head) < 65536
