"""Execute a Dockerfile plan per target platform, platforms in parallel.

A builder returns an index in the local store and touches no registry (ko's
split between building and publishing): :mod:`manyarch.imagebuild.publish` takes
the result to a registry, an OCI layout or a tarball.

Per platform and stage, the rootfs is lazy: while steps are cache hits
nothing is unpacked, the stage is only a list of layers. A step that needs
the files (a RUN, a cache miss that cannot be written without them) makes
the rootfs then: an overlayfs view whose lower directory is the base image
unpacked once per manifest digest (shared with ``manyarch run``, see
:mod:`manyarch.rootfs`; a ``cp -a --reflink=auto`` copy where overlayfs is
not possible), plus the layers above it. A COPY (or WORKDIR) on a stage that
has no rootfs yet is written in a small scratch tree holding only the
directories on the way to its destination, with their metadata read from the
base tree and the layer headers: the layer is the same bytes, and a rebuild
after an edit of the app unpacks nothing. Each RUN runs in a bubblewrap
sandbox (QEMU through binfmt_misc for a foreign architecture) on the view;
the filesystem diff of every step becomes one deterministic layer, deletions
as whiteouts. Views are unmounted when the platform's build ends, failed or
not.

Every step goes through :meth:`_PlatformBuild.run_step`. RUN and COPY steps
are first offered to the :class:`Interceptor` s of :class:`BuildOptions`
(a build cache, a native-pip fast path): one may do the work itself and say
how (:data:`RAN`: it changed ``ctx.rootfs``, diff it; a :class:`CachedLayer`:
a layer already in the store, the builder applies it when the files are
needed). Reading ``ctx.rootfs`` is what makes the rootfs.

Reproducible by default. The build's epoch is SOURCE_DATE_EPOCH when given;
else the newest ``created`` among the base images of every target platform
(0 when none has one: scratch). It is the config's and the history's
``created``, the mtime of the directories the builder creates, the clamp of
every mtime in the layers written, and SOURCE_DATE_EPOCH in the RUN
environment (so that Python writes hash-checked .pyc files, which stay valid
once mtimes are clamped). Same inputs then give the same index digest on two
runs and two machines. One exception, without SOURCE_DATE_EPOCH: a platform
where a RUN ran under emulation (QEMU) gets the wall-clock time as the
``created`` of its config and of the history from that step on (what such a
step writes is not reproducible anyway); its layers are still clamped. A COPY
leaves the mtimes of the directories it writes into as they were: so the
layer of ``COPY app/ /app`` is the same bytes on every platform, stored and
pushed once.
"""

from __future__ import annotations

import bz2
import collections
import contextlib
import datetime
import functools
import glob
import gzip
import lzma
import os
import posixpath
import shutil
import stat
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Literal, TypeVar, cast

from manyarch import dockerfile as df
from manyarch.imagebuild.scratch import scratch
from manyarch.errors import BuildError, DockerfileError, ManyarchError
from manyarch.images import (
    LayoutSink,
    ResolvedImage,
    Source,
    copy_blobs,
    open_source,
    resolve_image,
)
from manyarch.layers import Snapshot, unpack, write_diff_layer
from manyarch.layers.compress import open_decompressed
from manyarch.layers.snapshot import FileState
from manyarch.layout import Layout
from manyarch.oci import mediatypes as mt
from manyarch.oci.digest import Digest
from manyarch.oci.manifest import (
    BASE_DIGEST,
    BASE_NAME,
    CREATED,
    Descriptor,
    History,
    ImageConfig,
    Index,
    Manifest,
)
from manyarch.oci.platform import Platform, host_platform
from manyarch.oci.reference import parse_any
from manyarch.registry import RegistryClient, RegistryOptions
from manyarch.rootfs import COMPLETE, View, cached_path, unpacked
from manyarch.sandbox import emulation
from manyarch.sandbox.bwrap import Bind, Sandboxed, SandboxSpec, remove_created, start
from manyarch.sandbox.rootpath import resolve_in_root
from manyarch.sandbox.users import resolve_user
from manyarch.store import open_store

#: Host CA bundle made visible to RUN steps (never baked into a layer): the
#: machines that build often sit behind a TLS-intercepting proxy.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SANDBOX_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
#: BuildKit's history comment on every Dockerfile step.
HISTORY_COMMENT = "buildkit.dockerfile.v0"
#: Lines of a failed RUN's output kept for the error report.
OUTPUT_TAIL = 200

_T = TypeVar("_T")
#: buildx's --annotation prefixes (KEY alone means manifest:KEY).
_ANNOTATION_KINDS = frozenset({"index", "manifest", "index-descriptor", "manifest-descriptor"})
Status = Literal["start", "log", "done", "cached", "error"]


@dataclass(frozen=True)
class StepEvent:
    """Progress of one step, as buildx shows it (``[linux/arm64 3/6] RUN ...``).

    ``start`` opens the step, ``log`` carries one line of a RUN's output,
    ``done``/``cached`` close it with ``seconds``; ``error`` closes it with
    the last lines of its output in ``output``.
    """

    platform: Platform
    index: int
    total: int
    text: str
    status: Status = "start"
    seconds: float | None = None
    output: str = ""

    @property
    def name(self) -> str:
        """``[linux/arm64 3/6] RUN ...``."""
        return f"[{self.platform} {self.index}/{self.total}] {self.text}"


Progress = Callable[[StepEvent], None]


class _Ran:
    """The interceptor did the step's work in the rootfs; the builder diffs it."""

    def __repr__(self) -> str:
        return "RAN"


RAN = _Ran()


@dataclass(frozen=True)
class CachedLayer:
    """A layer already in the store is the step's result; the builder applies it when needed."""

    descriptor: Descriptor
    diff_id: Digest


