"""Containers without a daemon: a directory of state per container, one supervisor each.

A container is ``$XDG_DATA_HOME/manyarch/containers/<id>/``: ``state.json``, the
log of a detached one, and its writable view of the image (see
:mod:`manyarch.rootfs`). Its supervisor (:mod:`manyarch.run.supervisor`) is
the ``run`` process in the foreground, or for a detached container a process
of its own writing into the log. Every helper a supervisor starts dies with
it, so killing it, even with SIGKILL, leaves no process behind; what it could
not clean then is swept by the next ``ps``, ``run`` or ``rm``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from manyarch import procs, rootfs
from manyarch.errors import InvalidArgument, NotFound, SandboxError
from manyarch.oci.digest import Digest
from manyarch.run import cgroups, health
from manyarch.run.cgroups import Cgroup, Limits
from manyarch.run.health import Healthcheck
from manyarch.run.mounts import Mount, check_targets, remove_volume, with_anonymous_names
from manyarch.run.network import PortMapping
from manyarch.sandbox import emulation
from manyarch.sandbox.bwrap import DEFAULT_PATH
from manyarch.sandbox.confine import Security
from manyarch.sandbox.rootpath import resolve_in_root
from manyarch.store import data_home, open_store, private_data_dir

if TYPE_CHECKING:
    from manyarch.run.local import LocalImage

STATE_FILE = "state.json"
#: Left by ``stop``/``kill`` so that ``--restart`` does not start the program again.
STOPPED_MARK = "stopped"
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
    #: the image's id (its config digest), and Entrypoint / Cmd as given (for inspect)
    image_id: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    init: bool = False
    hostname: str = ""
    extra_hosts: list[list[str]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    read_only: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    restart: str = "no"  # no, always, unless-stopped, on-failure[:N]
    restart_count: int = 0
    memory: int = 0
    cpus: float = 0.0
    pids_limit: int = 0
    oom_killed: bool = False
    healthcheck: dict[str, Any] | None = None
    stop_timeout: float | None = None
    #: -P: every port the image exposes (and ``expose``) to a free host port
    publish_all: bool = False
    expose: Sequence[str] = ()
    term: str = ""  # -t: the caller's TERM
    cgroups: list[str] = field(default_factory=list)  # the cgroup directories, while it runs
    network: str = "bridge"  # bridge (its own, through pasta), host or none
    #: --privileged, --cap-add, --cap-drop, --security-opt seccomp=unconfined
    security: dict[str, Any] = field(default_factory=dict)

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

    @property
    def mount_list(self) -> list[Mount]:
        """``-v``, ``--mount`` and ``--tmpfs``, and the image's volumes."""
        return [Mount.from_json(m) for m in self.mounts]

    @property
    def limits(self) -> Limits:
        """``-m``, ``--cpus``, ``--pids-limit``."""
        return Limits(self.memory, self.cpus, self.pids_limit)

    @property
    def health(self) -> Healthcheck | None:
        """The health check in force (None: none)."""
        return Healthcheck.from_config(self.healthcheck)

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
            raise NotFound(f"no container state in {directory}: {e}") from e
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
    #: --init; None: on when the image runs under emulation (so that signals behave)
    init: bool | None = None
    hostname: str | None = None
    extra_hosts: Sequence[tuple[str, str]] = ()
    #: -v, --mount, --tmpfs
    mounts: Sequence[Mount] = ()
    read_only: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    restart: str = "no"
    limits: Limits = field(default_factory=Limits)
    #: --health-cmd, --health-interval, ... as :func:`manyarch.run.health.from_flags` takes them
    health_flags: Mapping[str, Any] = field(default_factory=dict)
    no_healthcheck: bool = False
    stop_timeout: float | None = None
    #: -P: every port the image exposes (and ``expose``) to a free host port
    publish_all: bool = False
    expose: Sequence[str] = ()
    #: --network: bridge (a namespace of its own, outbound through pasta), host or none
    network: str = "bridge"
    #: --privileged, --cap-add, --cap-drop, --security-opt seccomp=unconfined
    security: Security = field(default_factory=Security)


#: ``--network`` as docker spells it (``default`` is bridge's other name).
NETWORKS = ("bridge", "host", "none")


