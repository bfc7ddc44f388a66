"""manyarch as a library: one :class:`Session` that every command is a call of.

A session owns what the calls share: ONE registry client (one connection
pool, one token cache, one close; made on first use, and passed down to
whatever reads or writes a registry), the local store, the build cache. Its
calls are the seams of crane (``copy``) and ko (``build`` returns a result,
``publish(result, destination)`` returns a reference)::

    with manyarch.Session(insecure_registries=["localhost:5000"]) as s:
        result = s.build("ctx", platforms=["linux/amd64", "linux/arm64"])
        s.publish(result, "localhost:5000/app:1")
        print(s.inspect("localhost:5000/app:1").text)

Defaults are the CLI's: native pip and the build cache are on, registries
and buildkitd.toml are found as :mod:`manyarch.config` says, and a build's
media types are chosen per destination (:mod:`manyarch.publish`), so a call
gives the digest the matching command line gives.

Importing this module is cheap (``manyarch --version`` imports it): every
call imports what it runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from manyarch import config
from manyarch.errors import InvalidArgument, ManyarchError

if TYPE_CHECKING:
    from manyarch.baseimage.image import BaseImage
    from manyarch.baseimage.options import BaseProgress
    from manyarch.imagebuild.cache import CacheSpec, PruneResult
    from manyarch.imagebuild.options import BuildResult, StepProgress
    from manyarch.images import TransferProgress
    from manyarch.inspect import Inspection
    from manyarch.layout import Layout
    from manyarch.oci.digest import Digest
    from manyarch.oci.document import Document
    from manyarch.oci.manifest import Descriptor
    from manyarch.oci.platform import Platform
    from manyarch.oci.reference import AnyReference
    from manyarch.publish import Destination, MediaTypes, Stored
    from manyarch.registry import RegistryClient, RegistryOptions
    from manyarch.run.container import ContainerState, RunOptions
    from manyarch.run.local import LocalImage, PullPolicy, PullResult


@dataclass(frozen=True)
class BaseResult:
    """A base image built (or taken from the base cache) and put in the local store."""

    store: Layout
    descriptor: Descriptor
    manifests: tuple[Descriptor, ...]
    image: BaseImage
    #: Bases are OCI images wherever they go.
    media_types: MediaTypes | None = "oci"

    def sbom(self, name: str) -> dict[str, Any]:
        """The packages of every platform as an SPDX 2.3 JSON document."""
        from manyarch.baseimage import spdx

        return spdx.spdx_document(self.image, name)


@dataclass(frozen=True)
class Container:
    """A container created from an image, not started yet."""

    state: ContainerState
    image: LocalImage
    #: What docker would warn about (an image of another platform than this host's).
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Started:
    """A container started: its state, and once it has ended its exit code and
    (detached) what it wrote meanwhile."""

    state: ContainerState
    exit_code: int | None = None
    output: bytes = b""


@dataclass(frozen=True)
class RmiResult:
    """What ``rmi`` did, image by image (in the order given)."""

    untagged: Mapping[str, list[LocalImage]] = field(default_factory=dict)
    errors: Mapping[str, ManyarchError] = field(default_factory=dict)
    #: Blobs deleted (with ``prune``).
    deleted: list[Digest] = field(default_factory=list)


@dataclass(frozen=True)
class PruneReport:
    """What ``prune`` removed."""

    #: Working directories of builds that were killed.
    swept: int
    cache: PruneResult
    cache_dir: Path
    #: Unpacked image trees nothing used (with ``all``; None otherwise).
    trees: list[Digest] | None
    trees_dir: Path


class Session:
    """One registry client, the local store and the build cache, and every call on them.

    ``insecure_registries`` may use plain http and unverified TLS (docker's
    ``insecure-registries``); ``buildkitd_config`` and ``daemon_config`` name
    the files to read instead of BuildKit's and docker's own places;
    ``registry`` (a :class:`~manyarch.registry.RegistryOptions`) replaces all of
    that when given. ``jobs`` blobs move at a time.
    """

    def __init__(
        self,
        *,
        insecure_registries: Iterable[str] = (),
        buildkitd_config: str | Path | None = None,
        daemon_config: str | Path | None = None,
        registry: RegistryOptions | None = None,
        jobs: int = 4,
    ) -> None:
        if isinstance(insecure_registries, str):
            raise InvalidArgument("insecure_registries is a list of hosts, not one string")
        if jobs < 1:
            raise InvalidArgument(f"jobs must be at least 1, not {jobs}")
        self.jobs = jobs
        self._insecure = tuple(insecure_registries)
        self._buildkitd = buildkitd_config
        self._daemon = daemon_config
        self._options = registry
        self._client: RegistryClient | None = None
        self._store: Layout | None = None
        self._lock = threading.Lock()

    # -- what the session owns --------------------------------------------------------

    @property
    def registry_options(self) -> RegistryOptions:
        """The options of the session's registry client (configuration files read once)."""
        with self._lock:
            if self._options is None:
                self._options = config.registry_options(
                    insecure=self._insecure,
                    buildkitd_config=self._buildkitd,
                    daemon_json=self._daemon,
                    jobs=self.jobs,
                )
            return self._options

    @property
    def registry(self) -> RegistryClient:
        """The session's one registry client, made on first use."""
        options = self.registry_options
        with self._lock:
            if self._client is None:
                from manyarch.registry import RegistryClient

                self._client = RegistryClient(options)
            return self._client

    @property
    def store(self) -> Layout:
        """The local store (``$MANYARCH_STORE``, else ``$XDG_DATA_HOME/manyarch/store``)."""
        with self._lock:
            if self._store is None:
                from manyarch.store import open_store

                self._store = open_store()
            return self._store

    def close(self) -> None:
        """Close the registry client's connections."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _client_for(self, ref: AnyReference) -> RegistryClient | None:
        from manyarch.oci.reference import Reference

        return self.registry if isinstance(ref, Reference) else None

    # -- images in registries and layouts ---------------------------------------------

    def build(
        self,
        context: str | Path,
        *,
        platforms: Sequence[str | Platform] = (),
        dockerfile: str | Path | None = None,
        build_args: Mapping[str, str] | None = None,
        target: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        network: str = "default",
        media_types: MediaTypes | None = None,
        epoch: int | None = None,
        no_cache: bool = False,
        cache_from: Sequence[str | CacheSpec] = (),
        cache_to: str | CacheSpec | None = None,
        native_pip: bool = True,
        progress: StepProgress | None = None,
    ) -> BuildResult:
        """Build a Dockerfile for every platform (in parallel) into the local store.

        ``platforms`` default to this host's; ``dockerfile`` to CONTEXT/Dockerfile;
        ``epoch`` to ``SOURCE_DATE_EPOCH``, else the newest base's ``created``.
        ``media_types`` (``docker`` or ``oci``) fixes the form of the result;
        None leaves it to each :meth:`publish` (OCI in the store). ``cache_from``
        and ``cache_to`` are buildx's ``type=local,src=DIR`` / ``dest=DIR`` or
        ``type=registry,ref=REF``; ``no_cache`` reads no cache (and still
        records). ``native_pip`` runs ``pip install`` lines natively for the
        target's wheels. ``progress`` receives every step's events.
        """
        from manyarch.imagebuild.cache import CacheSpec, build_hooks
        from manyarch.imagebuild.executor import build as execute
        from manyarch.imagebuild.options import BuildOptions
        from manyarch.publish import check_media_types, in_media_types

        wanted = check_media_types(media_types)
        where = Path(context)
        if not where.is_dir():
            raise InvalidArgument(f"build context {str(context)!r} is not a directory")
        options = BuildOptions(
            context=where,
            dockerfile=Path(dockerfile) if dockerfile is not None else where / "Dockerfile",
            platforms=_platforms(platforms),
            build_args=dict(build_args or {}),
            target=target,
            network=network,
            labels=dict(labels or {}),
            annotations=dict(annotations or {}),
            epoch=epoch if epoch is not None else config.source_date_epoch(),
        )
        export = CacheSpec.parse(cache_to, export=True) if isinstance(cache_to, str) else cache_to
        imports = [
            CacheSpec.parse(c, export=False) if isinstance(c, str) else c for c in cache_from
        ]
        registry_cache = any(c.type == "registry" for c in [*imports, export] if c is not None)
        store = self.store
        with build_hooks(
            store,
            no_cache=no_cache,
            native_pip=native_pip,
            cache_to=export,
            cache_from=imports,
            client=self.registry if registry_cache else None,
        ) as hooks:
            options = replace(options, interceptors=hooks.interceptors, observers=hooks.observers)
            result = execute(options, progress, store=store, client=self.registry)
            hooks.finish()
        warnings = [
            *hooks.warnings,
            *(
                f'build-arg "{n}" was not consumed by the Dockerfile'
                for n in result.unused_build_args
            ),
        ]
        result = replace(result, media_types=wanted, warnings=tuple(warnings))
        if wanted == "docker":
            with store.lease():
                result = replace(
                    result,
                    descriptor=in_media_types(store, result.descriptor, "docker"),
                    manifests=tuple(in_media_types(store, m, "docker") for m in result.manifests),
                )
        return result

    def publish(
        self,
        result: Stored,
        destination: str | Destination,
        *,
        media_types: MediaTypes | None = None,
        progress: TransferProgress | None = None,
    ) -> str:
        """Take a build's (or a base's) result to a registry, a layout or an archive.

        ``destination`` is ``REGISTRY/REPO[:TAG]``, ``oci-layout://DIR[:TAG]``,
        ``oci-archive://FILE[:TAG]``, ``docker-archive://FILE[:NAME]`` or a
        :mod:`manyarch.publish` destination. The media types are ``media_types``,
        else the result's, else the destination's own (Docker's in a registry
        and a docker archive, OCI ones in a layout). Returns ``NAME@DIGEST``.
        """
        from manyarch.publish import (
            RegistryDestination,
            check_media_types,
            default_media_types,
            in_media_types,
            parse_destination,
            publish,
        )

        dest = parse_destination(destination) if isinstance(destination, str) else destination
        wanted = check_media_types(media_types) or result.media_types or default_media_types(dest)
        store = result.store
        with store.lease():
            desc = in_media_types(store, result.descriptor, wanted)
            client = self.registry if isinstance(dest, RegistryDestination) else None
            return publish(store, desc, dest, client=client, jobs=self.jobs, progress=progress)

    def copy(
        self,
        source: str,
        destination: str,
        *,
        platforms: Sequence[str | Platform] = (),
        progress: TransferProgress | None = None,
    ) -> Descriptor:
        """Copy an image or index between registries and ``oci-layout://`` directories.

        With ``platforms`` an index is narrowed to those (one platform: its manifest).
        """
        from manyarch.images import copy, open_sink, open_source
        from manyarch.oci.reference import parse_any

        src_ref, dst_ref = parse_any(source), parse_any(destination)
        src = open_source(src_ref, self._client_for(src_ref))
        sink, tag = open_sink(dst_ref, self._client_for(dst_ref))
        chosen = _platforms(platforms) if platforms else None
        return copy(src, sink, tag=tag, platforms=chosen, jobs=self.jobs, progress=progress)

    def inspect(self, ref: str) -> Inspection:
        """An image or index as ``imagetools inspect`` shows it: text, raw bytes, templates."""
        from manyarch.images import open_source
        from manyarch.inspect import Inspection
        from manyarch.oci.reference import parse_any

        parsed = parse_any(ref)
        return Inspection(_shown_name(parsed), open_source(parsed, self._client_for(parsed)))

    def create_index(
        self,
        sources: Sequence[str],
        targets: Sequence[str] = (),
        *,
        append: bool = False,
        annotations: Mapping[str, str] | None = None,
        push: bool = True,
    ) -> Document:
        """One index over the images of ``sources`` (``imagetools create``), written to ``targets``.

        ``append`` keeps what the first target already holds, first.
        ``annotations`` go to the index (``index:KEY`` or ``KEY``). Two
        images of one platform are refused. With ``push`` False nothing is
        written: the index is only returned.
        """
        from manyarch.images import merge, open_sink, open_source, put_index
        from manyarch.oci.reference import parse_any

        if not sources and not append:
            raise InvalidArgument("no source image given", "name the images to combine")
        refs = [parse_any(t) for t in targets]
        opened = [open_source(r, self._client_for(r)) for r in map(parse_any, sources)]
        if append and refs:
            opened.insert(0, open_source(refs[0], self._client_for(refs[0])))
        doc, entries = merge(opened, annotations)
        if push:
            for ref in refs:
                sink, tag = open_sink(ref, self._client_for(ref))
                put_index(sink, entries, doc, tag, jobs=self.jobs)
        return doc

    def pull(
        self,
        ref: str,
        *,
        platform: str | Platform | None = None,
        progress: TransferProgress | None = None,
    ) -> PullResult:
        """Pull one platform of an image (this host's by default) into the local store."""
        from manyarch.run.local import parse_image_ref, pull

        parsed = parse_image_ref(ref)
        return pull(
            parsed,
            self._client_for(parsed),
            platform=_platform(platform),
            store=self.store,
            jobs=self.jobs,
            progress=progress,
        )

    def base(
        self,
        *,
        platforms: Sequence[str | Platform] = (),
        preset: str = "minimal",
        suite: str | None = None,
        mirror: str | None = None,
        include: Sequence[str] = (),
        epoch: int | None = None,
        use_cache: bool = True,
        cache_dir: str | Path | None = None,
        progress: BaseProgress | None = None,
    ) -> BaseResult:
        """A multi-platform base from Debian packages (mmdebstrap, no emulation), in the store.

        Built once per inputs into the base cache, then copied into the local
        store like a build's result: :meth:`publish` takes it anywhere.
        """
        from manyarch.baseimage import options as base_options
        from manyarch.baseimage.image import build_base
        from manyarch.images import LayoutSink, LayoutSource, put_index
        from manyarch.oci.platform import Platform

        chosen = _platforms(platforms)
        kw: dict[str, Any] = {}
        if cache_dir is not None:
            kw["cache_dir"] = Path(cache_dir)
        opts = base_options.BaseOptions(
            # Debian's amd64 is the x86-64 baseline whatever this host's level (v2, v3).
            platforms=tuple(
                Platform.of(p.os, p.architecture, "" if p.architecture == "amd64" else p.variant)
                for p in chosen
            ),
            suite=suite or base_options.DEFAULT_SUITE,
            mirror=mirror or base_options.DEFAULT_MIRROR,
            include=tuple(include),
            preset=preset,
            epoch=epoch if epoch is not None else config.source_date_epoch(),
            use_cache=use_cache,
            **kw,
        )
        image = build_base(opts, progress=progress)
        store = self.store
        entries = [
            (LayoutSource(i.layout(), str(i.manifest.digest)), i.manifest) for i in image.images
        ]
        with store.lease():
            desc = put_index(LayoutSink(store), entries, image.index_document(), None)
        return BaseResult(store, desc, tuple(i.manifest for i in image.images), image)

    # -- registries' credentials ------------------------------------------------------

    def login(self, server: str, username: str, password: str) -> None:
        """Check the credentials against ``server``, then keep them in docker's config.json.

        The check uses a client of its own, given only these credentials (the
        session's one keeps the credentials it started with).
        """
        from manyarch.registry.login import login

        login(self.registry_options, server, username, password)

    def logout(self, server: str) -> bool:
        """Forget ``server``'s credentials; False when there were none."""
        from manyarch.registry.login import logout

        return logout(server)

    # -- the local side: images -------------------------------------------------------

    def images(self) -> list[LocalImage]:
        """Every image in the local store, as ``images`` lists them."""
        from manyarch.run.local import list_images

        return list_images(self.store)

    def rmi(self, *images: str, prune: bool = False) -> RmiResult:
        """Untag images (by name or id); the unpacked trees nothing uses go too.

        An image that cannot be removed is an entry of ``errors``, not an
        exception: the others still go. ``prune`` then deletes every blob no
        image refers to (the build's results included).
        """
        from manyarch import rootfs
        from manyarch.run import container, local

        store = self.store
        untagged: dict[str, list[LocalImage]] = {}
        errors: dict[str, ManyarchError] = {}
        for word in images:
            try:
                untagged[word] = local.remove(store, word)
            except ManyarchError as e:
                errors[word] = e
        still = {str(i.descriptor.digest) for i in local.list_images(store)} | container.in_use()
        for digest in rootfs.cached_digests():
            if str(digest) not in still:
                rootfs.remove_cached(digest)
        deleted = local.prune(store) if prune else []
        return RmiResult(untagged, errors, deleted)

    def save(
        self,
        images: Sequence[str],
        dest: str | Path,
        *,
        platform: str | Platform | None = None,
        format: str = "oci",
    ) -> list[str]:
        """Write images of the local store to an OCI archive (``format="docker"``: docker's)."""
        from manyarch.run.local import save

        if format not in ("oci", "docker"):
            raise InvalidArgument(f"unknown archive format {format!r}", "use oci or docker")
        return save(
            self.store, images, Path(dest), platform=_platform(platform), docker=format == "docker"
        )

    def load(self, archive: str | Path) -> list[str]:
        """Read images from an OCI archive (``save``'s, or ``docker save``'s); returns the names."""
        from manyarch.run.local import load

        return load(self.store, Path(archive))

    def prune(self, *, all: bool = False, keep_storage: int | str | None = None) -> PruneReport:
        """Trim the build cache to ``keep_storage`` (LRU; ``all``: empty it and drop the
        unpacked trees nothing uses); killed builds' working directories always go."""
        from manyarch import rootfs
        from manyarch.imagebuild.cache import buildcache_dir, parse_size, prune
        from manyarch.imagebuild.workdirs import sweep
        from manyarch.run import container, local
        from manyarch.store import work_dir

        keep = parse_size(keep_storage) if isinstance(keep_storage, str) else keep_storage
        swept = sweep(work_dir())
        cache = prune(keep_bytes=keep, all=all)
        trees = None
        if all:
            used = {str(i.descriptor.digest) for i in local.list_images(self.store)}
            trees = rootfs.prune_unused(used | container.in_use())
        return PruneReport(len(swept), cache, buildcache_dir(), trees, rootfs.cache_dir())

    # -- the local side: containers ---------------------------------------------------

    def create(
        self,
        image: str,
        options: RunOptions | None = None,
        *,
        platform: str | Platform | None = None,
        pull: PullPolicy = "missing",
        progress: TransferProgress | None = None,
    ) -> Container:
        """A container of ``image`` (pulled as ``pull`` says), ready to :meth:`start`."""
        from manyarch.oci.platform import host_platform
        from manyarch.run import container
        from manyarch.run.container import RunOptions
        from manyarch.run.local import image_for_run, parse_image_ref

        options = options or RunOptions()
        if options.stop_signal:
            container.parse_signal(options.stop_signal)  # a bad one fails before any pull
        parsed = parse_image_ref(image)
        wanted = _platform(platform)
        local_image = image_for_run(
            parsed,
            self._client_for(parsed),
            platform=wanted,
            store=self.store,
            policy=pull,
            jobs=self.jobs,
            progress=progress,
        )
        host = host_platform()
        warnings: list[str] = []
        if wanted is None and not any(p.same(local_image.platform) for p in host.fallbacks()):
            warnings.append(
                f"The requested image's platform ({local_image.platform}) does not match the "
                f"detected host platform ({host}) and no specific platform was requested"
            )
        return Container(container.create(local_image, options), local_image, tuple(warnings))

    def start(self, created: Container, *, detach: bool = False) -> Started:
        """Run a created container: supervised here until it ends (its exit code in the
        state), or (``detach``) by a supervisor of its own, returning once it runs."""
        from manyarch.run import supervisor

        if not detach:
            code = supervisor.run_foreground(created.state)
            return Started(created.state, code)
        state, output = supervisor.start_detached(created.state)
        return Started(state, state.exit_code if state.status == "exited" else None, output)

    def run(
        self,
        image: str,
        options: RunOptions | None = None,
        *,
        platform: str | Platform | None = None,
        pull: PullPolicy = "missing",
        progress: TransferProgress | None = None,
    ) -> Started:
        """:meth:`create`, then :meth:`start` (``options.detach`` says how)."""
        created = self.create(image, options, platform=platform, pull=pull, progress=progress)
        return self.start(created, detach=created.state.detached)

    def ps(self, *, all: bool = False) -> list[ContainerState]:
        """The running containers (``all``: the stopped ones too), newest first."""
        from manyarch.run import container

        return container.list_containers(all_=all)

    def container(self, word: str) -> ContainerState:
        """A container by name, id or id prefix."""
        from manyarch.run import container

        return container.find(word)

    def logs(self, word: str, *, follow: bool = False) -> Iterator[bytes]:
        """What a detached container wrote; ``follow``: until it ends."""
        from manyarch.run import container

        return container.read_log(container.find(word), follow=follow)

    def stop(self, word: str, *, timeout: float | None = None) -> ContainerState:
        """Send the stop signal, then SIGKILL after ``timeout`` seconds."""
        from manyarch.run import container

        state = container.find(word)
        container.stop(state, container.DEFAULT_STOP_TIMEOUT if timeout is None else timeout)
        return state

    def rm(self, word: str, *, force: bool = False) -> None:
        """Remove a stopped container (``force``: stop it first).

        As ``docker buildx rm NAME`` and ``docker rm NAME`` share a command
        line, a builder of that name goes when no container has it.
        """
        from manyarch import builders
        from manyarch.errors import NotFound
        from manyarch.run import container

        try:
            state = container.find(word)
        except NotFound:
            if builders.find(word) is None:
                raise
            builders.remove(word)
            return
        container.remove(state, force=force)


def _platform(value: str | Platform | None) -> Platform | None:
    from manyarch.oci.platform import Platform

    if value is None or isinstance(value, Platform):
        return value
    return Platform.parse(value)


def _platforms(values: Sequence[str | Platform]) -> list[Platform]:
    """Platforms from values or strings (``"linux/amd64,linux/arm64"`` counts as two);
    this host's when none."""
    from manyarch.oci.platform import Platform, host_platform, parse_platforms

    if isinstance(values, str):
        values = [values]
    out: list[Platform] = []
    for v in values:
        out.extend([v] if isinstance(v, Platform) else parse_platforms([v]))
    return out or [host_platform()]


def _shown_name(ref: AnyReference) -> str:
    """How ``imagetools inspect`` names a reference (a registry one with its tag)."""
    from manyarch.oci.reference import Reference

    return str(ref.tagged_or_latest()) if isinstance(ref, Reference) else str(ref)