@dataclass(frozen=True)
class StepContext:
    """What an :class:`Interceptor` sees of a RUN or COPY step about to run."""

    step: df.RunStep | df.CopyStep
    platform: Platform
    #: Makes (once) and returns the stage's rootfs: see :attr:`rootfs`.
    open_rootfs: Callable[[], Path]
    config: ImageConfig
    layers: tuple[Descriptor, ...]
    options: BuildOptions
    store: Layout
    #: For RUN: the sandbox the builder would run (env, user, binds, network).
    sandbox: SandboxSpec | None
    #: Shows a line of output under the step.
    log: Callable[[str], None]

    @property
    def rootfs(self) -> Path:
        """The stage's files before the step; made on first use (a cache hit never needs it)."""
        return self.open_rootfs()


#: Returns None to let the builder run the step, else :data:`RAN` or a :class:`CachedLayer`.
Interceptor = Callable[[StepContext], "_Ran | CachedLayer | None"]


@dataclass(frozen=True)
class BuildOptions:
    """Everything ``manyarch build`` was asked, defaults in one place."""

    context: Path
    dockerfile: Path
    platforms: Sequence[Platform]
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    network: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    docker_media_types: bool = True
    epoch: int | None = None
    registry: RegistryOptions = field(default_factory=RegistryOptions)
    interceptors: Sequence[Interceptor] = ()
    #: Called after a RUN/COPY the builder (or an interceptor's RAN) did, with its
    #: layer and diff_id (None, None when it changed nothing): the build cache records it.
    observers: Sequence[Callable[[StepContext, Descriptor | None, Digest | None], None]] = ()

    def __post_init__(self) -> None:
        if not self.platforms:
            raise BuildError("no platform to build", "give --platform linux/amd64,linux/arm64")
        if self.network not in ("default", "host", "none"):
            raise BuildError(f"unsupported --network {self.network!r}", "use default, host or none")
        seen = set()
        for p in self.platforms:
            if str(p) in seen:
                raise BuildError(f"platform {p} is given twice")
            seen.add(str(p))


@dataclass(frozen=True)
class BuildResult:
    """What a build produced in the local store."""

    store: Layout
    descriptor: Descriptor  # the index (or the manifest for one platform)
    manifests: tuple[Descriptor, ...]
    unused_build_args: tuple[str, ...] = ()
    #: What making rootfs trees cost this build (base unpacked, layers applied).
    rootfs_work: tuple[str, ...] = ()


class _Cancelled(Exception):
    """Another platform failed; this one stopped."""


def build(options: BuildOptions, progress: Progress | None = None) -> BuildResult:
    """Build every platform (in parallel) and assemble one index in the store."""
    text = _read_dockerfile(options.dockerfile)
    parsed = df.parse(text, file=str(options.dockerfile))
    for p in options.platforms:
        emulation.require(p)
    store = open_store()
    with (
        store.lease(),
        scratch() as tmp,
        _Build(options, parsed, store, tmp, progress) as b,
    ):
        results = b.run_all()
        manifests = tuple(d for d, _ in results)
        unused = tuple(sorted(set(results[0][1])))
        if len(manifests) == 1:
            top = manifests[0]
        else:
            index = Index(
                manifests,
                mt.DOCKER_MANIFEST_LIST if options.docker_media_types else mt.OCI_INDEX,
                annotations=_index_annotations(options),
            )
            top = store.put_document(index.to_document())
    return BuildResult(store, top, manifests, unused, tuple(b.notes))


def _index_annotations(options: BuildOptions) -> dict[str, str]:
    if options.docker_media_types:
        return {}  # a Docker manifest list has no annotations
    # buildx: KEY alone goes to the manifests, index:KEY to the index
    return {k[6:]: v for k, v in options.annotations.items() if k.startswith("index:")}


def _read_dockerfile(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise DockerfileError(
            "no such file", file=str(path), line=None, hint="give the Dockerfile with -f PATH"
        ) from None
    except OSError as e:
        raise DockerfileError(str(e), file=str(path), line=None) from None


class _Build:
    """One build: what the platforms share (store, registry client, cancellation)."""

    def __init__(
        self,
        options: BuildOptions,
        parsed: df.Dockerfile,
        store: Layout,
        tmp: Path,
        progress: Progress | None,
    ) -> None:
        self.options = options
        self.parsed = parsed
        self.store = store
        self.tmp = tmp
        self.progress = progress
        self.host = host_platform()
        #: The wall-clock time, for a platform whose build ran a RUN under emulation.
        self.wall_clock = _rfc3339(int(time.time()))
        self.cancelled = threading.Event()
        self.notes: list[str] = []
        self._lock = threading.Lock()
        self._client: RegistryClient | None = None
        self._procs: set[Sandboxed] = set()
        self.context = options.context.resolve()
        self.ignore = _dockerignore(self.context)

    def __enter__(self) -> _Build:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()

    def client(self) -> RegistryClient:
        """The registry client, made on first use (a build FROM a layout needs none)."""
        with self._lock:
            if self._client is None:
                self._client = RegistryClient(self.options.registry)
            return self._client

    def note(self, text: str) -> None:
        """Record rootfs work for :attr:`BuildResult.rootfs_work`."""
        with self._lock:
            self.notes.append(text)

    def emit(self, event: StepEvent) -> None:
        """Report progress; the callback is serialised across platforms."""
        if self.progress is not None:
            with self._lock:
                self.progress(event)

    def run_all(self) -> list[tuple[Descriptor, tuple[str, ...]]]:
        """Each platform in its own thread; the first failure stops the others.

        Every platform is planned first (its bases resolved): the default
        epoch is the newest base's ``created`` over all of them, so that a
        COPY layer is the same bytes on every platform.
        """
        builds = [_PlatformBuild(self, p) for p in self.options.platforms]
        self.parallel([b.prepare for b in builds])
        epoch = self.options.epoch
        if epoch is None:
            epoch = max((b.base_created() for b in builds), default=0)
        for b in builds:
            b.use_epoch(epoch, default=self.options.epoch is None)
        return self.parallel([b.run for b in builds])

    def parallel(self, work: Sequence[Callable[[], _T]]) -> list[_T]:
        """Run ``work`` in threads (inline for one); the first failure cancels the rest."""
        if len(work) == 1:
            return [work[0]()]
        with ThreadPoolExecutor(max_workers=len(work)) as pool:
            futures = [pool.submit(w) for w in work]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                self.cancel()
                wait(futures)
                raise _first_error(failed, futures)
            return [f.result() for f in futures]

    def cancel(self) -> None:
        """Stop every platform: no new step starts, running sandboxes are killed."""
        self.cancelled.set()
        with self._lock:
            for p in self._procs:
                p.kill()

    def check(self) -> None:
        """Raise when another platform has failed."""
        if self.cancelled.is_set():
            raise _Cancelled()

    def sandbox(
        self, spec: SandboxSpec, log: Callable[[str], None], restored: list[Path] | None = None
    ) -> tuple[int, list[str]]:
        """Run ``spec``, each output line to ``log``; returns the status and the last lines.

        The mount points bwrap needs are created in the rootfs and removed
        afterwards; the directories they were made in get their mtime back
        (unless the command itself changed it) and are added to ``restored``.
        """
        created: list[Path] = []
        tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL)
        parents = _mountpoint_parents(spec)
        original = {d: _mtime_ns(d) for d in parents}
        # bwrap makes these itself when the image has none; no layer should carry them
        own = [spec.rootfs / n for n in ("proc", "dev", "tmp")]
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
    root = spec.rootfs
    out: list[Path] = []
    for dest in ["/etc/resolv.conf", *(b.dest for b in spec.binds)]:
        p = root / dest.lstrip("/")
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