def now() -> str:
    """A timestamp as ``state.json`` keeps them."""
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
        raise InvalidArgument(
            f"{image.name} has neither ENTRYPOINT nor CMD, and no command was given",
            "give the command to run",
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
    except (KeyError, ValueError) as e:
        raise InvalidArgument(
            f"invalid signal: {text}", "give a name such as SIGTERM or QUIT, or a number"
        ) from e


def _unique_name(wanted: str | None) -> str:
    taken = {s.name for s in list_containers(all_=True)}
    if wanted:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", wanted):
            raise InvalidArgument(
                f"invalid container name {wanted!r}", "use letters, digits, '_', '.' and '-'"
            )
        if wanted in taken:
            raise InvalidArgument(
                f'the container name "{wanted}" is already in use',
                "remove that container, or choose another name",
            )
        return wanted
    while True:
        name = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NAMES)}"
        if name not in taken:
            return name
        name += f"_{secrets.token_hex(2)}"
        if name not in taken:
            return name


def parse_restart(text: str) -> str:
    """``--restart no|always|unless-stopped|on-failure[:N]``, checked."""
    name, _, count = text.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure") or (
        count and (name != "on-failure" or not count.isdigit())
    ):
        raise InvalidArgument(
            f"invalid restart policy {text!r}",
            "use no, always, unless-stopped or on-failure[:MAX-RETRIES]",
        )
    return text


def _published(image: LocalImage, options: RunOptions) -> list[PortMapping]:
    """``-P``: every port the image exposes (and ``--expose``), each to a free host port."""
    if not options.publish_all:
        return []
    out = []
    for spec in [*image.config.config.exposed_ports, *options.expose]:
        port, _, proto = spec.partition("/")
        if port.isdigit():
            out.append(PortMapping(0, int(port), proto or "tcp"))
    return out


def _mounts(image: LocalImage, options: RunOptions) -> list[Mount]:
    """The mounts asked for, then an anonymous volume for each VOLUME of the image not covered."""
    mounts = list(options.mounts)
    check_targets(mounts)
    taken = {m.target for m in mounts}
    for target in image.config.config.volumes:
        t = target.rstrip("/") or "/"
        if t not in taken and t != "/":
            mounts.append(Mount("volume", t))
    return with_anonymous_names(mounts)


def create(image: LocalImage, options: RunOptions) -> ContainerState:
    """Unpack the image (cached) and write the state of a new container."""
    restart = parse_restart(options.restart)
    if restart != "no" and options.remove:
        raise InvalidArgument(
            "conflicting options: a restart policy and removal on exit (--restart and --rm)",
            "give only one of them",
        )
    cgroups.check(options.limits)
    if options.network not in NETWORKS:
        raise InvalidArgument(f"unknown network {options.network!r}", "use bridge, host or none")
    if options.network != "bridge" and (options.ports or options.publish_all):
        raise InvalidArgument("-p and -P need the bridge network", "drop --network or -p")
    check = health.from_flags(
        Healthcheck.from_config(image.config.config.healthcheck),
        disabled=options.no_healthcheck,
        **options.health_flags,
    )
    store = open_store()
    rootfs.unpacked(store, image.descriptor.digest, image.manifest)
    cfg = image.config.config
    env = environment(image, options)
    term = ""
    if options.tty:
        term = env.get("TERM") or os.environ.get("TERM") or "xterm"
        env.setdefault("TERM", term)
    ident = secrets.token_hex(32)
    state = ContainerState(
        id=ident,
        name=_unique_name(options.name),
        image=image.name,
        manifest_digest=str(image.descriptor.digest),
        platform=str(image.platform),
        argv=command_of(image, options),
        env=env,
        cwd=options.workdir or cfg.working_dir or "/",
        user=options.user if options.user is not None else cfg.user,
        ports=[p.with_host_port().to_json() for p in [*options.ports, *_published(image, options)]],
        remove=options.remove,
        emulation=options.emulation,
        created=now(),
        detached=options.detach,
        stop_signal=stop_signal_of(image, options),
        interactive=options.interactive and not options.detach,
        tty=options.tty,
        image_id=str(image.id),
        entrypoint=[options.entrypoint]
        if options.entrypoint
        else ([] if options.entrypoint == "" else list(cfg.entrypoint or ())),
        cmd=list(options.command)
        or ([] if options.entrypoint is not None else list(cfg.cmd or ())),
        init=options.init
        if options.init is not None
        else options.emulation and not emulation.runs_natively(image.platform),
        hostname=options.hostname or ident[:12],
        extra_hosts=[[n, ip] for n, ip in options.extra_hosts],
        mounts=[m.to_json() for m in _mounts(image, options)],
        read_only=options.read_only,
        network=options.network,
        security=asdict(options.security),
        labels={**cfg.labels, **options.labels},
        restart=restart,
        memory=options.limits.memory,
        cpus=options.limits.cpus,
        pids_limit=options.limits.pids,
        healthcheck=check.to_config() if check is not None else None,
        stop_timeout=options.stop_timeout,
        term=term,
    )
    private_data_dir(containers_dir().name)
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


