"""RUN steps in their sandboxes: the spec a step runs in, and the runs a cancel must kill
(the platforms of a build run side by side; the first failure cancels the others)."""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import stat
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from manyarch import dockerfile as df
from manyarch.errors import BuildError, DiskFull, ManyarchError, SandboxError, StepFailed
from manyarch.imagebuild.hostca import trusting_host_cas
from manyarch.imagebuild.runflags import RunFlags
from manyarch.layers import Snapshot
from manyarch.layers.snapshot import FileState
from manyarch.oci.manifest import ImageConfig
from manyarch.sandbox import netns
from manyarch.sandbox.bwrap import Bind, Sandboxed, SandboxSpec, remove_created, start
from manyarch.sandbox.confine import Security
from manyarch.sandbox.rootpath import resolve_in_root

#: Lines of a failed RUN's output kept for the error report.
OUTPUT_TAIL = 200


class Cancelled(Exception):
    """Another platform failed; this one stopped."""


def run_spec(
    step: df.RunStep,
    config: ImageConfig,
    rootfs: Path,
    *,
    epoch: int | None,
    network: str,
    flags: RunFlags | None = None,
    allow: frozenset[str] = frozenset(),
) -> SandboxSpec:
    """The sandbox a RUN step runs in: the image's Env, WorkingDir and User, and the
    build's ``--add-host``, ``--shm-size`` and ``--ulimit``.

    A network namespace of its own (BuildKit's default), the host's with
    ``--network host``, none with ``--network none``; ``RUN --network=host`` and
    ``RUN --security=insecure`` only with the entitlement (``--allow``), as BuildKit.
    """
    flags = flags or RunFlags()
    _check_entitlements(step, allow)
    cfg = config.config
    env = {"PATH": df.DEFAULT_PATH, **cfg.env_dict(), **dict(step.env)}
    binds: list[Bind] = []
    # tools that honour it (Python's .pyc: hash-checked) agree with the clamped mtimes
    env.setdefault("SOURCE_DATE_EPOCH", str(epoch or 0))
    network = step.network if step.network not in ("", "default") else network
    return SandboxSpec(
        rootfs=rootfs,
        argv=list(step.argv),
        env=env,
        cwd=cfg.working_dir or "/",
        user=cfg.user,
        network={"none": "none", "host": "host"}.get(network, "private"),
        binds=binds,
        hostname="buildkitsandbox",
        hosts=flags.hosts("buildkitsandbox"),
        bwrap_args=flags.bwrap_args(),
        prlimit=tuple(u.prlimit_arg() for u in flags.ulimits),
        security=Security(privileged=step.security == "insecure"),
        tmp_tmpfs=False,  # BuildKit mounts nothing on /tmp: it is the image's, kept in layers
    )


def _check_entitlements(step: df.RunStep, allow: frozenset[str]) -> None:
    """BuildKit's rule: a Dockerfile escapes its sandbox only where the command line allows."""
    for flag, value, entitlement in (
        ("network", step.network, "network.host"),
        ("security", step.security, "security.insecure"),
    ):
        wanted = "host" if flag == "network" else "insecure"
        if value == wanted and entitlement not in allow:
            raise BuildError(
                f"line {step.line}: RUN --{flag}={wanted} needs the {entitlement} entitlement",
                f"build with --allow {entitlement} if you trust this Dockerfile",
            )