def _first_error(failed: Sequence[Future[_T]], order: Sequence[Future[_T]]) -> BaseException:
    # a platform that stopped because another failed is not the error to report
    real = [f.exception() for f in order if f.exception() is not None]
    for e in real:
        if not isinstance(e, _Cancelled) and e is not None:
            return e
    e0 = failed[0].exception()
    assert e0 is not None
    return e0


@dataclass
class _StageState:
    directory: Path
    config: ImageConfig
    layers: list[Descriptor]
    base_name: str = ""
    base_digest: str = ""
    #: The base image whose unpacked tree is the bottom of the rootfs (None: scratch).
    image: ResolvedImage | None = None
    #: How many of ``layers`` that tree holds.
    base_layers: int = 0
    #: The rootfs, once made; ``applied`` of ``layers`` are in it.
    made: bool = False
    applied: int = 0

    @property
    def rootfs(self) -> Path:
        """Where the rootfs is (once made)."""
        return self.directory / "rootfs"


class _NeedRootfs(Exception):
    """The step cannot be written without the stage's rootfs."""


@dataclass(frozen=True)
class _Meta:
    """What a layer header (or the base tree) says of one path."""

    kind: str  # "dir", "symlink" or "other"
    mode: int
    uid: int
    gid: int
    mtime: int


@dataclass
class _LayerIndex:
    """The paths of one layer blob: entries, whiteouts, opaque directories."""

    entries: dict[str, _Meta] = field(default_factory=dict)
    hidden: set[str] = field(default_factory=set)
    opaque: set[str] = field(default_factory=set)


_index_memo: dict[str, _LayerIndex] = {}
_index_lock = threading.Lock()


def _layer_index(store: Layout, desc: Descriptor) -> _LayerIndex:
    """Read a layer's headers (once per digest in this process)."""
    key = str(desc.digest)
    with _index_lock:
        if key in _index_memo:
            return _index_memo[key]
    idx = _LayerIndex()
    with (
        open(store.blob_path(desc.digest), "rb") as f,
        open_decompressed(f) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tf,
    ):
        for m in tf:
            name = posixpath.normpath("/" + m.name).lstrip("/")
            if not name:
                continue
            parent, base = posixpath.split(name)
            if base == ".wh..wh..opq":
                idx.opaque.add(parent)
            elif base.startswith(".wh."):
                idx.hidden.add(posixpath.join(parent, base[4:]))
            else:
                kind = "dir" if m.isdir() else "symlink" if m.issym() else "other"
                idx.entries[name] = _Meta(kind, m.mode & 0o7777, m.uid, m.gid, int(m.mtime))
    with _index_lock:
        _index_memo[key] = idx
    return idx


def _ancestors(path: str) -> list[str]:
    """``a/b/c`` -> ``["a", "a/b"]``."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _image_path(path: str) -> str:
    """An absolute image path as a relative one; :class:`_NeedRootfs` if it has ``..``."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts or not parts:
        raise _NeedRootfs()
    return "/".join(parts)


