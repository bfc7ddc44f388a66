"""Execute a Dockerfile plan per target platform, platforms in parallel.

A build returns an index in the local store, with OCI media types, and
pushes nothing (ko's split between building and publishing): it reads its
bases through the registry client it is given, and :mod:`manyarch.publish`
takes the result to a registry, an OCI layout or a tarball, in the media
types each wants.

Per platform and stage, the rootfs is lazy: while steps are cache hits
nothing is unpacked, the stage is only a list of layers. A step that needs
the files (a RUN, a cache miss that cannot be written without them) makes
the rootfs then: an overlayfs view whose lower directory is the base image
unpacked once per manifest digest (shared with ``manyarch run``, see
:mod:`manyarch.rootfs`; a ``cp -a --reflink=auto`` copy where overlayfs is
not possible), plus the layers above it. A COPY (or WORKDIR) on a stage that
has no rootfs yet is written in a small sparse tree holding only the
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
a layer already in the store, the executor applies it when the files are
needed). Reading ``ctx.rootfs`` is what makes the rootfs.

Reproducible by default: see :mod:`manyarch.imagebuild.image`, which also
writes what the image says (its config, manifest and index).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, TypeVar, cast

from manyarch import dockerfile as df
from manyarch.dockerfile.contexts import LOCAL
from manyarch.errors import BuildError, ManyarchError, StepFailed
from manyarch.imagebuild.contextfiles import read_context_text
from manyarch.imagebuild.copying import (
    copy_into,
    copy_targets,
    expand_sources,
    inline_sources,
    mkdirs,
    read_dockerignore,
)
from manyarch.imagebuild.image import history, write_image
from manyarch.imagebuild.options import (
    RAN,
    BaseUse,
    BuildOptions,
    BuildResult,
    CachedLayer,
    Status,
    StepContext,
    StepEvent,
    StepProgress,
)
from manyarch.imagebuild.runmounts import RunMounts
from manyarch.imagebuild.sandboxes import (
    Cancelled,
    StepSandboxes,
    forget_restored,
    in_parallel,
    os_error,
    run_spec,
)
from manyarch.imagebuild.stages import NeedRootfs, PartialTrees, StageState, StageTrees, image_path
from manyarch.imagebuild.workdirs import build_dir
from manyarch.images import (
    LayoutSink,
    ResolvedImage,
    Source,
    copy_document,
    open_source,
    resolve_image,
)
from manyarch.layers import Snapshot, unpack, write_diff_layer
from manyarch.layout import Layout
from manyarch.oci import mediatypes as mt
from manyarch.oci.manifest import ContainerConfig, Descriptor, History, ImageConfig, Index
from manyarch.oci.platform import Platform, default_platform
from manyarch.oci.reference import parse_any
from manyarch.registry import RegistryClient
from manyarch.sandbox import emulation
from manyarch.sandbox.bwrap import SandboxSpec
from manyarch.sandbox.users import resolve_user
from manyarch.store import open_store
from manyarch.units import epoch_of, rfc3339

_T = TypeVar("_T")


def build(
    options: BuildOptions,
    progress: StepProgress | None = None,
    *,
    store: Layout | None = None,
    client: RegistryClient | None = None,
) -> BuildResult:
    """Build every platform (in parallel) and assemble one index in ``store``.

    ``store`` is the local store by default; ``client`` reads the bases that
    live in a registry (a build FROM layouts only needs none).
    """
    text = read_context_text(options.context, options.dockerfile) or ""
    parsed = df.parse(text, file=str(options.dockerfile))
    for p in options.platforms:
        emulation.require(p)
    store = store if store is not None else open_store()
    with store.lease(), build_dir() as tmp:
        b = _Build(options, parsed, store, tmp, progress, client)
        results = b.run_all()
        manifests = tuple(d for d, _ in results)
        unused = tuple(sorted(set(results[0][1])))
        if len(manifests) == 1:
            top = manifests[0]
        else:
            index = Index(manifests, mt.OCI_INDEX)
            top = store.put_document(index.to_document())
    return BuildResult(store, top, manifests, unused, tuple(b.notes), bases=tuple(b.bases))


class _Build:
    """One build: what the platforms share (store, registry client, cancellation)."""

    def __init__(
        self,
        options: BuildOptions,
        parsed: df.Dockerfile,
        store: Layout,
        tmp: Path,
        progress: StepProgress | None,
        client: RegistryClient | None,
    ) -> None:
        self.options = options
        self.parsed = parsed
        self.store = store
        self.tmp = tmp
        self.progress = progress
        #: BUILDPLATFORM: containerd's default spec (linux/amd64, whatever the x86-64 level)
        self.host = default_platform()
        #: The wall-clock time, for a platform whose build ran a RUN under emulation.
        self.wall_clock = rfc3339(int(time.time()))
        self.sandboxes = StepSandboxes()
        self.notes: list[str] = []
        self._lock = threading.Lock()
        self.client = client
        self._sources: dict[str, Source] = {}
        #: every image a platform read, as (target platform, reference, its platform, root digest)
        self.bases: list[BaseUse] = []
        self.context = options.context.resolve()
        self.ignore = read_dockerignore(self.context)

    def source(self, ref: str) -> Source:
        """Where a base is read from, shared by the platforms (its root is read once)."""
        with self._lock:
            if ref not in self._sources:
                self._sources[ref] = open_source(parse_any(ref), self.client)
            return self._sources[ref]

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
        with self.sandboxes:  # its networks go with the build
            return self.parallel([b.run for b in builds])

    def parallel(self, work: Sequence[Callable[[], _T]]) -> list[_T]:
        """Run ``work`` in threads (inline for one); the first failure cancels the rest."""
        return in_parallel(work, self.sandboxes)

    def cancel(self) -> None:
        """Stop every platform: no new step starts, running sandboxes are killed."""
        self.sandboxes.cancel()

    def check(self) -> None:
        """Raise when another platform has failed."""
        self.sandboxes.check()


class _PlatformBuild:
    """The stages of one target platform, one after the other."""

    def __init__(self, build: _Build, platform: Platform) -> None:
        self.b = build
        self.options = build.options
        self.store = build.store
        self.platform = platform
        self.file = str(self.options.dockerfile)
        self.dir = build.tmp / str(platform).replace("/", "-")
        self.states: dict[int, StageState] = {}
        # what the interceptors' partial trees read, kept as the layers are first scanned
        prefetch = [p for i in self.options.interceptors for p in getattr(i, "prefetch", ())]
        self.trees = StageTrees(build.store, self.dir, platform, build.note, prefetch)
        self._bases: dict[tuple[str, str], tuple[Source, ResolvedImage]] = {}
        self._image_roots: dict[tuple[str, str], Path] = {}
        self.counter = 0
        self.total = 0
        self.stage: tuple[str, ...] = ()
        self._cached = False
        self._log_tail: list[str] = []
        self.plan: df.BuildPlan | None = None
        o = self.options
        self.mounts = RunMounts(self.dir, platform, build.context, build.ignore, self.root_of,
                                o.secrets, o.ssh)  # fmt: skip
        #: The epoch is the default one (no SOURCE_DATE_EPOCH), and a RUN ran under emulation.
        self.default_epoch = False
        self.emulated = False

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
            contexts=self.options.build_contexts,
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
            newest = max(newest, epoch_of(image.config.created))
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
        return rfc3339(self.options.epoch or 0)

    def run(self) -> tuple[Descriptor, tuple[str, ...]]:
        """Build every stage the target needs; returns the final manifest's descriptor."""
        plan = self.plan
        assert plan is not None
        try:
            for stage in plan.stages:
                self.stage = (str(stage.index), *([stage.name] if stage.name else []))
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
        self.trees.close()

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
        except Cancelled:
            raise
        except StepFailed:
            self.b.emit(replace(ev, status="error", output="\n".join(self._log_tail)))
            raise
        except (ManyarchError, OSError) as e:
            self.b.emit(replace(ev, status="error", output="\n".join(self._log_tail)))
            if line is None:  # FROM: the base's own error says it all
                if isinstance(e, ManyarchError):
                    raise
                raise BuildError(f"{text}: {e}") from e
            if isinstance(e, OSError):
                e = os_error(e)
            raise StepFailed(
                e.message if isinstance(e, ManyarchError) else str(e),
                file=self.file,
                line=line,
                platform=str(self.platform),
                step=text,
                output=self._log_tail,
                hint=e.hint if isinstance(e, ManyarchError) else None,
            ) from e
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
            source = self.b.source(ref)
            self._bases[key] = (source, resolve_image(source, plat))
            with self.b._lock:
                image = self._bases[key][1].descriptor.digest
                self.b.bases.append(BaseUse(self.platform, ref, plat, source.root().digest, image))
        return self._bases[key]

    def fetch(self, ref: str, plat: Platform) -> tuple[Source, ResolvedImage]:
        """Resolve a base and bring its blobs into the store."""
        source, image = self.base_image(ref, plat)
        copy_document(source, LayoutSink(self.store), image.manifest_doc)
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

    def stage_base(self, stage: df.Stage) -> StageState:
        """The state a stage starts from: scratch, another stage, or an image (nothing unpacked)."""
        directory = self.dir / f"stage{stage.index}"
        plat = stage.platform
        if stage.base == "scratch":
            # BuildKit's empty image: WorkingDir "/"
            cfg = ImageConfig(
                plat.architecture, plat.os, plat.variant, config=ContainerConfig(working_dir="/")
            )
            return StageState(directory, cfg.with_config(df.stage_base_config(cfg.config)), [])
        if stage.base_stage is not None:
            src = self.states[stage.base_stage]
            config = src.config.with_config(df.stage_base_config(src.config.config))
            return StageState(
                directory, config, list(src.layers), src.base_name, src.base_digest,
                src.image, src.base_layers,
            )  # fmt: skip
        source, image = self.fetch(stage.base, plat)
        config = replace(image.config, created=None)
        return StageState(
            directory,
            config.with_config(df.stage_base_config(config.config)),
            list(image.manifest.layers),
            source.name,
            str(image.descriptor.digest),
            image,
            len(image.manifest.layers),
        )

    # -- the rootfs, made when a step needs it ---------------------------------------

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

    def run_step(self, step: df.Step, state: StageState) -> None:
        """Execute one step: interceptors first for RUN/COPY, then the executor's own way."""
        if isinstance(step, df.ConfigStep):
            self.config_step(step, state)
            return
        log = self.log(self.counter, step.text)
        spec = self.run_spec(step, state) if isinstance(step, df.RunStep) else None
        snap: list[Snapshot] = []

        def live() -> Path:
            root = self.trees.rootfs(state)
            if not snap:
                snap.append(Snapshot.take(root))
            return root

        with PartialTrees(self.trees, state) as partial:
            ctx = StepContext(
                step, self.platform, live, state.config, tuple(state.layers), self.options,
                self.store, spec, log, self.stage,
                None if state.made or spec is None else partial.open,
            )  # fmt: skip
            for intercept in self.options.interceptors:
                outcome = intercept(ctx)
                if isinstance(outcome, CachedLayer):
                    state.layers.append(outcome.descriptor)
                    state.config = state.config.with_layer(outcome.diff_id, self.history(step))
                    self._cached = True
                    return
                if outcome is RAN:  # in the partial tree it opened, else in the rootfs
                    root, before = partial.last if partial.last and not snap else (live(), snap[0])
                    self.commit_observed(ctx, state, step, before, root)
                    return
        if spec is not None:
            live()
            if not emulation.runs_natively(self.platform):
                self.emulated = True
            restored: list[Path] = []
            self.exec_run(cast(df.RunStep, step), spec, log, restored)
            forget_restored(snap[0], state.rootfs, restored)
            self.commit_observed(ctx, state, step, snap[0], state.rootfs)
            return
        copy_step = cast(df.CopyStep, step)
        if not state.made and not copy_step.is_add and not copy_step.chown:
            try:
                sources = self.copy_sources(copy_step)
                targets = self.trees.copy_targets(state, copy_targets(copy_step, sources), sources)
                into = self.trees.merge_target(state, targets, sources, copy_step, self.b.ignore)
                with self.trees.sparse_root(state, targets, into) as root:
                    before = Snapshot.take(root)
                    self.copy(copy_step, root)
                    self.trees.check_merged(state, root, into)
                    self.commit_observed(ctx, state, step, before, root)
                return
            except NeedRootfs:
                pass
        root = live()
        self.copy(copy_step, root)
        self.commit_observed(ctx, state, step, snap[0], root)

    def commit_observed(
        self, ctx: StepContext, state: StageState, step: df.Step, before: Snapshot, root: Path
    ) -> None:
        """Commit the step's layer, then tell the observers (the build cache)."""
        if self.commit(state, step, before, root):
            layer, diff_id = state.layers[-1], state.config.diff_ids[-1]
        else:
            layer, diff_id = None, None
        for observe in self.options.observers:
            observe(ctx, layer, diff_id)

    def config_step(self, step: df.ConfigStep, state: StageState) -> None:
        """ENV, WORKDIR, USER, CMD...: the config changes; WORKDIR may add a layer."""
        new = step.apply(state.config.config)
        if step.author is not None:
            state.config = replace(state.config, author=step.author)
        if step.mkdir and new.working_dir:
            state.config = state.config.with_config(new)
            if not state.made and not new.user:
                try:
                    meta = self.trees.lookup(state, image_path(new.working_dir))
                    if meta is not None and meta.kind == "dir":
                        state.config = state.config.with_history(self.history(step, layer=False))
                        return
                    with self.trees.sparse_root(state, [new.working_dir]) as root:
                        before = Snapshot.take(root)
                        mkdirs(root, new.working_dir, None, self.options.epoch)
                        if not self.commit(state, step, before, root):
                            state.config = state.config.with_history(
                                self.history(step, layer=False)
                            )
                    return
                except NeedRootfs:
                    pass
            root = self.trees.rootfs(state)
            before = Snapshot.take(root)
            owner = resolve_user(root, new.user) if new.user else None
            mkdirs(
                root, new.working_dir, (owner.uid, owner.gid) if owner else None, self.options.epoch
            )
            if not self.commit(state, step, before, root):
                state.config = state.config.with_history(self.history(step, layer=False))
            return
        state.config = state.config.with_config(new).with_history(self.history(step, layer=False))

    def history(self, step: df.Step, *, layer: bool = True) -> History:
        """A history entry as BuildKit writes it, at this platform's ``created``."""
        return history(step, self.created, layer=layer)

    def commit(self, state: StageState, step: df.Step, before: Snapshot, root: Path) -> bool:
        """The diff of ``root`` since ``before`` as one layer; False when nothing changed.

        ``root`` is the stage's rootfs (the layer is in it already) or a
        sparse tree (the layer is applied to the rootfs when one is needed).
        """
        live = state.made and root == state.rootfs
        # the layer writer hashes the blob as it writes it: not hashed twice
        with self.store.writer(verified_elsewhere=True) as w:
            info = write_diff_layer(
                root,
                before,
                cast(BinaryIO, w),
                compression="gzip",
                epoch=self.options.epoch,
            )
            if info is None:
                if not isinstance(step, df.ConfigStep):
                    state.config = state.config.with_history(self.history(step, layer=False))
                return False
            w.commit(info.digest, info.size)
        state.layers.append(info.descriptor())
        if live:
            state.applied = len(state.layers)
        state.config = state.config.with_layer(info.diff_id, self.history(step))
        return True

    def root_of(self, source: str) -> Path:
        """The files of a stage (``"stage:<i>"``), a named local context or an image."""
        if source.startswith(LOCAL):
            return Path(source.removeprefix(LOCAL))
        if source.startswith("stage:"):
            return self.trees.rootfs(self.states[int(source[6:])])
        return self.image_root(source)

    def copy_sources(self, step: df.CopyStep) -> list[tuple[Path, str]]:
        """The source paths of a COPY: its heredocs, from the context, a stage or an image."""
        inline = inline_sources(step, self.dir)
        if step.from_ is not None:
            return inline + expand_sources(self.root_of(step.from_), step, None, bool(inline))
        return inline + expand_sources(self.b.context, step, self.b.ignore, bool(inline))

    def copy(self, step: df.CopyStep, rootfs: Path) -> None:
        """COPY/ADD into ``rootfs`` from the context, a stage or an image, never reading outside."""
        copy_into(
            step, self.copy_sources(step), rootfs, epoch=self.options.epoch, ignore=self.b.ignore
        )

    def run_spec(self, step: df.RunStep, state: StageState) -> SandboxSpec:
        """The sandbox a RUN step runs in: the image's Env, WorkingDir and User."""
        o = self.options
        return run_spec(
            step, state.config, state.rootfs, epoch=o.epoch, network=o.network,
            flags=o.run_flags, allow=o.allow,
        )  # fmt: skip

    def exec_run(
        self,
        step: df.RunStep,
        spec: SandboxSpec,
        log: Callable[[str], None],
        restored: list[Path] | None = None,
    ) -> None:
        """RUN in the sandbox, its ``--mount`` s bound; its output goes to ``log``."""
        mkdirs(spec.rootfs, spec.cwd, None, self.options.epoch)
        with self.mounts.mounted(step, spec) as mounted:
            self.b.sandboxes.run_step(
                mounted, step, log, restored, tail=self._log_tail, file=self.file,
                platform=str(self.platform),
            )  # fmt: skip

    def write_image(self, state: StageState) -> Descriptor:
        """The final stage's config and manifest, in the store."""
        return write_image(self.store, state, self.options, self.platform, self.created)