class StepSandboxes:
    """The sandboxes of one build's RUN steps, so that a failure elsewhere kills them all."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._procs: set[Sandboxed] = set()
        #: per thread (a platform's steps run one after the other in one): its network
        self._networks: dict[int, netns.Network] = {}

    def __enter__(self) -> StepSandboxes:
        return self

    def __exit__(self, *exc: object) -> None:
        """The build is over: its networks go."""
        with self._lock:
            networks, self._networks = list(self._networks.values()), {}
        for n in networks:
            n.close()

    def _network(self) -> str:
        """This thread's private network (made on first use), as a path to join."""
        key = threading.get_ident()
        with self._lock:
            network = self._networks.get(key)
        if network is None or not network.alive():
            if network is not None:
                network.close()
            network = netns.Network()
            with self._lock:
                self._networks[key] = network
        return network.path

    def cancel(self) -> None:
        """Stop every platform: no new step starts, running sandboxes are killed."""
        self.cancelled.set()
        with self._lock:
            for p in self._procs:
                p.kill()

    def check(self) -> None:
        """Raise :class:`Cancelled` when another platform has failed."""
        if self.cancelled.is_set():
            raise Cancelled()

    def run_step(
        self,
        spec: SandboxSpec,
        step: df.RunStep,
        log: Callable[[str], None],
        restored: list[Path] | None,
        *,
        tail: list[str],
        file: str,
        platform: str,
    ) -> None:
        """A RUN step's sandbox, its output to ``log`` and its last lines to ``tail``; a
        non-zero exit is :class:`StepFailed` with them."""

        def keep(line: str) -> None:
            tail.append(line)
            del tail[:-OUTPUT_TAIL]
            log(line)

        rc, _ = self.run(spec, keep, restored)
        if rc != 0:
            raise StepFailed(
                f"exited with code {rc}", file=file, line=step.line, platform=platform,
                step=step.text, exit_code=rc, output=tail,
                hint="the command failed in the build sandbox; its output is shown above",
            )  # fmt: skip

    def run(
        self, spec: SandboxSpec, log: Callable[[str], None], restored: list[Path] | None = None
    ) -> tuple[int, list[str]]:
        """Run ``spec``, each output line to ``log``; returns the status and the last lines.

        The mount points bwrap needs are created in the rootfs and removed
        afterwards; the directories they were made in get their mtime back
        (unless the command itself changed it) and are added to ``restored``.
        The host's CAs are trusted for the run (:mod:`.hostca`); an image
        bundle put back as it was is added to ``restored`` too.
        """
        restored = restored if restored is not None else []
        tmp = _Scratch(spec.rootfs / "tmp")
        with trusting_host_cas(spec, restored) as trusting:
            try:
                return self._run(trusting, log, restored)
            finally:
                tmp.restore(restored)

    def _run(
        self, spec: SandboxSpec, log: Callable[[str], None], restored: list[Path] | None
    ) -> tuple[int, list[str]]:
        created: list[Path] = []
        wired: list[subprocess.Popen[bytes]] = []  # a non-root caller's: pasta per step
        hold = None
        if spec.network == "private" and os.geteuid() == 0:
            spec = replace(spec, netns=self._network())
        elif spec.network == "private":
            hold = lambda pid: wired.append(netns.connect(pid))  # noqa: E731
        tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL)
        parents = _mountpoint_parents(spec)
        original = {d: _mtime_ns(d) for d in parents}
        # bwrap makes these itself when the image has none; no layer should carry them
        own = [spec.rootfs / n for n in ("proc", "dev", *(["tmp"] if spec.tmp_tmpfs else []))]
        own = [p for p in own if not (p.exists() or p.is_symlink())]
        after_create: dict[Path, int | None] = {}
        try:
            with self._lock:
                self.check()
                # under the lock: cancel() sees every sandbox once bwrap has named its init
                sandboxed = start(
                    spec,
                    created,
                    before_spawn=lambda: after_create.update({d: _mtime_ns(d) for d in parents}),
                    hold=hold,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
                self._procs.add(sandboxed)
            proc = sandboxed.proc
            try:
                assert proc.stdout is not None
                for raw in proc.stdout:
                    line = raw.decode(errors="replace").rstrip("\r\n")
                    tail.append(line)
                    log(line)
                rc = proc.wait()
            finally:
                if proc.poll() is None:
                    sandboxed.kill()
                    proc.wait()
                with self._lock:
                    self._procs.discard(sandboxed)
                for w in wired:
                    netns.stop(w)
            self.check()
            return rc, list(tail)
        finally:
            for p in own:
                with contextlib.suppress(OSError):
                    p.rmdir()
            if created:
                before_removal = {d: _mtime_ns(d) for d in parents}
                remove_created(created)
                for d in parents:
                    now, orig = before_removal[d], original[d]
                    if now is None or orig is None or now == orig:
                        continue
                    # the command did not touch it since the mount points were made
                    t = orig if now == after_create.get(d) else now
                    os.utime(d, ns=(t, t), follow_symlinks=False)
                    if restored is not None:
                        restored.append(d)


class _Scratch:
    """The image's ``/tmp``: a step that only used it for a while (pip's build directories:
    made and removed) leaves its mtime as it was, so that its layer has no bare ``tmp/``
    (a native install, which uses the host's, has none either)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = self._state()

    def _state(self) -> tuple[int, frozenset[str]] | None:
        try:
            if self.path.is_symlink() or not self.path.is_dir():
                return None
            return self.path.lstat().st_mtime_ns, frozenset(os.listdir(self.path))
        except OSError:
            return None

    def restore(self, restored: list[Path]) -> None:
        """Put the mtime back when the names in it are the same as before."""
        now = self._state()
        if self.state is None or now is None or now[1] != self.state[1] or now == self.state:
            return
        os.utime(self.path, ns=(self.state[0], self.state[0]), follow_symlinks=False)
        restored.append(self.path)


def _mountpoint_parents(spec: SandboxSpec) -> list[Path]:
    """The existing directories in the rootfs where bwrap may have to create a mount point."""
    root = spec.rootfs.resolve()
    out: list[Path] = []
    names = ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"]
    for dest in [*names, *(b.dest for b in spec.binds), *(t for t, _ in spec.tmpfs)]:
        try:
            p = resolve_in_root(root, dest)
        except SandboxError:
            continue
        while p != root:
            p = p.parent
            if p.is_symlink():
                break
            if p.is_dir():
                if p not in out:
                    out.append(p)
                break
    return out


def _mtime_ns(p: Path) -> int | None:
    try:
        return p.lstat().st_mtime_ns
    except OSError:
        return None


def forget_restored(before: Snapshot, root: Path, restored: Sequence[Path]) -> None:
    """Paths put back as they were after the sandbox: not changed.

    Making and removing a mount point changes its directory's ctime, which
    no layer records: without this, a RUN would carry a bare ``etc/`` entry.
    The same for the CA bundle the host's certificates were taken out of.
    """
    for d in restored:
        rel = os.path.relpath(d, root)
        old = before.states.get(rel)
        if old is None:
            continue
        try:
            st = d.lstat()
        except OSError:
            continue
        kind = stat.S_IFMT(st.st_mode)
        now = FileState(
            kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
            st.st_size if kind == stat.S_IFREG else 0, st.st_mtime_ns, st.st_ctime_ns,
            st.st_ino, None,
        )  # fmt: skip
        # an overlay's copy-up may give a rewritten file another inode number
        if now._replace(ctime_ns=old.ctime_ns, inode=old.inode) == old:
            before.states[rel] = now


_T = TypeVar("_T")


def in_parallel(work: Sequence[Callable[[], _T]], sandboxes: StepSandboxes) -> list[_T]:
    """Run ``work`` in threads (inline for one); the first failure cancels the rest."""
    if len(work) == 1:
        return [work[0]()]
    with ThreadPoolExecutor(max_workers=len(work)) as pool:
        futures = [pool.submit(w) for w in work]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None]
        if failed:
            sandboxes.cancel()
            wait(futures)
            raise _first_error(failed, futures)
        return [f.result() for f in futures]


def _first_error(failed: Sequence[Future[_T]], order: Sequence[Future[_T]]) -> BaseException:
    # a platform that stopped because another failed is not the error to report
    real = [f.exception() for f in order if f.exception() is not None]
    for e in real:
        if not isinstance(e, Cancelled) and e is not None:
            return e
    e0 = failed[0].exception()
    assert e0 is not None
    return e0


def os_error(e: OSError) -> ManyarchError:
    """A step's system error in words: a full disk, a command Linux cannot pass, the rest."""
    full = DiskFull.of(e)
    if full is not None:
        return full
    if e.errno == errno.E2BIG:
        return BuildError(
            "the command with its arguments and environment is longer than Linux allows (E2BIG)",
            "shorten the ENV values or the command; put long data in files of the context",
        )
    where = f" ({e.filename})" if e.filename else ""
    return BuildError(f"{e.strerror or e}{where}")
