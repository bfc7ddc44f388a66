"""RUN steps in their sandboxes: the spec a step runs in, and the runs a cancel must kill
(the platforms of a build run side by side; the first failure cancels the others)."""

from __future__ import annotations

import collections
import contextlib
import os
import stat
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TypeVar

from manyarch import dockerfile as df
from manyarch.errors import BuildError, SandboxError
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
        with trusting_host_cas(spec, restored if restored is not None else []) as trusting:
            return self._run(trusting, log, restored)

    def _run(
        self, spec: SandboxSpec, log: Callable[[str], None], restored: list[Path] | None
    ) -> tuple[int, list[str]]:
        created: list[Path] = []
        pasta: list[subprocess.Popen[bytes]] = []
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
                    hold=(lambda pid: pasta.append(netns.connect(pid)))
                    if spec.network == "private"
                    else None,
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
                for wire in pasta:
                    netns.stop(wire)
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
