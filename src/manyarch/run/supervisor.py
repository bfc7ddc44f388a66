"""Supervising a container: in the foreground (``manyarch run``) or detached (``-d``).

The supervisor mounts the container's view, starts bwrap (the image's
process is PID 1 of its namespace, as under Docker), wires ``-p`` ports with
pasta, forwards SIGINT/SIGTERM/SIGHUP to the process, and when it ends stops
pasta, unmounts, and with ``--rm`` deletes the container. Every helper it
starts dies with it (``PR_SET_PDEATHSIG``); a reaper process cleans up after
a supervisor that was killed.

An exec that fails is reported as runc reports it (``exec /usr/local/bin/uvicorn:
exec format error``): the words are the kernel's errno, as bwrap's ``execvp``
got it, reformatted; for a foreign architecture a hint names the fix.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from manyarch import procs, rootfs
from manyarch.errors import ManyarchError
from manyarch.oci.digest import Digest
from manyarch.oci.manifest import Manifest
from manyarch.oci.platform import Platform, host_platform
from manyarch.run.container import ContainerState, _now, load_state, resolve_command
from manyarch.run.network import allow_low_ports, start_forwarding
from manyarch.sandbox import emulation
from manyarch.sandbox.bwrap import DEFAULT_PATH, Sandboxed, SandboxSpec, start
from manyarch.store import open_store

_EXECVP = re.compile(rb"^bwrap: execvp (?P<path>.*): (?P<error>[^\n]*)\n?$")


def emulation_hint(platform: Platform, emulation_on: bool) -> str | None:
    """What to do when the kernel refused a foreign binary (None when it is native)."""
    if emulation.runs_natively(platform):
        return None
    fix = f"manyarch emulation install {platform.architecture}"
    if not emulation_on:
        return (
            f"emulation was turned off for this run; "
            f"{platform} programs need it on this {host_platform()} host ({fix})"
        )
    return f"{platform} programs need emulation on this {host_platform()} host: {fix}"


def _copy_stderr(src: BinaryIO, dest: int, hint: str | None, seen: list[str]) -> None:
    """Copy the sandbox's stderr, rewording bwrap's exec failure (the first line only)."""
    first = True
    for line in iter(src.readline, b""):
        if first:
            first = False
            m = _EXECVP.match(line)
            if m:
                error = m.group("error").decode(errors="replace")
                text = f"exec {m.group('path').decode(errors='replace')}: {error.lower()}\n"
                seen.append(error)
                if hint and error.lower() == "exec format error":
                    text += f"hint: {hint}\n"
                line = text.encode()
        with contextlib.suppress(OSError):
            os.write(dest, line)


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """(preexec) SIGKILL this child when the process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class Supervisor:
    """Runs one container to its end; the exit code is the container process's."""

    state: ContainerState
    stderr_fd: int = 2
    on_started: Callable[[ContainerState], None] | None = None
    #: where the final state is written as JSON (the starter of a detached --rm container)
    result_fd: int = -1
    _sandbox: Sandboxed | None = None
    _signals: int = 0
    _pending: int = 0
    _pasta: subprocess.Popen[bytes] | None = None
    _copier: threading.Thread | None = None
    #: what bwrap said when the program could not be executed
    _seen: list[str] = field(default_factory=list)

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

    def run(self) -> int:
        """Mount, start, wire, wait, clean up."""
        state = self.state
        store = open_store()
        digest = Digest.parse(state.manifest_digest)
        lower = rootfs.unpacked(store, digest, Manifest.parse(store.read_blob(digest)))
        view = rootfs.View(lower, state.directory)
        state.supervisor = os.getpid()
        state.supervisor_start = procs.start_time(os.getpid())
        state.save()
        lifeline = start_reaper(state.directory)
        code = 125
        try:
            view.mount()
            code = self._run_in(view)
        except ManyarchError as e:
            with contextlib.suppress(OSError):
                os.write(self.stderr_fd, f"error: {e.message}\n".encode())
                if e.hint:
                    os.write(self.stderr_fd, f"hint: {e.hint}\n".encode())
            code = 127 if "executable file not found" in e.message else 125
            state.exec_error = e.message
            if self._sandbox is not None:
                self._sandbox.kill()  # its init too: bwrap alone may leave it running
                self._sandbox.proc.wait()
        finally:
            self._stop_helpers()
            self._finish(view, code)
            os.close(lifeline)
        return code

    def _run_in(self, view: rootfs.View) -> int:
        """Start the container's process on the mounted view; its exit code."""
        state = self.state
        argv = resolve_command(view.path, state.argv, state.env.get("PATH", DEFAULT_PATH))
        ports = state.port_mappings
        status_r, status_w = os.pipe()
        block_r, block_w = os.pipe() if ports else (-1, -1)
        extra = ["--as-pid-1", "--json-status-fd", str(status_w)]
        if ports:
            extra += ["--block-fd", str(block_r)]
        spec = SandboxSpec(
            rootfs=view.path,
            argv=argv,
            env=state.env,
            cwd=state.cwd,
            user=state.user,
            network="private" if ports else "host",
            hostname=state.id[:12],
            emulation=state.emulation,
            bwrap_args=extra,
            # a new session would cut the container off its terminal
            new_session=not state.tty,
        )
        fds = [status_w] + ([block_r] if ports else [])
        try:
            self._sandbox = start(
                spec,
                pass_fds=fds,
                stdin=None if state.interactive or state.tty else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        finally:
            for fd in fds:
                os.close(fd)
        proc = self._sandbox.proc
        assert proc.stderr is not None
        hint = emulation_hint(Platform.parse(state.platform), state.emulation)
        self._copier = threading.Thread(
            target=_copy_stderr,
            args=(proc.stderr, self.stderr_fd, hint, self._seen),
            daemon=True,
        )
        self._copier.start()
        with os.fdopen(status_r, "rb") as status:
            first = status.readline()
            try:
                state.pid = int(json.loads(first)["child-pid"])
            except (ValueError, KeyError):
                state.pid = 0
            state.status = "running"
            state.started = _now()
            state.save()
            if ports and state.pid:
                try:
                    allow_low_ports(state.pid)
                    self._pasta = start_forwarding(
                        state.pid, ports, state.directory / "pasta.log", preexec=die_with_parent
                    )
                finally:
                    os.write(block_w, b"1")
                    os.close(block_w)
            if self._pending and state.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(state.pid, self._pending)
            if self.on_started is not None:
                self.on_started(state)
            return proc.wait()

    def _stop_helpers(self) -> None:
        """Stop pasta; let the stderr copier drain."""
        if self._pasta is not None:
            self._pasta.terminate()
            try:
                self._pasta.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._pasta.kill()
                self._pasta.wait()
        if self._copier is not None:
            self._copier.join(timeout=5)
            if self._seen:
                self.state.exec_error = self._seen[0]

    def _finish(self, view: rootfs.View, code: int) -> None:
        """Record the end; unmount (or, with --rm, delete); tell the starter."""
        state = self.state
        state.status = "exited"
        state.exit_code = code
        state.finished = _now()
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


def supervise_command(*args: str) -> list[str]:
    """The command of a supervisor (or reaper) process: :func:`manyarch.run.supervise.main`."""
    boot = "import sys; from manyarch.run.supervise import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", boot, *args]


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