def _clean_after_death(state: ContainerState) -> ContainerState | None:
    """A supervisor died without cleaning up: kill, uncgroup, unmount, delete with ``--rm``."""
    if state.pid and procs.running(state.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while procs.running(state.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    Cgroup([Path(p) for p in state.cgroups], 0).remove()
    view = rootfs.View(rootfs.cached_path(Digest.parse(state.manifest_digest)), state.directory)
    if state.remove:
        view.remove()
        shutil.rmtree(state.directory, ignore_errors=True)
        return None
    view.unmount()
    state.status = "exited"
    state.exit_code = 137 if state.exit_code is None else state.exit_code
    state.finished = state.finished or now()
    state.pid = 0
    state.save()
    return state


def reap(directory: Path) -> None:
    """Clean up after a supervisor that died (the reaper's job)."""
    state = load_state(directory)
    if state is None or state.status == "exited":
        return
    state.exit_code = 137
    state.finished = ""
    _clean_after_death(state)


def load_state(directory: Path) -> ContainerState | None:
    """The state in ``directory``, None when it is gone."""
    try:
        return ContainerState.load(directory)
    except NotFound:
        return None


# -- ps, stop, kill, rm ----------------------------------------------------------


def _sweep(state: ContainerState) -> ContainerState | None:
    """A container whose supervisor died without cleaning up: clean up now."""
    if state.status == "exited" or not state.supervisor:
        return state
    if procs.alive(state.supervisor, state.supervisor_start):
        return state
    return _clean_after_death(state)


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
        if swept is not None and (all_ or swept.status in ("running", "restarting")):
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
    raise InvalidArgument(
        f"{word!r} names {len(hits)} containers", "give more of the id, or the name"
    )


def is_running(state: ContainerState) -> bool:
    """Running, or between two starts of ``--restart``."""
    return state.status in ("running", "restarting")


def stop(
    state: ContainerState, timeout: float | None = None, signal_name: str | None = None
) -> None:
    """The stop signal (``-s``, else the container's), SIGKILL after ``timeout``; no restart."""
    if not is_running(state):
        return
    (state.directory / STOPPED_MARK).touch()
    wait = timeout if timeout is not None else state.stop_timeout
    wait = DEFAULT_STOP_TIMEOUT if wait is None else wait
    if state.pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, parse_signal(signal_name or state.stop_signal or "SIGTERM"))
    if not _wait_exit(state, wait):
        current = load_state(state.directory)
        if current is not None and current.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(current.pid, signal.SIGKILL)
        _wait_exit(state, 10)


def kill(state: ContainerState, signal_name: str = "SIGKILL") -> None:
    """Send a signal to the container's PID 1 (``kill -s``); SIGKILL also ends ``--restart``."""
    sig = parse_signal(signal_name)
    if not is_running(state) or not state.pid:
        raise InvalidArgument(
            f"cannot kill container {state.name}: it is not running", "start it first"
        )
    if sig in (signal.SIGKILL, parse_signal(state.stop_signal or "SIGTERM")):
        (state.directory / STOPPED_MARK).touch()
    with contextlib.suppress(ProcessLookupError):
        os.kill(state.pid, sig)


def _wait_exit(state: ContainerState, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        current = load_state(state.directory)
        if current is None:
            return True
        if not procs.alive(current.supervisor, current.supervisor_start):
            if current.status != "exited":
                _sweep(current)
            return True
        if current.status == "exited" and time.monotonic() >= deadline:
            # its supervisor still tidies up (network, cgroup); a start after this
            # one must not have its state overwritten by that supervisor's last write
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def remove(state: ContainerState, *, force: bool = False, volumes: bool = False) -> None:
    """Delete a stopped container (``force`` stops it first; ``volumes``: its anonymous ones)."""
    if is_running(state):
        if not force:
            raise InvalidArgument(
                f"container {state.name} is running", "stop it first, or remove it by force"
            )
        stop(state, timeout=0)
    view = rootfs.View(rootfs.cached_path(Digest.parse(state.manifest_digest)), state.directory)
    view.remove()
    shutil.rmtree(state.directory, ignore_errors=True)
    if volumes:
        for m in state.mount_list:
            if m.type == "volume" and len(m.source) == 64 and m.source.isalnum():
                remove_volume(m.source)


def in_use() -> set[str]:
    """Manifest digests that containers (running or not) are made from."""
    return {s.manifest_digest for s in list_containers(all_=True)}
