"""What a build is asked, what it reports while it runs, and what it returns.

The values shared by the executor (:mod:`manyarch.imagebuild.executor`) and
the hooks that take steps over (the build cache, native pip): a step's
:class:`StepContext`, an :data:`Interceptor`'s answers (:data:`RAN`, a
:class:`CachedLayer`), the :class:`StepEvent` s of the progress.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from manyarch import dockerfile as df
from manyarch.errors import BuildError
from manyarch.imagebuild.runflags import RunFlags
from manyarch.imagebuild.secrets import SecretSource
from manyarch.layout import Layout
from manyarch.oci.digest import Digest
from manyarch.oci.manifest import Descriptor, ImageConfig
from manyarch.oci.platform import Platform
from manyarch.sandbox.bwrap import SandboxSpec

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


#: Receives every step's events (the CLI draws them as buildx does).
StepProgress = Callable[[StepEvent], None]


class Ran:
    """The interceptor did the step's work in the rootfs; the executor diffs it."""

    def __repr__(self) -> str:
        return "RAN"


RAN = Ran()


@dataclass(frozen=True)
class CachedLayer:
    """A layer already in the store is the step's result; the executor applies it when needed."""

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
    #: For RUN: the sandbox the executor would run (env, user, binds, network).
    sandbox: SandboxSpec | None
    #: Shows a line of output under the step.
    log: Callable[[str], None]
    #: The names the step's stage answers to (its name and its index), for --no-cache-filter.
    stage: tuple[str, ...] = ()
    #: Before the stage's rootfs is made: a new tree of only the image's paths
    #: matching the patterns given (see ``stages.pattern_filter``), for an
    #: interceptor that reads and writes known places; after it returns
    #: :data:`RAN`, the step's layer is that tree's diff (and the rootfs is not
    #: made). None once the rootfs exists: use :attr:`rootfs`.
    open_partial: Callable[[Sequence[str]], Path] | None = None

    @property
    def rootfs(self) -> Path:
        """The stage's files before the step; made on first use (a cache hit never needs it)."""
        return self.open_rootfs()


#: Returns None to let the executor run the step, else :data:`RAN` or a :class:`CachedLayer`.
Interceptor = Callable[[StepContext], "Ran | CachedLayer | None"]
#: Told of every RUN/COPY the executor (or an interceptor's RAN) did, with its
#: layer and diff_id (None, None when it changed nothing): the build cache records it.
Observer = Callable[[StepContext, Descriptor | None, Digest | None], None]


#: BuildKit's entitlements (``--allow``).
ENTITLEMENTS = frozenset({"network.host", "security.insecure"})


@dataclass(frozen=True)
class BuildOptions:
    """Everything a build is asked, defaults in one place."""

    context: Path
    dockerfile: Path
    platforms: Sequence[Platform]
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    network: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    epoch: int | None = None
    #: ``--add-host``, ``--shm-size``, ``--ulimit``: the RUN sandboxes'
    run_flags: RunFlags = field(default_factory=RunFlags)
    #: ``--allow``: BuildKit's entitlements a Dockerfile may use (``network.host``,
    #: ``security.insecure``)
    allow: frozenset[str] = frozenset()
    #: ``--no-cache-filter``: the stages (by name or index) no cache is read for
    no_cache_filter: tuple[str, ...] = ()
    #: ``--secret``: what ``RUN --mount=type=secret`` reads, by id (read when mounted)
    secrets: Mapping[str, SecretSource] = field(default_factory=dict)
    #: ``--ssh``: the agent sockets ``RUN --mount=type=ssh`` forwards, by id
    ssh: Mapping[str, Path] = field(default_factory=dict)
    #: ``--build-context NAME=VALUE`` (a directory made absolute, docker-image://, oci-layout://)
    build_contexts: Mapping[str, str] = field(default_factory=dict)
    interceptors: Sequence[Interceptor] = ()
    observers: Sequence[Observer] = ()

    def __post_init__(self) -> None:
        if not self.platforms:
            raise BuildError("no platform to build", "give one or more, e.g. linux/amd64")
        if self.network not in ("default", "host", "none"):
            raise BuildError(f"unsupported network {self.network!r}", "use default, host or none")
        unknown = sorted(self.allow - ENTITLEMENTS)
        if unknown:
            raise BuildError(
                f"unknown entitlement {unknown[0]!r}", "use network.host or security.insecure"
            )
        seen = set()
        for p in self.platforms:
            if str(p) in seen:
                raise BuildError(f"platform {p} is given twice")
            seen.add(str(p))


@dataclass(frozen=True)
class BaseUse:
    """An image a platform's build read (a FROM or a COPY --from), as provenance lists it."""

    platform: Platform
    ref: str
    #: the platform it was resolved for (a stage's ``FROM --platform``)
    resolved_for: Platform
    #: the digest the reference resolved to
    digest: Digest
    #: the manifest chosen for the platform
    manifest: Digest | None = None


@dataclass(frozen=True)
class BuildResult:
    """What a build produced in the local store."""

    store: Layout
    descriptor: Descriptor  # the index (or the manifest for one platform)
    manifests: tuple[Descriptor, ...]
    unused_build_args: tuple[str, ...] = ()
    #: What making rootfs trees cost this build (base unpacked, layers applied).
    rootfs_work: tuple[str, ...] = ()
    #: The media types it was made with: ``docker``, ``oci``, or None (OCI ones,
    #: and each destination it is published to takes its own; see manyarch.publish).
    media_types: Literal["docker", "oci"] | None = None
    #: What the build wants said that is not an error (a cache not found, an ARG not used).
    warnings: tuple[str, ...] = ()
    #: The images the build read, per platform (provenance's materials).
    bases: tuple[BaseUse, ...] = ()
    #: The config's digest when the result is one manifest (``containerimage.config.digest``).
    config: Digest | None = None
    #: Per platform, the provenance buildx's metadata file records (``buildx.build.provenance``).
    provenance: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
