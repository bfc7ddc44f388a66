"""Containers without a daemon: a directory of state per container, one supervisor each.

A container is ``$XDG_DATA_HOME/manyarch/containers/<id>/``: ``state.json``, the
log of a detached one, and its writable view of the image (see
:mod:`manyarch.rootfs`). Its supervisor is the ``manyarch run`` process in
the foreground, or for ``-d`` a detached supervisor process (:mod:`manyarch.run.supervise`)
writing into the log. The supervisor mounts the view, starts bwrap (the image's
process is PID 1 of its namespace, as under Docker), wires ``-p`` ports with
pasta, forwards SIGINT/SIGTERM/SIGHUP to the process, and when it ends stops
pasta, unmounts, and with ``--rm`` deletes the container. Every helper it starts
dies with it (``PR_SET_PDEATHSIG``), so killing the supervisor, even with
SIGKILL, leaves no process behind; what it could not clean then is swept by
the next ``manyarch ps``, ``run`` or ``rm``.

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
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from manyarch import procs, rootfs
from manyarch.errors import ManyarchError, NotFound, SandboxError, UsageError
from manyarch.oci.digest import Digest
from manyarch.oci.manifest import Manifest
from manyarch.oci.platform import Platform, host_platform
from manyarch.run.network import PortMapping, allow_low_ports, start_forwarding
from manyarch.sandbox import emulation
from manyarch.sandbox.bwrap import DEFAULT_PATH, Sandboxed, SandboxSpec, start
from manyarch.sandbox.rootpath import resolve_in_root
from manyarch.store import data_home, open_store

if TYPE_CHECKING:
    from manyarch.run.local import LocalImage

STATE_FILE = "state.json"
LOG_FILE = "container.log"
DEFAULT_STOP_TIMEOUT = 10.0

_ADJECTIVES = ("brave", "calm", "eager", "fond", "jolly", "keen", "lucid", "merry", "quirky", "zen")
_NAMES = ("babbage", "curie", "hopper", "knuth", "lovelace", "noether", "ritchie", "turing")


def containers_dir() -> Path:
    """Where containers keep their state."""
    return data_home() / "containers"


@dataclass
class ContainerState:
    """What ``state.json`` holds."""

    id: str
    name: str
    image: str
    manifest_digest: str
    platform: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    user: str
    ports: list[dict[str, Any]] = field(default_factory=list)
    remove: bool = False
    emulation: bool = True
    created: str = ""
    status: str = "created"  # created, running, exited
    pid: int = 0
    supervisor: int = 0
    supervisor_start: str = ""
    started: str = ""
    finished: str = ""
    exit_code: int | None = None
    detached: bool = False
    interactive: bool = False
    tty: bool = False
    stop_signal: str = "SIGTERM"  # what `stop` sends first
    exec_error: str = ""  # the program could not be started (the kernel's or runc's words)

    @property
    def directory(self) -> Path:
        """The container's directory."""
        return containers_dir() / self.id

    @property
    def log(self) -> Path:
        """The log of a detached container."""
        return self.directory / LOG_FILE

    @property
    def port_mappings(self) -> list[PortMapping]:
        """The ``-p`` mappings."""
        return [PortMapping.from_json(p) for p in self.ports]

    def save(self) -> None:
        """Write ``state.json`` atomically."""
        path = self.directory / STATE_FILE
        tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, directory: Path) -> ContainerState:
        """Read ``state.json``."""
        try:
            obj = json.loads((directory / STATE_FILE).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise NotFound(f"no container state in {directory}: {e}") from None
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in obj.items() if k in known})


@dataclass(frozen=True)
class RunOptions:
    """The ``docker run`` options manyarch honours."""

    command: Sequence[str] = ()
    entrypoint: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    name: str | None = None
    ports: Sequence[PortMapping] = ()
    remove: bool = False
    detach: bool = False
    emulation: bool = True
    #: -i: the container reads this process's stdin (else /dev/null)
    interactive: bool = False
    #: -t: the container gets this process's terminal (stdin must be one), no new session
    tty: bool = False
    #: --stop-signal (else the image's StopSignal, else SIGTERM)
    stop_signal: str | None = None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime | None:
    """A timestamp of ``state.json``."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def command_of(image: LocalImage, options: RunOptions) -> list[str]:
    """Entrypoint + Cmd as docker combines the image's and the command line's."""
    cfg = image.config.config
    if options.entrypoint is not None:
        entry = [options.entrypoint] if options.entrypoint else []
        cmd = list(options.command)
    else:
        entry = list(cfg.entrypoint or ())
        cmd = list(options.command) if options.command else list(cfg.cmd or ())
    argv = entry + cmd
    if not argv:
        raise UsageError(
            f"{image.name} has neither ENTRYPOINT nor CMD, and no command was given",
            f"give one: manyarch run {image.name} COMMAND",
        )
    return argv


def environment(image: LocalImage, options: RunOptions) -> dict[str, str]:
    """The image's Env, what manyarch says about the image, then ``-e`` (which wins)."""
    env = {"PATH": DEFAULT_PATH}
    env.update(image.config.config.env_dict())
    env.update(
        {
            "MANYARCH_IMAGE_REF": image.name,
            "MANYARCH_IMAGE_DIGEST": str(image.repo_digest or image.descriptor.digest),
            "MANYARCH_IMAGE_PLATFORM": str(image.platform),
        }
    )
    env.update(options.env)
    return env


