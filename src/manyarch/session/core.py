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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from manyarch import config
from manyarch.errors import InvalidArgument
from manyarch.session.frontend import FrontendCalls
from manyarch.session.local import LocalCalls
from manyarch.session.values import BaseResult, platform_of, platforms_of, shown_name

if TYPE_CHECKING:
    from manyarch.baseimage.options import BaseProgress
    from manyarch.imagebuild.cache import BuildHooks, CacheSpec
    from manyarch.imagebuild.options import BuildResult, StepProgress
    from manyarch.images import TransferProgress
    from manyarch.inspect import Inspection
    from manyarch.layout import Layout
    from manyarch.oci.document import Document
    from manyarch.oci.manifest import Descriptor
    from manyarch.oci.platform import Platform
    from manyarch.oci.reference import AnyReference
    from manyarch.publish import Destination, MediaTypes, Stored
    from manyarch.registry import RegistryClient, RegistryOptions
    from manyarch.run.local import PullResult


class Session(FrontendCalls, LocalCalls):
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
        annotations: Mapping[str, str] | Sequence[str] | None = None,
        network: str = "default",
        allow: Sequence[str] = (),
        media_types: MediaTypes | None = None,
        compression: str = "gzip",
        compression_level: int | None = None,
        force_compression: bool = False,
        attest: Sequence[str] = (),
        sbom: str | None = None,
        provenance: str | None = None,
        names: Sequence[str] = (),
        add_hosts: Sequence[str] = (),
        shm_size: str | int | None = None,
        ulimits: Sequence[str] = (),
        epoch: int | None = None,
        no_cache: bool = False,
        no_cache_filter: Sequence[str] = (),
        secrets: Sequence[str] = (),
        ssh: Sequence[str] = (),
        build_contexts: Mapping[str, str] | None = None,
        cache_from: Sequence[str | CacheSpec] = (),
        cache_to: str | CacheSpec | Sequence[str | CacheSpec] | None = None,
        native_pip: bool = True,
        native_apt: bool = True,
        progress: StepProgress | None = None,
    ) -> BuildResult:
        """Build a Dockerfile for every platform (in parallel) into the local store.

        ``platforms`` default to this host's; ``dockerfile`` to CONTEXT/Dockerfile; ``epoch``
        to ``SOURCE_DATE_EPOCH``, else the newest base's ``created``. ``media_types``
        (``docker`` or ``oci``) fixes the result's form; None leaves it to each
        :meth:`publish` (attestations and annotations make it OCI, as BuildKit does). The
        others but ``names`` (the image's, its attestations' subjects), ``native_pip``,
        ``native_apt`` (pip and apt lines natively) and ``progress`` (every step's events)
        are buildx's flags as buildx spells them (``docs/api.md``).
        """
        from manyarch.export.image import ExportOptions
        from manyarch.imagebuild.cache import cache_home
        from manyarch.imagebuild.executor import build as execute
        from manyarch.publish import check_media_types
        from manyarch.session import building

        wanted = check_media_types(media_types)
        sde = config.source_date_epoch()
        options = building.build_options(
            context, dockerfile, platforms_of(platforms), build_args, target, network, labels,
            epoch=epoch if epoch is not None else sde, add_hosts=add_hosts, shm_size=shm_size,
            ulimits=ulimits, no_cache_filter=no_cache_filter, allow=allow, secrets=secrets,
            ssh=ssh, build_contexts=build_contexts,
        )  # fmt: skip
        cache_export, inline = building.cache_exports(cache_to, options.build_args)
        export_options = ExportOptions.of(
            media_types=wanted, compression=compression, compression_level=compression_level,
            force_compression=force_compression, annotations=annotations, attest=attest,
            sbom=sbom, provenance=provenance, names=names, inline_cache=inline,
        )  # fmt: skip
        started = building.now()
        with self._hooks(no_cache, (native_pip, native_apt), cache_export, cache_from) as hooks:
            options = replace(options, interceptors=hooks.interceptors, observers=hooks.observers)
            result = execute(options, progress, store=self.store, client=self.registry)
            hooks.finish()
        result = replace(result, media_types=wanted, warnings=tuple(hooks.warnings))
        return building.finish_build(
            result, options, export_options, times=building.BuildTimes(started, building.now()),
            source_date_epoch=epoch if epoch is not None else sde, cache=hooks.cache,
            wheels=cache_home() / "wheels",
        )  # fmt: skip

    def _hooks(
        self,
        no_cache: bool,
        native: tuple[bool, bool],
        cache_to: str | CacheSpec | None,
        cache_from: Sequence[str | CacheSpec],
    ) -> BuildHooks:
        """The build cache (and where it travels), native pip and apt, for one build."""
        from manyarch.imagebuild.cache import CacheSpec, build_hooks

        export = CacheSpec.parse(cache_to, export=True) if isinstance(cache_to, str) else cache_to
        imports = [
            CacheSpec.parse(c, export=False) if isinstance(c, str) else c for c in cache_from
        ]
        registry_cache = any(c.type == "registry" for c in [*imports, export] if c is not None)
        return build_hooks(
            self.store,
            no_cache=no_cache,
            native_pip=native[0],
            native_apt=native[1],
            cache_to=export,
            cache_from=imports,
            client=self.registry if registry_cache else None,
        )

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
        chosen = platforms_of(platforms) if platforms else None
        return copy(src, sink, tag=tag, platforms=chosen, jobs=self.jobs, progress=progress)

    def inspect(self, ref: str) -> Inspection:
        """An image or index as ``imagetools inspect`` shows it: text, raw bytes, templates."""
        from manyarch.images import open_source
        from manyarch.inspect import Inspection
        from manyarch.oci.reference import parse_any

        parsed = parse_any(ref)
        return Inspection(shown_name(parsed), open_source(parsed, self._client_for(parsed)))

    def create_index(
        self,
        sources: Sequence[str],
        targets: Sequence[str] = (),
        *,
        append: bool = False,
        annotations: Mapping[str, str] | Sequence[str] | None = None,
        push: bool = True,
    ) -> Document:
        """One index over the images of ``sources`` (``imagetools create``), written to ``targets``.

        A source is a reference (an index brings its attestation manifests
        along), ``REPO@sha256:...``, or a bare ``sha256:...`` found in the
        one repository the targets and other sources name, as buildx does.
        ``append`` keeps what the first target already holds, first.
        ``annotations`` are buildx's ``index:KEY=VALUE`` and
        ``manifest-descriptor[PLATFORM]:KEY=VALUE``. Two images of one
        platform are refused. With ``push`` False nothing is written: the
        index is only returned.
        """
        from manyarch.images import merge, open_sink, open_source, put_index
        from manyarch.oci.reference import parse_any
        from manyarch.session.indexes import create_annotations, resolve_sources

        if not sources and not append:
            raise InvalidArgument("no source image given", "name the images to combine")
        refs = [parse_any(t) for t in targets]
        opened = [open_source(r, self._client_for(r)) for r in resolve_sources(sources, targets)]
        if append and refs:
            opened.insert(0, open_source(refs[0], self._client_for(refs[0])))
        index_notes, entry_notes = create_annotations(annotations)
        doc, entries = merge(opened, index_notes, entry_notes)
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
            platform=platform_of(platform),
            store=self.store,
            jobs=self.jobs,
            progress=progress,
        )

    def tags(self, repository: str) -> list[str]:
        """Every tag of a registry repository, as references (``pull -a``)."""
        from manyarch.oci.reference import Reference
        from manyarch.run.local import all_tags

        ref = Reference.parse(repository)
        client = self._client_for(ref)
        if client is None:  # pragma: no cover - a registry reference always has one
            raise InvalidArgument(f"{repository} is not in a registry")
        return [str(r) for r in all_tags(ref, client)]

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

        chosen = platforms_of(platforms)
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

    @staticmethod
    def login_host(server: str) -> str:
        """The registry a login or logout argument names (``https://host/v2/`` is ``host``)."""
        from manyarch.registry.credentials import login_host

        return login_host(server)

    def logout(self, server: str) -> bool:
        """Forget ``server``'s credentials; False when there were none."""
        from manyarch.registry.login import logout

        return logout(server)