class _PlatformBuild:
    """The stages of one target platform, one after the other."""

    def __init__(self, build: _Build, platform: Platform) -> None:
        self.b = build
        self.options = build.options
        self.store = build.store
        self.platform = platform
        self.file = str(self.options.dockerfile)
        self.dir = build.tmp / str(platform).replace("/", "-")
        self.states: dict[int, _StageState] = {}
        self._bases: dict[tuple[str, str], tuple[Source, ResolvedImage]] = {}
        self._image_roots: dict[tuple[str, str], Path] = {}
        self.counter = 0
        self.total = 0
        self._cached = False
        self._log_tail: list[str] = []
        self.plan: df.BuildPlan | None = None
        self.views: list[View] = []
        #: The epoch is the default one (no SOURCE_DATE_EPOCH), and a RUN ran under emulation.
        self.default_epoch = False
        self.emulated = False
        self._scratch = 0

    def prepare(self) -> None:
        """Plan the stages (which resolves their bases)."""
        self.dir.mkdir()
        self.plan = df.plan(
            self.b.parsed,
            target_platform=self.platform,
            build_platform=self.b.host,
            build_args=self.options.build_args,
            target=self.options.target,
            base_config=lambda ref, plat: self.base_image(ref, plat)[1].config.config,
        )
        self.total = sum(1 + len(s.steps) for s in self.plan.stages)

    def base_created(self) -> int:
        """The newest ``created`` of the base images this platform's stages start from."""
        assert self.plan is not None
        newest = 0
        for stage in self.plan.stages:
            if stage.base == "scratch" or stage.base_stage is not None:
                continue
            _, image = self.base_image(stage.base, stage.platform)
            newest = max(newest, _parse_time(image.config.created))
        return newest

    def use_epoch(self, epoch: int, *, default: bool) -> None:
        """The epoch of this build (SOURCE_DATE_EPOCH, else the default one)."""
        self.options = replace(self.options, epoch=epoch)
        self.default_epoch = default

    @property
    def created(self) -> str:
        """``created`` for the config and the history: the epoch, but see the module's doc."""
        if self.default_epoch and self.emulated:
            return self.b.wall_clock
        return _rfc3339(self.options.epoch or 0)

    def run(self) -> tuple[Descriptor, tuple[str, ...]]:
        """Build every stage the target needs; returns the final manifest's descriptor."""
        plan = self.plan
        assert plan is not None
        try:
            for stage in plan.stages:
                state = self.timed(f"FROM {stage.base}", functools.partial(self.stage_base, stage))
                self.states[stage.index] = state
                for step in stage.steps:
                    self.timed(step.text, functools.partial(self.run_step, step, state), step.line)
            final = self.states[plan.stages[-1].index]
            return self.write_image(final), tuple(plan.unused_build_args)
        finally:
            self.close()

    def close(self) -> None:
        """Unmount every view this platform made (also after a failure)."""
        for v in self.views:
            v.remove()
        self.views.clear()

    def timed(self, text: str, work: Callable[[], _T], line: int | None = None) -> _T:
        """Run one step between its start and done events."""
        self.b.check()
        self.counter += 1
        ev = StepEvent(self.platform, self.counter, self.total, text)
        self.b.emit(ev)
        t0 = time.monotonic()
        self._log_tail = []
        try:
            out = work()
        except _Cancelled:
            raise
        except ManyarchError as e:
            self.b.emit(replace(ev, status="error", output="\n".join(self._log_tail)))
            if line is not None and not e.message.startswith(f"{self.file}:"):
                e.message = f"{self.file}:{line}: {text}: {e.message}"
                e.args = (e.message,)
            raise
        except OSError as e:
            self.b.emit(replace(ev, status="error"))
            where = f"{self.file}:{line}: " if line is not None else ""
            raise BuildError(f"{where}{text}: {e}") from None
        status: Status = "cached" if self._cached else "done"
        self._cached = False
        self.b.emit(replace(ev, status=status, seconds=time.monotonic() - t0))
        return out

    def log(self, index: int, text: str) -> Callable[[str], None]:
        """A function that shows one output line under step ``index``."""

        def show(line: str) -> None:
            self.b.emit(StepEvent(self.platform, index, self.total, text, "log", output=line))

        return show

    # -- bases --------------------------------------------------------------------

    def base_image(self, ref: str, plat: Platform) -> tuple[Source, ResolvedImage]:
        """A base image resolved for ``plat`` (once per reference and platform)."""
        key = (ref, str(plat))
        if key not in self._bases:
            source = open_source(parse_any(ref), self.b.client)
            self._bases[key] = (source, resolve_image(source, plat))
        return self._bases[key]

    def fetch(self, ref: str, plat: Platform) -> tuple[Source, ResolvedImage]:
        """Resolve a base and bring its blobs into the store."""
        source, image = self.base_image(ref, plat)
        copy_blobs(source, LayoutSink(self.store), [image.manifest.config, *image.manifest.layers])
        self.store.put_document(image.manifest_doc)
        return source, image

    def unpack_into(self, rootfs: Path, image: ResolvedImage) -> None:
        """Apply the image's layers (from the store) to ``rootfs``."""
        unpack(
            rootfs,
            [
                (str(d.digest), self.store.blob_path(d.digest), d.media_type)
                for d in image.manifest.layers
            ],
        )

    def stage_base(self, stage: df.Stage) -> _StageState:
        """The state a stage starts from: scratch, another stage, or an image (nothing unpacked)."""
        directory = self.dir / f"stage{stage.index}"
        plat = stage.platform
        if stage.base == "scratch":
            cfg = ImageConfig(plat.architecture, plat.os, plat.variant)
            return _StageState(directory, cfg.with_config(df.stage_base_config(cfg.config)), [])
        if stage.base_stage is not None:
            src = self.states[stage.base_stage]
            return _StageState(
                directory, src.config, list(src.layers), src.base_name, src.base_digest,
                src.image, src.base_layers,
            )  # fmt: skip
        source, image = self.fetch(stage.base, plat)
        config = replace(image.config, created=None)
        return _StageState(
            directory,
            config.with_config(df.stage_base_config(config.config)),
            list(image.manifest.layers),
            source.name,
            str(image.descriptor.digest),
            image,
            len(image.manifest.layers),
        )

    # -- the rootfs, made when a step needs it ---------------------------------------

    def rootfs(self, state: _StageState) -> Path:
        """The stage's rootfs with every layer so far: made (and brought up to date) here.

        What it did is noted in ``BuildResult.rootfs_work`` (a rebuild that
        only changed the last COPY should have nothing there).
        """
        path = state.rootfs
        if not state.made:
            state.directory.mkdir(parents=True, exist_ok=True)
            if state.image is None:
                path.mkdir()
            else:
                digest = state.image.descriptor.digest
                if not (cached_path(digest) / COMPLETE).exists():
                    self.b.note(f"{self.platform}: base {digest} unpacked (kept for later builds)")
                self.b.note(f"{self.platform}: rootfs of stage {state.directory.name} made")
                lower = unpacked(self.store, digest, state.image.manifest)
                view = View(lower, state.directory)
                self.views.append(view)
                _prepare_upper(lower, state.directory / "upper")
                view.mount()
            state.made = True
            state.applied = state.base_layers
        pending = state.layers[state.applied :]
        if pending:
            self.b.note(f"{self.platform}: {len(pending)} layer(s) applied to the rootfs")
            blobs = [(str(d.digest), self.store.blob_path(d.digest), d.media_type) for d in pending]
            unpack(path, blobs)
            state.applied = len(state.layers)
        return path

    def lookup(self, state: _StageState, path: str) -> _Meta | None:
        """What ``path`` (relative) is in the stage's image so far, without its rootfs."""
        if state.made:
            raise _NeedRootfs()
        for desc in reversed(state.layers[state.base_layers :]):
            idx = _layer_index(self.store, desc)
            if path in idx.entries:
                return idx.entries[path]
            above = [path, *_ancestors(path)]
            if any(a in idx.hidden for a in above) or any(a in idx.opaque for a in above[1:]):
                return None
        if state.image is None:
            return None
        tree = unpacked(self.store, state.image.descriptor.digest, state.image.manifest)
        try:
            st = os.lstat(tree / path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else ""
        if not kind:
            kind = "other"
        if kind == "dir" and os.listxattr(tree / path, follow_symlinks=False):
            raise _NeedRootfs()  # kept simple: the layer writer does not carry xattrs anyway
        return _Meta(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime))

    @contextmanager
    def scratch_root(self, state: _StageState, targets: Sequence[str]) -> Iterator[Path]:
        """A tree of only the existing directories on the way to ``targets`` (which must not exist).

        Raises :class:`_NeedRootfs` when that is not enough to write the step
        exactly (a target exists, a symlink or a file on the way, ``..``).
        """
        dirs: dict[str, _Meta] = {}
        for t in targets:
            rel = _image_path(t)
            if self.lookup(state, rel) is not None:
                raise _NeedRootfs()
            for a in _ancestors(rel):
                if a in dirs:
                    continue
                meta = self.lookup(state, a)
                if meta is None:
                    break
                if meta.kind != "dir":
                    raise _NeedRootfs()
                dirs[a] = meta
        self._scratch += 1
        root = self.dir / f"scratch{self._scratch}"
        root.mkdir()
        try:
            for a in sorted(dirs):
                d = root / a
                d.mkdir()
                os.lchown(d, dirs[a].uid, dirs[a].gid)
                os.chmod(d, dirs[a].mode)
            # deepest first: a child's mkdir touches its parent
            for a in sorted(dirs, reverse=True):
                ns = dirs[a].mtime * 10**9
                os.utime(root / a, ns=(ns, ns), follow_symlinks=False)
            yield root
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def image_root(self, ref: str) -> Path:
        """The rootfs of an image named by ``COPY --from=IMAGE`` (unpacked once)."""
        key = (ref, str(self.platform))
        if key not in self._image_roots:
            _, image = self.fetch(ref, self.platform)
            root = self.dir / f"from{len(self._image_roots)}"
            root.mkdir()
            self.unpack_into(root, image)
            self._image_roots[key] = root
        return self._image_roots[key]

    # -- steps --------------------------------------------------------------------

    def run_step(self, step: df.Step, state: _StageState) -> None:
        """Execute one step: interceptors first for RUN/COPY, then the builder's own way."""
        if isinstance(step, df.ConfigStep):
            self.config_step(step, state)
            return
        log = self.log(self.counter, step.text)
        spec = self.sandbox_spec(step, state) if isinstance(step, df.RunStep) else None
        snap: list[Snapshot] = []

        def live() -> Path:
            root = self.rootfs(state)
            if not snap:
                snap.append(Snapshot.take(root))
            return root

        ctx = StepContext(
            step, self.platform, live, state.config, tuple(state.layers),
            self.options, self.store, spec, log,
        )  # fmt: skip
        for intercept in self.options.interceptors:
            outcome = intercept(ctx)
            if isinstance(outcome, CachedLayer):
                state.layers.append(outcome.descriptor)
                state.config = state.config.with_layer(outcome.diff_id, self.history(step))
                self._cached = True
                return
            if outcome is RAN:
                live()
                self.commit_observed(ctx, state, step, snap[0], state.rootfs)
                return
        if spec is not None:
            live()
            if not emulation.runs_natively(self.platform):
                self.emulated = True
            restored: list[Path] = []
            self.exec_run(cast(df.RunStep, step), spec, log, restored)
            _forget_restored(snap[0], state.rootfs, restored)
            self.commit_observed(ctx, state, step, snap[0], state.rootfs)
            return
        copy_step = cast(df.CopyStep, step)
        if not state.made and not copy_step.is_add and not copy_step.chown:
            try:
                targets = self.copy_targets(copy_step)
                with self.scratch_root(state, targets) as root:
                    before = Snapshot.take(root)
                    self.copy(copy_step, state, root)
                    self.commit_observed(ctx, state, step, before, root)
                return
            except _NeedRootfs:
                pass
        root = live()
        self.copy(copy_step, state, root)
        self.commit_observed(ctx, state, step, snap[0], root)

    def commit_observed(
        self, ctx: StepContext, state: _StageState, step: df.Step, before: Snapshot, root: Path
    ) -> None:
        """Commit the step's layer, then tell the observers (the build cache)."""
        if self.commit(state, step, before, root):
            layer, diff_id = state.layers[-1], state.config.diff_ids[-1]
        else:
            layer, diff_id = None, None
        for observe in self.options.observers:
            observe(ctx, layer, diff_id)

    def config_step(self, step: df.ConfigStep, state: _StageState) -> None:
        """ENV, WORKDIR, USER, CMD...: the config changes; WORKDIR may add a layer."""
        new = step.apply(state.config.config)
        if step.author is not None:
            state.config = replace(state.config, author=step.author)
        if step.mkdir and new.working_dir:
            state.config = state.config.with_config(new)
            if not state.made and not new.user:
                try:
                    meta = self.lookup(state, _image_path(new.working_dir))
                    if meta is not None and meta.kind == "dir":
                        state.config = state.config.with_history(self.history(step, layer=False))
                        return
                    with self.scratch_root(state, [new.working_dir]) as root:
                        before = Snapshot.take(root)
                        self.mkdirs(root, new.working_dir, None)
                        if not self.commit(state, step, before, root):
                            state.config = state.config.with_history(
                                self.history(step, layer=False)
                            )
                    return
                except _NeedRootfs:
                    pass
            root = self.rootfs(state)
            before = Snapshot.take(root)
            owner = resolve_user(root, new.user) if new.user else None
            self.mkdirs(root, new.working_dir, (owner.uid, owner.gid) if owner else None)
            if not self.commit(state, step, before, root):
                state.config = state.config.with_history(self.history(step, layer=False))
            return
        state.config = state.config.with_config(new).with_history(self.history(step, layer=False))

    def history(self, step: df.Step, *, layer: bool = True) -> History:
        """A history entry as BuildKit writes it (``RUN /bin/sh -c ... # buildkit``)."""
        text = step.text
        if isinstance(step, df.RunStep):
            args = " ".join(f"{k}={v}" for k, v in step.env if k not in df.PROXY_BUILD_ARGS)
            prefix = f"|{len(args.split())} {args} " if args else ""
            text = f"RUN {prefix}{' '.join(step.argv)}"
        if layer:
            text += " # buildkit"
        return History(created=self.created, created_by=text, comment=HISTORY_COMMENT)

    def commit(self, state: _StageState, step: df.Step, before: Snapshot, root: Path) -> bool:
        """The diff of ``root`` since ``before`` as one layer; False when nothing changed.

        ``root`` is the stage's rootfs (the layer is in it already) or a
        scratch tree (the layer is applied to the rootfs when one is needed).
        """
        live = state.made and root == state.rootfs
        with self.store.writer() as w:
            info = write_diff_layer(
                root,
                before,
                cast(BinaryIO, w),
                compression="gzip",
                epoch=self.options.epoch,
                docker=self.options.docker_media_types,
            )
            if info is None:
                if not isinstance(step, df.ConfigStep):
                    state.config = state.config.with_history(self.history(step, layer=False))
                return False
            w.commit(info.digest)
        state.layers.append(info.descriptor())
        if live:
            state.applied = len(state.layers)
        state.config = state.config.with_layer(info.diff_id, self.history(step))
        return True

    def sandbox_spec(self, step: df.RunStep, state: _StageState) -> SandboxSpec:
        """The sandbox a RUN step runs in: the image's Env, WorkingDir and User."""
        cfg = state.config.config
        env = {"PATH": df.DEFAULT_PATH, **cfg.env_dict(), **dict(step.env)}
        binds: list[Bind] = []
        if HOST_CA_BUNDLE.exists():
            binds.append(Bind(HOST_CA_BUNDLE, SANDBOX_CA_BUNDLE))
            env.setdefault("SSL_CERT_FILE", SANDBOX_CA_BUNDLE)
            env.setdefault("PIP_CERT", SANDBOX_CA_BUNDLE)
            env.setdefault("REQUESTS_CA_BUNDLE", SANDBOX_CA_BUNDLE)
        # tools that honour it (Python's .pyc: hash-checked) agree with the clamped mtimes
        env.setdefault("SOURCE_DATE_EPOCH", str(self.options.epoch or 0))
        network = step.network if step.network not in ("", "default") else self.options.network
        return SandboxSpec(
            rootfs=state.rootfs,
            argv=list(step.argv),
            env=env,
            cwd=cfg.working_dir or "/",
            user=cfg.user,
            network="none" if network == "none" else "host",
            binds=binds,
            hostname="buildkitsandbox",
        )

    def exec_run(
        self,
        step: df.RunStep,
        spec: SandboxSpec,
        log: Callable[[str], None],
        restored: list[Path] | None = None,
    ) -> None:
        """RUN in the sandbox; its output goes to ``log``."""
        self.mkdirs(spec.rootfs, spec.cwd, None)
        tail = self._log_tail

        def keep(line: str) -> None:
            tail.append(line)
            del tail[:-OUTPUT_TAIL]
            log(line)

        rc, _ = self.b.sandbox(spec, keep, restored)
        if rc != 0:
            raise BuildError(
                f"{self.file}:{step.line}: {step.text}: exited with code {rc}",
                "the command failed in the build sandbox; its output is shown above",
            )

    def mkdirs(self, rootfs: Path, path: str, owner: tuple[int, int] | None) -> list[Path]:
        """Create ``path`` in the rootfs; new directories get the epoch's mtime."""
        target = resolve_in_root(rootfs, path)
        missing = []
        p = target
        while not (p.exists() or p.is_symlink()) and p != rootfs:
            missing.append(p)
            p = p.parent
        target.mkdir(parents=True, exist_ok=True)
        t = (self.options.epoch or 0) * 10**9
        for d in missing:
            if owner is not None:
                os.lchown(d, *owner)
        for d in missing:  # deepest first: creating a child touches its parent
            os.utime(d, ns=(t, t), follow_symlinks=False)
        return missing

    # -- COPY and ADD ---------------------------------------------------------------

    def copy_targets(self, step: df.CopyStep) -> list[str]:
        """The image paths a COPY writes at the top (each file, or each directory's dest)."""
        sources = self.copy_sources(step)
        many = len(sources) > 1 or any(_is_dir(s) for s, _ in sources)
        dest_is_dir = step.dest.endswith("/") or many
        out = []
        for src, _ in sources:
            if _is_dir(src):
                out.append(step.dest)
            else:
                out.append(step.dest.rstrip("/") + "/" + src.name if dest_is_dir else step.dest)
        return out

    def copy_sources(self, step: df.CopyStep) -> list[tuple[Path, str]]:
        """The source paths of a COPY, from the context, a stage or an image."""
        if step.from_ is not None:
            if step.from_.startswith("stage:"):
                src_root = self.rootfs(self.states[int(step.from_.split(":", 1)[1])])
            else:
                src_root = self.image_root(step.from_)
            return _expand_sources(src_root, step, None, self.file)
        return _expand_sources(self.b.context, step, self.b.ignore, self.file)

    def copy(self, step: df.CopyStep, state: _StageState, rootfs: Path) -> None:
        """COPY/ADD into ``rootfs`` from the context, a stage or an image, never reading outside."""
        sources = self.copy_sources(step)
        owner = None
        if step.chown:
            ids = resolve_user(rootfs, step.chown)
            owner = (ids.uid, ids.gid)
        mode = int(step.chmod, 8) if step.chmod else None
        with self.keep_times(rootfs, step.dest) as times:
            copier = _Copier(owner, mode, self.b.ignore if step.from_ is None else None, times)
            many = len(sources) > 1 or any(_is_dir(s) for s, _ in sources)
            dest_is_dir = step.dest.endswith("/") or many
            for src, rel in sources:
                if step.extract_tar and not _is_dir(src) and _extract(src, rootfs, step.dest):
                    continue
                if _is_dir(src):
                    target = resolve_in_root(rootfs, step.dest)
                    copier.created(self.mkdirs(rootfs, step.dest, owner), self.options.epoch)
                    copier.tree(src, target, rel)
                    copier.dir_times(src, target)
                else:
                    name = step.dest.rstrip("/") + "/" + src.name if dest_is_dir else step.dest
                    parent = str(Path(name).parent)
                    copier.created(self.mkdirs(rootfs, parent, owner), self.options.epoch)
                    copier.one(src, resolve_in_root(rootfs, parent) / Path(name).name)

    @contextmanager
    def keep_times(self, rootfs: Path, dest: str) -> Iterator[list[tuple[Path, int]]]:
        """Put back the mtimes of the existing directories on the way to ``dest``."""
        saved: list[tuple[Path, int]] = []
        p = resolve_in_root(rootfs, dest)
        chain = [p, *p.parents]
        for d in chain:
            if d == rootfs.parent:
                break
            if d.is_dir() and not d.is_symlink():
                saved.append((d, d.lstat().st_mtime_ns))
        later: list[tuple[Path, int]] = []
        yield later
        for d, t in [*later, *saved]:
            if d.is_dir() and not d.is_symlink():
                os.utime(d, ns=(t, t), follow_symlinks=False)

    def write_image(self, state: _StageState) -> Descriptor:
        """The final stage's config and manifest, in the store."""
        options, platform = self.options, self.platform
        cfg = state.config
        labels = {**cfg.config.labels, **options.labels}
        created = self.created
        docker = options.docker_media_types
        cfg = replace(
            cfg.with_config(replace(cfg.config, labels=labels)),
            architecture=platform.architecture,
            os=platform.os,
            variant=platform.variant,
            created=created,
            media_type=mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG,
        )
        cdesc = self.store.put_document(cfg.to_document())
        annotations: dict[str, str] = {}
        if not docker:  # a Docker manifest has no annotations
            annotations[CREATED] = created
            if state.base_name:
                annotations[BASE_NAME] = state.base_name
                annotations[BASE_DIGEST] = state.base_digest
            for k, v in options.annotations.items():
                kind, sep, key = k.partition(":")
                if not sep or kind not in _ANNOTATION_KINDS:
                    annotations[k] = v
                elif kind == "manifest":
                    annotations[key] = v
        manifest = Manifest(
            config=Descriptor(cdesc.media_type, cdesc.digest, cdesc.size),
            layers=tuple(_layer_type(d, docker) for d in state.layers),
            media_type=mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST,
            annotations=annotations,
        )
        mdesc = self.store.put_document(manifest.to_document())
        return mdesc.with_platform(platform)