def stop_signal_of(image: LocalImage, options: RunOptions) -> str:
    """``--stop-signal``, else the image's StopSignal, else SIGTERM, by name."""
    text = options.stop_signal or image.config.config.stop_signal or "SIGTERM"
    return parse_signal(text).name


def parse_signal(text: str) -> signal.Signals:
    """A signal as docker takes it: ``SIGQUIT``, ``QUIT``, ``quit`` or ``3``."""
    word = text.strip().upper()
    try:
        if word.isdigit():
            return signal.Signals(int(word))
        return signal.Signals[word if word.startswith("SIG") else f"SIG{word}"]
    except (KeyError, ValueError):
        raise UsageError(
            f"invalid signal: {text}", "give a name such as SIGTERM or QUIT, or a number"
        ) from None


def _unique_name(wanted: str | None) -> str:
    taken = {s.name for s in list_containers(all_=True)}
    if wanted:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", wanted):
            raise UsageError(
                f"invalid container name {wanted!r}", "use letters, digits, '_', '.' and '-'"
            )
        if wanted in taken:
            raise UsageError(
                f'the container name "{wanted}" is already in use',
                f"remove it (manyarch rm -f {wanted}) or choose another --name",
            )
        return wanted
    while True:
        name = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NAMES)}"
        if name not in taken:
            return name
        name += f"_{secrets.token_hex(2)}"
        if name not in taken:
            return name


def create(image: LocalImage, options: RunOptions) -> ContainerState:
    """Unpack the image (cached) and write the state of a new container."""
    store = open_store()
    rootfs.unpacked(store, image.descriptor.digest, image.manifest)
    cfg = image.config.config
    state = ContainerState(
        id=secrets.token_hex(32),
        name=_unique_name(options.name),
        image=image.name,
        manifest_digest=str(image.descriptor.digest),
        platform=str(image.platform),
        argv=command_of(image, options),
        env=environment(image, options),
        cwd=options.workdir or cfg.working_dir or "/",
        user=options.user if options.user is not None else cfg.user,
        ports=[p.with_host_port().to_json() for p in options.ports],
        remove=options.remove,
        emulation=options.emulation,
        created=_now(),
        detached=options.detach,
        stop_signal=stop_signal_of(image, options),
        interactive=options.interactive and not options.detach,
        tty=options.tty and not options.detach,
    )
    state.directory.mkdir(parents=True)
    state.save()
    return state


# -- the command inside the rootfs ------------------------------------------------


def _resolve_in_root(root: Path, path: str) -> Path | None:
    """``path`` inside ``root`` as the container sees it, or None when it is not there."""
    try:
        found = resolve_in_root(root, path)
    except SandboxError:
        return None
    return found if found.exists() else None


def resolve_command(root: Path, argv: Sequence[str], path_env: str) -> list[str]:
    """``argv`` with its program looked up in the container's PATH, as runc does."""
    prog = argv[0]
    if "/" in prog:
        return list(argv)
    for d in (path_env or DEFAULT_PATH).split(":"):
        if not d:
            continue
        candidate = f"{d.rstrip('/')}/{prog}"
        found = _resolve_in_root(root, candidate)
        if found is not None and found.is_file() and os.access(found, os.X_OK):
            return [candidate, *argv[1:]]
    raise SandboxError(f'exec: "{prog}": executable file not found in $PATH')


# -- errors as runc words them ----------------------------------------------------

_EXECVP = re.compile(rb"^bwrap: execvp (?P<path>.*): (?P<error>[^\n]*)\n?$")


