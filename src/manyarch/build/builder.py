"""Execute a Dockerfile plan per target platform, platforms in parallel.

A builder returns an index in the local store and touches no registry (ko's
split between building and publishing): :mod:`manyarch.build.publish` takes
the result to a registry, an OCI layout or a tarball.

Per platform and stage: the base is unpacked into a fresh rootfs (its layer
blobs are kept as they are, never recompressed); each RUN runs in a
bubblewrap sandbox (QEMU through binfmt_misc for a foreign architecture) and
each COPY/ADD copies from the context; the filesystem diff of every such
step becomes one deterministic layer, deletions as whiteouts.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, cast

from manyarch import dockerfile as df
from manyarch.build.store import open_store, work_dir
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
from manyarch.layout import Layout
from manyarch.oci import mediatypes as mt
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
from manyarch.sandbox import emulation
from manyarch.sandbox.bwrap import Bind, SandboxSpec
from manyarch.sandbox.bwrap import run as sandbox_run
from manyarch.sandbox.users import resolve_user

log = logging.getLogger("manyarch.build")

#: Host CA bundle made visible to RUN steps (never baked into a layer): the
#: machines that build often sit behind a TLS-intercepting proxy.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SANDBOX_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
DEFAULT_ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class StepEvent:
    """Progress of one step, as buildx prints it (``[linux/arm64 3/6] RUN ...``)."""

    platform: Platform
    index: int
    total: int
    text: str
    seconds: float | None = None  # None when the step starts
    cached: bool = False
    output: str = ""


Progress = Callable[[StepEvent], None]


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

    def __post_init__(self) -> None:
        if not self.platforms:
            raise BuildError("no platform to build", "give --platform linux/amd64,linux/arm64")
        if self.network not in ("default", "host", "none"):
            raise BuildError(f"unsupported --network {self.network!r}", "use default, host or none")


@dataclass(frozen=True)
class BuildResult:
    """What a build produced in the local store."""

    store: Layout
    descriptor: Descriptor  # the index (or the manifest for one platform)
    manifests: tuple[Descriptor, ...]
    unused_build_args: tuple[str, ...] = ()


@dataclass
class _StageState:
    rootfs: Path
    config: ImageConfig
    layers: list[Descriptor]
    base_name: str = ""
    base_digest: str = ""


def build(options: BuildOptions, progress: Progress | None = None) -> BuildResult:
    """Build every platform (in parallel) and assemble one index in the store."""
    text = _read_dockerfile(options.dockerfile)
    parsed = df.parse(text, file=str(options.dockerfile))
    store = open_store()
    host = host_platform()
    for p in options.platforms:
        emulation.require(p)
    with tempfile.TemporaryDirectory(prefix="manyarch-build-", dir=work_dir()) as tmp:
        client_holder: list[RegistryClient] = []

        def client() -> RegistryClient:
            if not client_holder:
                client_holder.append(RegistryClient(options.registry))
            return client_holder[0]

        def one(platform: Platform) -> tuple[Descriptor, tuple[str, ...]]:
            return _build_platform(
                options, parsed, platform, host, store, Path(tmp), client, progress
            )

        try:
            if len(options.platforms) == 1:
                results = [one(options.platforms[0])]
            else:
                with ThreadPoolExecutor(max_workers=len(options.platforms)) as pool:
                    results = list(pool.map(one, options.platforms))
        finally:
            for c in client_holder:
                c.close()
    manifests = tuple(d for d, _ in results)
    unused = tuple(sorted(set(results[0][1])))
    if len(manifests) == 1 and len(options.platforms) == 1:
        top = manifests[0]
    else:
        index = Index(
            manifests,
            mt.DOCKER_MANIFEST_LIST if options.docker_media_types else mt.OCI_INDEX,
            annotations=_index_annotations(options),
        )
        top = store.put_document(index.to_document())
    return BuildResult(store, top, manifests, unused)


def _index_annotations(options: BuildOptions) -> dict[str, str]:
    if options.docker_media_types:
        return {}  # a Docker manifest list has no annotations
    return {k.removeprefix("index:"): v for k, v in options.annotations.items()}


def _read_dockerfile(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise DockerfileError(
            "no such file", file=str(path), line=None, hint="give the Dockerfile with -f PATH"
        ) from None
    except OSError as e:
        raise DockerfileError(str(e), file=str(path), line=None) from None


def _build_platform(
    options: BuildOptions,
    parsed: df.Dockerfile,
    platform: Platform,
    host: Platform,
    store: Layout,
    tmp: Path,
    client: Callable[[], RegistryClient],
    progress: Progress | None,
) -> tuple[Descriptor, tuple[str, ...]]:
    bases: dict[tuple[str, str], tuple[Source, ResolvedImage]] = {}

    def base_image(ref: str, plat: Platform) -> tuple[Source, ResolvedImage]:
        key = (ref, str(plat))
        if key not in bases:
            source = open_source(parse_any(ref), client)
            bases[key] = (source, resolve_image(source, plat))
        return bases[key]

    plan = df.plan(
        parsed,
        target_platform=platform,
        build_platform=host,
        build_args=options.build_args,
        target=options.target,
        base_config=lambda ref, plat: base_image(ref, plat)[1].config.config,
    )
    total = sum(1 + len(s.steps) for s in plan.stages)
    counter = [0]
    states: dict[int, _StageState] = {}
    pdir = tmp / str(platform).replace("/", "-")
    pdir.mkdir()
    file = str(options.dockerfile)
    for stage in plan.stages:
        counter[0] += 1
        t0 = time.monotonic()
        _emit(progress, StepEvent(platform, counter[0], total, f"FROM {stage.base}"))
        state = _stage_base(stage, states, pdir, store, base_image)
        _emit(
            progress,
            StepEvent(platform, counter[0], total, f"FROM {stage.base}", time.monotonic() - t0),
        )
        for step in stage.steps:
            counter[0] += 1
            t0 = time.monotonic()
            _emit(progress, StepEvent(platform, counter[0], total, step.text))
            try:
                _run_step(step, state, stage, states, options, store, file)
            except ManyarchError:
                raise
            except OSError as e:
                raise BuildError(f"{file}:{step.line}: {step.text}: {e}") from None
            _emit(
                progress,
                StepEvent(platform, counter[0], total, step.text, time.monotonic() - t0),
            )
        states[stage.index] = state
    final = states[plan.stages[-1].index]
    desc = _write_image(final, platform, options, store)
    return desc, tuple(plan.unused_build_args)


def _emit(progress: Progress | None, event: StepEvent) -> None:
    if progress is not None:
        progress(event)


def _stage_base(
    stage: df.Stage,
    states: dict[int, _StageState],
    pdir: Path,
    store: Layout,
    base_image: Callable[[str, Platform], tuple[Source, ResolvedImage]],
) -> _StageState:
    rootfs = pdir / f"stage{stage.index}"
    plat = stage.platform
    if stage.base == "scratch":
        rootfs.mkdir()
        cfg = ImageConfig(plat.architecture, plat.os, plat.variant)
        return _StageState(rootfs, cfg.with_config(df.stage_base_config(cfg.config)), [])
    if stage.base.startswith("stage:"):
        src = states[int(stage.base.split(":", 1)[1])]
        shutil.copytree(src.rootfs, rootfs, symlinks=True)
        return _StageState(rootfs, src.config, list(src.layers), src.base_name, src.base_digest)
    source, image = base_image(stage.base, plat)
    copy_blobs(source, LayoutSink(store), [image.manifest.config, *image.manifest.layers])
    store.put_document(image.manifest_doc)
    rootfs.mkdir()
    unpack(
        rootfs,
        [(str(d.digest), store.blob_path(d.digest), d.media_type) for d in image.manifest.layers],
    )
    config = replace(image.config, created=None)
    return _StageState(
        rootfs,
        config.with_config(df.stage_base_config(config.config)),
        list(image.manifest.layers),
        source.name,
        str(image.descriptor.digest),
    )


def _run_step(
    step: object,
    state: _StageState,
    stage: df.Stage,
    states: dict[int, _StageState],
    options: BuildOptions,
    store: Layout,
    file: str,
) -> None:
    if isinstance(step, df.RunStep):
        before = Snapshot.take(state.rootfs)
        _run(step, state, options, file)
        _commit_layer(state, before, step.text, options, store)
    elif isinstance(step, df.CopyStep):
        before = Snapshot.take(state.rootfs)
        _copy(step, state, states, options, file)
        _commit_layer(state, before, step.text, options, store)
    elif isinstance(step, df.ConfigStep):
        new = step.apply(state.config.config)
        if step.author is not None:
            state.config = replace(state.config, author=step.author)
        if step.mkdir and new.working_dir:
            before = Snapshot.take(state.rootfs)
            _mkdir_in_root(state.rootfs, new.working_dir)
            state.config = state.config.with_config(new)
            if not _commit_layer(state, before, step.text, options, store):
                state.config = state.config.with_history(_history(step.text, options))
            return
        state.config = state.config.with_config(new).with_history(_history(step.text, options))
    else:
        raise BuildError(f"{file}: unsupported step {step!r}")


def _history(text: str, options: BuildOptions) -> History:
    created = _rfc3339(options.epoch) if options.epoch is not None else None
    return History(created=created, created_by=text, comment="manyarch")


def _rfc3339(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _commit_layer(
    state: _StageState, before: Snapshot, text: str, options: BuildOptions, store: Layout
) -> bool:
    with store.writer() as w:
        info = write_diff_layer(
            state.rootfs,
            before,
            cast(BinaryIO, w),
            compression="gzip",
            epoch=options.epoch,
            docker=options.docker_media_types,
        )
        if info is None:
            state.config = state.config.with_history(_history(text, options))
            return False
        w.commit(info.digest)
    state.layers.append(info.descriptor())
    state.config = state.config.with_layer(info.diff_id, _history(text, options))
    return True


def _run(step: df.RunStep, state: _StageState, options: BuildOptions, file: str) -> None:
    cfg = state.config.config
    env = {"PATH": DEFAULT_ENV_PATH, **cfg.env_dict(), **dict(step.env)}
    binds: list[Bind] = []
    if HOST_CA_BUNDLE.exists():
        binds.append(Bind(HOST_CA_BUNDLE, SANDBOX_CA_BUNDLE))
        env.setdefault("SSL_CERT_FILE", SANDBOX_CA_BUNDLE)
        env.setdefault("PIP_CERT", SANDBOX_CA_BUNDLE)
        env.setdefault("REQUESTS_CA_BUNDLE", SANDBOX_CA_BUNDLE)
    network = step.network if step.network not in ("", "default") else options.network
    workdir = cfg.working_dir or "/"
    _mkdir_in_root(state.rootfs, workdir)
    spec = SandboxSpec(
        rootfs=state.rootfs,
        argv=list(step.argv),
        env=env,
        cwd=workdir,
        user=cfg.user,
        network="none" if network == "none" else "host",
        binds=binds,
    )
    r = sandbox_run(spec)
    if r.returncode != 0:
        raise BuildError(
            f"{file}:{step.line}: {step.text}: exited with code {r.returncode}",
            "the command failed in the build sandbox; its output is above",
        )


def _mkdir_in_root(rootfs: Path, path: str) -> None:
    target = _inside(rootfs, path)
    target.mkdir(parents=True, exist_ok=True)


def _inside(rootfs: Path, path: str) -> Path:
    """``path`` (absolute in the image) under ``rootfs``, symlinks resolved inside it."""
    parts = [p for p in Path("/" + path.lstrip("/")).parts[1:] if p not in ("", ".")]
    cur = rootfs
    hops = 0
    i = 0
    while i < len(parts):
        part = parts[i]
        if part == "..":
            cur = cur.parent if cur != rootfs else rootfs
            i += 1
            continue
        nxt = cur / part
        if nxt.is_symlink():
            hops += 1
            if hops > 40:
                raise BuildError(f"too many levels of symbolic links in {path}")
            target = os.readlink(nxt)
            rest = [p for p in Path(target).parts if p not in ("", ".")]
            if target.startswith("/"):
                cur = rootfs
                rest = rest[1:]
            parts = parts[:i] + rest + parts[i + 1 :]
            continue
        cur = nxt
        i += 1
    return cur


def _copy(
    step: df.CopyStep,
    state: _StageState,
    states: dict[int, _StageState],
    options: BuildOptions,
    file: str,
) -> None:
    if step.from_ is not None:
        if not step.from_.startswith("stage:"):
            raise BuildError(
                f"{file}:{step.line}: COPY --from={step.from_}: copying from an image "
                "is not supported yet",
                "add a stage: FROM IMAGE AS name, then COPY --from=name",
            )
        src_root = states[int(step.from_.split(":", 1)[1])].rootfs
        sources = _expand_sources(src_root, step.sources, None, file, step.line, confine=False)
    else:
        context = options.context.resolve()
        ignore = _dockerignore(context)
        sources = _expand_sources(context, step.sources, ignore, file, step.line, confine=True)
    dest = step.dest
    if step.chown:
        ids = resolve_user(state.rootfs, step.chown)
        owner: tuple[int, int] | None = (ids.uid, ids.gid)
    else:
        owner = None
    mode = int(step.chmod, 8) if step.chmod else None
    many = len(sources) > 1 or any(s.is_dir() and not s.is_symlink() for s, _ in sources)
    dest_is_dir = dest.endswith("/") or many
    for src, _rel in sources:
        if src.is_dir() and not src.is_symlink():
            target = _inside(state.rootfs, dest)
            target.mkdir(parents=True, exist_ok=True)
            _copy_tree(src, target, owner, mode, ignore=None)
        else:
            target_path = dest.rstrip("/") + "/" + src.name if dest_is_dir else dest
            parent = _inside(state.rootfs, str(Path(target_path).parent))
            parent.mkdir(parents=True, exist_ok=True)
            _copy_one(src, parent / Path(target_path).name, owner, mode)


def _expand_sources(
    base: Path,
    patterns: Sequence[str],
    ignore: df.DockerIgnore | None,
    file: str,
    line: int,
    *,
    confine: bool,
) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    for pat in patterns:
        rel = os.path.normpath(pat.lstrip("/")) if pat not in ("", ".", "/") else "."
        if rel == ".." or rel.startswith("../"):
            raise BuildError(
                f"{file}:{line}: COPY source {pat!r} is outside the build context",
                "a COPY source must be inside the context directory",
            )
        if any(ch in rel for ch in "*?["):
            matches = sorted(glob.glob(rel, root_dir=str(base)))
            if not matches:
                raise BuildError(f"{file}:{line}: no source files were specified by {pat!r}")
            for m in matches:
                if confine:
                    _check_confined(base, base / m, pat, file, line)
                if not (ignore and ignore.matches(m)):
                    out.append((base / m, m))
            continue
        path = base / rel if rel != "." else base
        if confine:
            _check_confined(base, path, pat, file, line)
        if not (path.exists() or path.is_symlink()) or (
            ignore is not None and rel != "." and ignore.matches(rel)
        ):
            raise BuildError(
                f"{file}:{line}: COPY source {pat!r} not found in the build context",
                "check the path (relative to the context) and .dockerignore",
            )
        out.append((path, rel))
    return out


def _check_confined(base: Path, path: Path, pat: str, file: str, line: int) -> None:
    # a symlinked directory on the way may point out of the context
    parent = path.parent.resolve()
    if parent != base and base not in parent.parents:
        raise BuildError(
            f"{file}:{line}: COPY source {pat!r} escapes the build context",
            "a COPY source must be inside the context directory",
        )


def _dockerignore(context: Path) -> df.DockerIgnore | None:
    p = context / ".dockerignore"
    if not p.exists():
        return None
    return df.DockerIgnore.parse(p.read_text())


def _copy_tree(
    src: Path, dst: Path, owner: tuple[int, int] | None, mode: int | None, ignore: object
) -> None:
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if target.is_symlink() or (target.exists() and not target.is_dir()):
                _remove(target)
            target.mkdir(exist_ok=True)
            shutil.copystat(entry, target)
            if owner:
                os.lchown(target, *owner)
            if mode is not None:
                os.chmod(target, mode)
            _copy_tree(entry, target, owner, mode, ignore)
        else:
            _copy_one(entry, target, owner, mode)


def _copy_one(src: Path, dst: Path, owner: tuple[int, int] | None, mode: int | None) -> None:
    if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
        _remove(dst)
    elif dst.is_dir():
        dst = dst / src.name
        if dst.is_symlink() or dst.exists():
            _remove(dst)
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(src.lstat().st_mode):
        shutil.copy2(src, dst, follow_symlinks=False)
    else:
        return  # sockets, fifos, devices are not copied from a context
    if owner:
        os.lchown(dst, *owner)
    elif os.geteuid() == 0 and not src.is_symlink():
        os.chown(dst, 0, 0)  # BuildKit: COPY without --chown gives root:root
    if mode is not None and not dst.is_symlink():
        os.chmod(dst, mode)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink()


def _write_image(
    state: _StageState, platform: Platform, options: BuildOptions, store: Layout
) -> Descriptor:
    cfg = state.config
    labels = {**cfg.config.labels, **options.labels}
    cfg = cfg.with_config(replace(cfg.config, labels=labels))
    cfg = replace(
        cfg,
        architecture=platform.architecture,
        os=platform.os,
        variant=platform.variant,
        created=_rfc3339(options.epoch) if options.epoch is not None else None,
    )
    docker = options.docker_media_types
    cfg = replace(cfg, media_type=mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG)
    cdesc = store.put_document(cfg.to_document())
    layers = tuple(_layer_type(d, docker) for d in state.layers)
    annotations: dict[str, str] = {}
    if not docker:
        if options.epoch is not None:
            annotations[CREATED] = _rfc3339(options.epoch)
        if state.base_name:
            annotations[BASE_NAME] = state.base_name
            annotations[BASE_DIGEST] = state.base_digest
        annotations.update(
            {
                k.removeprefix("manifest:"): v
                for k, v in options.annotations.items()
                if not k.startswith("index:")
            }
        )
    manifest = Manifest(
        config=Descriptor(cdesc.media_type, cdesc.digest, cdesc.size),
        layers=layers,
        media_type=mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST,
        annotations=annotations,
    )
    mdesc = store.put_document(manifest.to_document())
    return mdesc.with_platform(platform)


def _layer_type(d: Descriptor, docker: bool) -> Descriptor:
    comp = mt.compression(d.media_type)
    if docker and comp == "gzip":
        return replace(d, media_type=mt.DOCKER_LAYER, annotations={})
    if not docker and d.media_type == mt.DOCKER_LAYER:
        return replace(d, media_type=mt.OCI_LAYER_GZIP)
    return d