def _layer_type(d: Descriptor, docker: bool) -> Descriptor:
    comp = mt.compression(d.media_type)
    if docker and comp == "gzip":
        return replace(d, media_type=mt.DOCKER_LAYER, annotations={})
    if not docker and d.media_type == mt.DOCKER_LAYER:
        return replace(d, media_type=mt.OCI_LAYER_GZIP)
    return d


def _extract(src: Path, rootfs: Path, dest: str) -> bool:
    """ADD of a local tar archive: unpack it into ``dest``; False when not a tar."""
    stream = _open_archive(src)
    if stream is None:
        return False
    target = resolve_in_root(rootfs, dest)
    with stream:
        unpack(target, [(f"ADD {src.name}", stream, mt.OCI_LAYER)])
    return True


def _rfc3339(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _parse_time(text: str | None) -> int:
    """Seconds since the epoch of an RFC 3339 time (0 when absent or unreadable)."""
    if not text:
        return 0
    t = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # fromisoformat takes at most 6 digits of fraction; images often carry 9
    head, dot, rest = t.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        t = head + ("." + rest[: min(digits, 6)] if digits else "") + rest[digits:]
    try:
        when = datetime.datetime.fromisoformat(t)
    except ValueError:
        return 0
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0, int(when.timestamp()))