def reap(directory: Path) -> None:
    """Clean up after a supervisor that died: kill, unmount, and with ``--rm`` delete."""
    state = load_state(directory)
    if state is None or state.status == "exited":
        return
    if state.pid and procs.running(state.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while procs.running(state.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    view = rootfs.View(rootfs.cached_path(Digest.parse(state.manifest_digest)), directory)
    if state.remove:
        view.remove()
        shutil.rmtree(directory, ignore_errors=True)
        return
    view.unmount()
    state.status = "exited"
    state.exit_code = 137
    state.finished = _now()
    state.save()


def run_foreground(state: ContainerState) -> int:
    """Supervise in this process; SIGINT, SIGTERM and SIGHUP go to the container."""
    sup = Supervisor(state)
    old: dict[int, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            old[sig] = signal.signal(sig, lambda s, _f: sup.forward(s))
        return sup.run()
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)


def start_detached(state: ContainerState, *, wait: float = 10.0) -> tuple[ContainerState, bytes]:
    """Start a detached supervisor; returns once the program runs (or has already ended).

    The bytes are what the container wrote meanwhile when it has ended (read even when
    ``--rm`` already deleted its log).
    """
    log = open(state.log, "ab")  # noqa: SIM115 - handed to the child
    reader = open(state.log, "rb")  # noqa: SIM115 - survives the log's removal
    result_r, result_w = os.pipe()
    with log, reader, os.fdopen(result_r, "rb") as result:
        try:
            proc = subprocess.Popen(
                supervise_command(str(state.directory), str(result_w)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
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
                return final, reader.read()
            # bwrap's child execs the program: its name changes from "bwrap" (by comm,
            # which a foreign mount namespace does not disguise as it does exe)
            if current.status == "running" and current.pid:
                comm = procs.comm(current.pid)
                if comm and comm != "bwrap":
                    return current, b""
            time.sleep(0.02)
        return current or state, b""