def emulation_hint(platform: Platform, emulation_on: bool) -> str | None:
    """What to do when the kernel refused a foreign binary (None when it is native)."""
    if emulation.runs_natively(platform):
        return None
    fix = f"manyarch emulation install {platform.architecture}"
    if not emulation_on:
        return (
            f"emulation was turned off for this run (--emulation=off); "
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


# -- supervision -----------------------------------------------------------------

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
        pasta: subprocess.Popen[bytes] | None = None
        copier: threading.Thread | None = None
        code = 125
        seen: list[str] = []
        try:
            view.mount()
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
            copier = threading.Thread(
                target=_copy_stderr,
                args=(proc.stderr, self.stderr_fd, hint, seen),
                daemon=True,
            )
            copier.start()
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
                        pasta = start_forwarding(
                            state.pid,
                            ports,
                            state.directory / "pasta.log",
                            preexec=die_with_parent,
                        )
                    finally:
                        os.write(block_w, b"1")
                        os.close(block_w)
                if self._pending and state.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(state.pid, self._pending)
                if self.on_started is not None:
                    self.on_started(state)
                code = proc.wait()
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
            if pasta is not None:
                pasta.terminate()
                try:
                    pasta.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pasta.kill()
                    pasta.wait()
            if copier is not None:
                copier.join(timeout=5)
                if seen:
                    state.exec_error = seen[0]
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
            os.close(lifeline)
        return code


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


def load_state(directory: Path) -> ContainerState | None:
    """The state in ``directory``, None when it is gone."""
    try:
        return ContainerState.load(directory)
    except NotFound:
        return None


# -- ps, stop, rm, logs ----------------------------------------------------------


def _sweep(state: ContainerState) -> ContainerState | None:
    """A container whose supervisor died without cleaning up: clean up now."""
    if state.status == "exited" or not state.supervisor:
        return state
    if procs.alive(state.supervisor, state.supervisor_start):
        return state
    if state.pid and procs.running(state.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, signal.SIGKILL)
    view = rootfs.View(rootfs.cached_path(Digest.parse(state.manifest_digest)), state.directory)
    if state.remove:
        view.remove()
        shutil.rmtree(state.directory, ignore_errors=True)
        return None
    view.unmount()
    state.status = "exited"
    state.exit_code = 137 if state.exit_code is None else state.exit_code
    state.finished = state.finished or _now()
    state.save()
    return state


def list_containers(*, all_: bool = False) -> list[ContainerState]:
    """Containers, newest first; only running ones unless ``all_``."""
    root = containers_dir()
    out: list[ContainerState] = []
    if not root.is_dir():
        return out
    for d in root.iterdir():
        st = load_state(d)
        if st is None:
            continue
        swept = _sweep(st)
        if swept is not None and (all_ or swept.status == "running"):
            out.append(swept)
    out.sort(key=lambda s: s.created, reverse=True)
    return out


def find(word: str) -> ContainerState:
    """A container by name, id or id prefix."""
    hits = [s for s in list_containers(all_=True) if s.name == word or s.id.startswith(word)]
    exact = [s for s in hits if s.name == word or s.id == word]
    if exact:
        return exact[0]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise NotFound(f"no such container: {word}", "list them with `manyarch ps -a`")
    raise UsageError(f"{word!r} names {len(hits)} containers", "give more of the id, or the name")


def stop(state: ContainerState, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
    """The stop signal (the image's, --stop-signal's, else SIGTERM); SIGKILL after ``timeout``."""
    if state.status != "running" or not state.pid:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(state.pid, parse_signal(state.stop_signal or "SIGTERM"))
    if not _wait_exit(state, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, signal.SIGKILL)
        _wait_exit(state, 10)


def _wait_exit(state: ContainerState, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = load_state(state.directory)
        if current is None or current.status == "exited":
            return True
        if not procs.alive(current.supervisor, current.supervisor_start):
            _sweep(current)
            return True
        time.sleep(0.05)
    return False


def remove(state: ContainerState, *, force: bool = False) -> None:
    """Delete a stopped container (``force`` stops it first)."""
    if state.status == "running":
        if not force:
            raise UsageError(
                f"container {state.name} is running",
                f"stop it first (manyarch stop {state.name}) or use rm -f",
            )
        stop(state, timeout=0)
    view = rootfs.View(rootfs.cached_path(Digest.parse(state.manifest_digest)), state.directory)
    view.remove()
    shutil.rmtree(state.directory, ignore_errors=True)


def in_use() -> set[str]:
    """Manifest digests that containers (running or not) are made from."""
    return {s.manifest_digest for s in list_containers(all_=True)}