def _prepare_upper(lower: Path, upper: Path) -> None:
    """The overlay's upper directory: the root's metadata, and the cache marker hidden."""
    upper.mkdir(parents=True, exist_ok=True)
    st = lower.lstat()
    os.chmod(upper, stat.S_IMODE(st.st_mode))
    if os.geteuid() == 0:
        os.lchown(upper, st.st_uid, st.st_gid)
        # a whiteout: the tree's completion marker is not part of the image
        os.mknod(upper / COMPLETE, stat.S_IFCHR | 0o600, os.makedev(0, 0))
    os.utime(upper, ns=(st.st_mtime_ns, st.st_mtime_ns))


def _forget_restored(before: Snapshot, root: Path, restored: Sequence[Path]) -> None:
    """Directories whose mtime was put back after the sandbox's mount points: not changed.

    Making and removing a mount point changes its directory's ctime, which
    no layer records: without this, a RUN would carry a bare ``etc/`` entry.
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
        now = FileState(
            stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
            0, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, None,
        )  # fmt: skip
        if now._replace(ctime_ns=old.ctime_ns) == old:
            before.states[rel] = now


def _is_dir(p: Path) -> bool:
    return p.is_dir() and not p.is_symlink()


def _open_archive(src: Path) -> BinaryIO | None:
    """The uncompressed stream of a tar archive (plain, gzip, bzip2, xz), else None."""
    try:
        with _decompressed(src) as f:
            block = f.read(512)
        if len(block) < 512 or not _tar_header(block):
            return None
    except (OSError, EOFError, lzma.LZMAError):
        return None
    return _decompressed(src)


def _decompressed(src: Path) -> BinaryIO:
    with open(src, "rb") as f:
        head = f.read(6)
    if head.startswith(b"BZh"):
        return cast(BinaryIO, bz2.open(src, "rb"))
    if head.startswith(b"\xfd7zXZ\x00"):
        return cast(BinaryIO, lzma.open(src, "rb"))
    if head.startswith(b"\x1f\x8b"):
        return cast(BinaryIO, gzip.open(src, "rb"))
    return open(src, "rb")


def _tar_header(block: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _expand_sources(
    base: Path, step: df.CopyStep, ignore: df.DockerIgnore | None, file: str
) -> list[tuple[Path, str]]:
    """The source paths of a COPY under ``base`` (the context or another root)."""
    confine = step.from_ is None
    what = "ADD" if step.is_add else "COPY"
    out: list[tuple[Path, str]] = []
    for pat in step.sources:
        rel = os.path.normpath(pat.lstrip("/")) if pat not in ("", ".", "/") else "."
        if rel == ".." or rel.startswith("../"):
            raise BuildError(
                f"{file}:{step.line}: {what} source {pat!r} is outside the build context",
                "a source must be inside the context directory",
            )
        if any(ch in rel for ch in "*?["):
            matches = sorted(glob.glob(rel, root_dir=str(base)))
            for m in matches:
                if confine:
                    _check_confined(base, m, pat, file, step.line, what)
            kept = [m for m in matches if not (ignore and ignore.matches(m))]
            if not kept:
                raise BuildError(
                    f"{file}:{step.line}: {what} source {pat!r}: no source files were specified",
                    "check the pattern (relative to the context) and .dockerignore",
                )
            out.extend((base / m, m) for m in kept)
            continue
        path = base / rel if rel != "." else base
        if confine:
            _check_confined(base, rel, pat, file, step.line, what)
        if not confine and rel != ".":
            path = resolve_in_root(base, rel)
        if not (path.exists() or path.is_symlink()) or (
            ignore is not None and rel != "." and ignore.matches(rel)
        ):
            raise BuildError(
                f"{file}:{step.line}: {what} source {pat!r}: not found in the "
                + ("build context" if confine else "source stage or image"),
                "check the path (relative to the context) and .dockerignore",
            )
        out.append((path, rel))
    return out


def _check_confined(base: Path, rel: str, pat: str, file: str, line: int, what: str) -> None:
    """Refuse a source reached through a symlink that leads out of ``base``.

    Every component but the last must resolve inside the context; the last one,
    when it is a symlink, is copied as a symlink (never followed), unless the
    pattern asks for its contents (a trailing ``/``).
    """
    path = base / rel if rel != "." else base
    parent = path.parent.resolve() if rel != "." else base
    target = path.resolve() if pat.endswith("/") and path.is_symlink() else parent
    for p in (parent, target):
        if p != base and base not in p.parents:
            raise BuildError(
                f"{file}:{line}: {what} source {pat!r} escapes the build context "
                "(through a symbolic link)",
                "a source must be inside the context directory; copy the files into it",
            )


def _dockerignore(context: Path) -> df.DockerIgnore | None:
    p = context / ".dockerignore"
    if not p.exists():
        return None
    return df.DockerIgnore.parse(p.read_text(), file=str(p))


@dataclass
class _Copier:
    """Copies files and trees with BuildKit's ownership and mode rules."""

    owner: tuple[int, int] | None
    mode: int | None
    ignore: df.DockerIgnore | None
    times: list[tuple[Path, int]]

    def tree(self, src: Path, dst: Path, rel: str) -> None:
        """The contents of ``src`` into ``dst``; ignored paths stay out."""
        for entry in sorted(src.iterdir()):
            erel = entry.name if rel in ("", ".") else f"{rel}/{entry.name}"
            ignored = self.ignore is not None and self.ignore.matches(erel)
            if ignored and not (self.ignore and self.ignore.has_exclusions and _is_dir(entry)):
                continue
            target = dst / entry.name
            if _is_dir(entry):
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    _remove(target)
                existed = target.exists()
                target.mkdir(exist_ok=True)
                shutil.copymode(entry, target)
                self.own(target)
                self.tree(entry, target, erel)
                if ignored and not existed and not any(target.iterdir()):
                    target.rmdir()  # entered only to look for re-included paths
                    continue
                self.dir_times(entry, target)
            else:
                self.one(entry, target)

    def created(self, dirs: Sequence[Path], epoch: int | None) -> None:
        """Directories the step created keep the epoch's mtime (0 without one)."""
        t = (epoch or 0) * 10**9
        self.times.extend((d, t) for d in dirs)

    def dir_times(self, src: Path, dst: Path) -> None:
        """Give ``dst`` the mtime of ``src`` once the step is done writing into it."""
        self.times.append((dst, src.lstat().st_mtime_ns))

    def own(self, p: Path) -> None:
        """``--chown``, else root:root (BuildKit); ``--chmod`` on what is not a symlink."""
        if self.owner:
            os.lchown(p, *self.owner)
        elif os.geteuid() == 0:
            os.lchown(p, 0, 0)
        if self.mode is not None and not p.is_symlink():
            os.chmod(p, self.mode)

    def one(self, src: Path, dst: Path) -> None:
        """One file or symlink (a symlink stays a symlink, never followed)."""
        if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
            _remove(dst)
        elif dst.is_dir():
            dst = dst / src.name
            if dst.is_symlink() or dst.exists():
                _remove(dst)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
            st = src.lstat()
            os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)
        elif stat.S_ISREG(src.lstat().st_mode):
            shutil.copy2(src, dst, follow_symlinks=False)
        else:
            return  # sockets, fifos, devices are not copied from a context
        self.own(dst)


def _remove(p: Path) -> None:
    if _is_dir(p):
        shutil.rmtree(p)
    else:
        p.unlink()
