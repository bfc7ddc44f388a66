"""The local side of a session: the store's images, and containers (docker's verbs)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from manyarch.errors import InvalidArgument, ManyarchError
from manyarch.session.values import Container, PruneReport, RmiResult, Started, platform_of

if TYPE_CHECKING:
    from manyarch.images import TransferProgress
    from manyarch.layout import Layout
    from manyarch.oci.platform import Platform
    from manyarch.oci.reference import AnyReference
    from manyarch.registry import RegistryClient
    from manyarch.run.container import ContainerState, RunOptions
    from manyarch.run.local import LocalImage, PullPolicy


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
            self.store,
            images,
            Path(dest),
            platform=platform_of(platform),
            docker=format == "docker",
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
