"""The local side of a session: the store's images, and containers (docker's verbs)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from manyarch.errors import InvalidArgument, ManyarchError, NotFound
from manyarch.session.values import Container, PruneReport, RmiResult, Started, platform_of

if TYPE_CHECKING:
    from manyarch.images import TransferProgress
    from manyarch.layout import Layout
    from manyarch.oci.platform import Platform
    from manyarch.oci.reference import AnyReference
    from manyarch.registry import RegistryClient
    from manyarch.run.container import ContainerState, RunOptions
    from manyarch.run.local import LocalImage, PullPolicy
    from manyarch.run.logs import Record


class LocalCalls:
    """``images``, ``rmi``, ``save``, ``load``, ``prune``; ``create``, ``start``, ``run``,
    ``ps``, ``logs``, ``stop``, ``rm``: the calls of :class:`~manyarch.Session` that work
    on this machine (a registry only when ``run`` pulls)."""

    jobs: int

    @property
    def store(self) -> Layout:
        """The local store (the session's)."""
        raise NotImplementedError

    def _client_for(self, ref: AnyReference) -> RegistryClient | None:
        raise NotImplementedError

    def images(self) -> list[LocalImage]:
        """Every image in the local store, as ``images`` lists them."""
        from manyarch.run.local import list_images

        return list_images(self.store)

    def images_matching(
        self, reference: str | None = None, filters: Sequence[str] = ()
    ) -> list[LocalImage]:
        """``images [REPOSITORY[:TAG]] --filter ...``: the images that match, in store order."""
        from manyarch.run import describe, local

        imgs = local.list_images(self.store)
        if reference:
            imgs = [i for i in imgs if describe.matches_reference(i, reference)]
        imgs = [i for i in imgs if describe.image_filter(filters)(i)]
        for f in filters:
            key, _, value = f.partition("=")
            if key in ("before", "since"):
                hits = local.lookup(self.store, value)
                if not hits:
                    raise InvalidArgument(f"no such image: {value}")
                ref = describe.image_row(hits[0])["CreatedAt"]
                imgs = [
                    i
                    for i in imgs
                    if (describe.image_row(i)["CreatedAt"] < ref) == (key == "before")
                    and i.id != hits[0].id
                ]
        return imgs

    def rmi(self, *images: str, prune: bool = False, force: bool = False) -> RmiResult:
        """Untag images (by name or id); the unpacked trees nothing uses go too.

        An image a container (running or not) is made from is refused, as
        docker refuses it, unless ``force``. An image that cannot be removed
        is an entry of ``errors``, not an exception: the others still go.
        ``prune`` then deletes every blob no image refers to (the build's
        results included).
        """
        from manyarch import rootfs
        from manyarch.run import container, local

        store = self.store
        untagged: dict[str, list[LocalImage]] = {}
        errors: dict[str, ManyarchError] = {}
        users = container.list_containers(all_=True)
        for word in images:
            try:
                hits = local.lookup(store, word)
                digests = {str(i.descriptor.digest) for i in hits}
                using = [c for c in users if c.manifest_digest in digests]
                if using and not force:
                    raise InvalidArgument(
                        f'conflict: unable to remove repository reference "{word}" (must '
                        f"force) - container {using[0].id[:12]} is using its referenced image "
                        f"{hits[0].id.short}",
                        f"remove the container {using[0].name} first, or remove the image by force",
                    )
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
        dest: str | Path | BinaryIO,
        *,
        platform: str | Platform | None = None,
        format: str = "oci",
    ) -> list[str]:
        """Write images of the local store to an OCI archive (``format="docker"``: docker's)."""
        from manyarch.run.local import save

        if format not in ("oci", "docker"):
            raise InvalidArgument(f"unknown archive format {format!r}", "use oci or docker")
        return save(
            self.store,
            images,
            Path(dest) if isinstance(dest, (str, Path)) else dest,
            platform=platform_of(platform),
            docker=format == "docker",
        )

    def load(self, archive: str | Path | BinaryIO) -> list[str]:
        """Read images from an archive (a path or a stream): an OCI archive (``save``'s,
        buildx's, ``docker save``'s since 25) or a docker archive (older ``docker save``,
        skopeo's ``docker-archive``); returns the names it tagged (``none@DIGEST``: unnamed)."""
        from manyarch.run.local import load

        return load(self.store, Path(archive) if isinstance(archive, (str, Path)) else archive)

    def prune(self, *, all: bool = False, keep_storage: int | str | None = None) -> PruneReport:
        """Trim the build cache to ``keep_storage`` (LRU; ``all``: empty it and drop the
        unpacked trees nothing uses); killed builds' working directories and the cache
        mounts no build holds always go (as ``docker builder prune`` takes them)."""
        from manyarch import rootfs
        from manyarch.imagebuild.cache import buildcache_dir, cache_home, parse_size, prune
        from manyarch.imagebuild.cachemounts import prune_cachemounts
        from manyarch.imagebuild.nativeapt.apt import prune_debs
        from manyarch.imagebuild.workdirs import sweep
        from manyarch.run import container, local
        from manyarch.store import work_dir

        keep = parse_size(keep_storage) if isinstance(keep_storage, str) else keep_storage
        swept = sweep(work_dir())
        # what killed pulls and unpacks left (no live writer holds it)
        self.store.remove_stale_temps()
        rootfs.remove_stale_unpacks()
        cache = prune(keep_bytes=keep, all=all)
        prune_debs(cache_home(), keep_bytes=keep, all=all)
        trees = None
        if all:
            used = {str(i.descriptor.digest) for i in local.list_images(self.store)}
            trees = rootfs.prune_unused(used | container.in_use())
        mounts = prune_cachemounts()
        return PruneReport(len(swept), cache, buildcache_dir(), trees, rootfs.cache_dir(), mounts)

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
        wanted = platform_of(platform)
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

    def start(self, created: Container | str, *, detach: bool = False) -> Started:
        """Run a created container: supervised here until it ends (its exit code in the
        state), or (``detach``) by a supervisor of its own, returning once it runs. A name
        or id starts that stopped container again, detached (docker's ``start``)."""
        from manyarch.run import container, supervisor

        if isinstance(created, str):
            return Started(supervisor.start_again(container.find(created)))
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

    def ps(
        self,
        *,
        all: bool = False,
        filters: Sequence[str] = (),
        last: int | None = None,
    ) -> list[ContainerState]:
        """The running containers (``all``, ``filters`` or ``last``: the stopped ones too),
        newest first; docker's ``--filter`` keys; ``last``: only the N newest."""
        from manyarch.run import container, describe

        every = all or bool(filters) or last is not None
        states = [
            s for s in container.list_containers(all_=every) if describe.ps_filter(filters)(s)
        ]
        states = describe.before_since(states, filters, container.find)
        return states if last is None else states[: max(last, 0)]

    def container(self, word: str) -> ContainerState:
        """A container by name, id or id prefix."""
        from manyarch.run import container

        return container.find(word)

    def logs(
        self,
        word: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: str | float | None = None,
        until: str | float | None = None,
    ) -> Iterator[Record]:
        """What a container wrote (foreground or detached), record by record with its time
        and stream; ``tail``, ``since`` and ``until`` as docker reads them (RFC 3339, Unix
        seconds or a duration before now); ``follow``: until it ends."""
        from manyarch.run import container, logs
        from manyarch.units import parse_timestamp

        state = container.find(word)
        start = parse_timestamp(since) if isinstance(since, str) else since
        end = parse_timestamp(until) if isinstance(until, str) else until
        records = logs.read(state.log)
        yield from logs.select(records, tail=tail, since=start, until=end)
        if not follow or end is not None:
            return

        def done() -> bool:
            current = container.load_state(state.directory)
            return current is None or current.status == "exited"

        for i, r in enumerate(logs.follow(state.log, done)):
            if i >= len(records) and (start is None or r.time >= start):
                yield r

    def stop(
        self, word: str, *, timeout: float | None = None, signal: str | None = None
    ) -> ContainerState:
        """Send the stop signal (``signal``, else the container's), then SIGKILL after
        ``timeout`` seconds (else the container's stop timeout, else 10); no restart after."""
        from manyarch.run import container

        state = container.find(word)
        if signal:
            container.parse_signal(signal)
        container.stop(state, timeout, signal)
        return state

    def kill(self, word: str, *, signal: str = "SIGKILL") -> ContainerState:
        """Send a signal to the container's PID 1 (SIGKILL by default)."""
        from manyarch.run import container

        state = container.find(word)
        container.kill(state, signal)
        return state

    def restart(
        self, word: str, *, timeout: float | None = None, signal: str | None = None
    ) -> Started:
        """Stop, then start again (detached)."""
        from manyarch.run import container, supervisor

        state = self.stop(word, timeout=timeout, signal=signal)
        current = container.load_state(state.directory)
        if current is None:
            raise NotFound(f"container {state.name} was removed when it stopped")
        return Started(supervisor.start_again(current))

    def exec(
        self,
        word: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        workdir: str | None = None,
        interactive: bool = False,
        tty: bool = False,
        detach: bool = False,
    ) -> int:
        """Run ``command`` in a running container (its namespaces, user, working directory
        and environment, ``env`` over it); its exit code (126/127 when it cannot run)."""
        import os

        from manyarch.run import container, enter

        state = container.find(word)
        if not container.is_running(state) or not state.pid:
            raise InvalidArgument(f"container {state.name} is not running", "start it first")
        full = dict(state.env)
        full.update(env or {})
        if tty:
            full.setdefault("TERM", os.environ.get("TERM") or "xterm")
        return enter.run(
            state, list(command), env=full, user=state.user if user is None else user,
            workdir=workdir or state.cwd, interactive=interactive, tty=tty, detach=detach,
        )  # fmt: skip

    def describe(self, *words: str, type: str | None = None) -> list[dict[str, Any]]:
        """``inspect``: docker's JSON of each container or image named (``type``:
        ``container`` or ``image`` only); a name that is neither raises NotFound."""
        from manyarch.run import container, describe, local

        out: list[dict[str, Any]] = []
        for word in words:
            if type != "image":
                try:
                    out.append(describe.container_inspect(container.find(word)))
                    continue
                except NotFound:
                    if type == "container":
                        raise
            hits = local.lookup(self.store, word)
            if not hits:
                raise NotFound(f"no such object: {word}", "name a container or an image")
            best = local.best_of(hits)
            names = [i.name for i in local.list_images(self.store) if i.id == best.id]
            out.append(describe.image_inspect(best, names))
        return out

    def rm(self, word: str, *, force: bool = False, volumes: bool = False) -> None:
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
        container.remove(state, force=force, volumes=volumes)
