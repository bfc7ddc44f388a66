"""After the executor: a build's result exported as its outputs ask (media types,
compression, annotations, inline cache, attestations) and the provenance the
metadata file records. :meth:`Session.build` calls :func:`finish_build`."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from manyarch.attest.facts import build_facts
from manyarch.attest.make import PlatformFacts, base_materials, predicates
from manyarch.attest.provenance import ProvenanceOptions, predicate, record_provenance
from manyarch.export.image import ExportOptions, export
from manyarch.units import rfc3339

if TYPE_CHECKING:
    from manyarch.imagebuild.cache import BuildCache, CacheSpec
    from manyarch.imagebuild.options import BuildOptions, BuildResult
    from manyarch.oci.manifest import Descriptor
    from manyarch.oci.platform import Platform

#: buildx's build-arg that asks for an inline cache (``BUILDKIT_INLINE_CACHE=1``)
INLINE_CACHE_ARG = "BUILDKIT_INLINE_CACHE"


def inline_cache_asked(build_args: Mapping[str, str]) -> bool:
    """The build-arg buildx turns into ``--cache-to type=inline`` (a true value, as Go parses)."""
    return build_args.get(INLINE_CACHE_ARG, "") in ("1", "t", "T", "TRUE", "true", "True")


def cache_exports(
    cache_to: str | CacheSpec | Sequence[str | CacheSpec] | None, build_args: Mapping[str, str]
) -> tuple[CacheSpec | None, bool]:
    """The one cache export that travels (local, registry, gha) and whether an inline cache
    is asked (``type=inline``, or ``BUILDKIT_INLINE_CACHE``)."""
    from manyarch.errors import InvalidArgument
    from manyarch.imagebuild.cache import CacheSpec

    given = [cache_to] if isinstance(cache_to, str | CacheSpec) else list(cache_to or ())
    specs = [CacheSpec.parse(c, export=True) if isinstance(c, str) else c for c in given]
    inline = inline_cache_asked(build_args) or any(c.type == "inline" for c in specs)
    others = [c for c in specs if c.type != "inline"]
    if len(others) > 1:
        raise InvalidArgument(
            "only one cache export besides type=inline is supported",
            "keep one --cache-to (and type=inline if wanted)",
        )
    return (others[0] if others else None), inline


def build_options(
    context: str | Path,
    dockerfile: str | Path | None,
    platforms: Sequence[Platform],
    build_args: Mapping[str, str] | None,
    target: str | None,
    network: str,
    labels: Mapping[str, str] | None,
    *,
    epoch: int | None,
    add_hosts: Sequence[str],
    shm_size: str | int | None,
    ulimits: Sequence[str],
    no_cache_filter: Sequence[str],
    allow: Sequence[str] = (),
    secrets: Sequence[str] = (),
    ssh: Sequence[str] = (),
    build_contexts: Mapping[str, str] | None = None,
) -> BuildOptions:
    """What the executor is asked (:class:`BuildOptions`), from :meth:`Session.build`'s words."""
    from manyarch.errors import InvalidArgument
    from manyarch.imagebuild.options import BuildOptions
    from manyarch.imagebuild.runflags import RunFlags
    from manyarch.imagebuild.secrets import SecretSource, parse_ssh

    where = Path(context)
    if not where.is_dir():
        raise InvalidArgument(f"build context {str(context)!r} is not a directory")
    return BuildOptions(
        context=where,
        dockerfile=Path(dockerfile) if dockerfile is not None else where / "Dockerfile",
        platforms=platforms,
        build_args=dict(build_args or {}),
        target=target,
        network=network,
        labels=dict(labels or {}),
        epoch=epoch,
        run_flags=RunFlags.parse(tuple(add_hosts), shm_size, tuple(ulimits)),
        no_cache_filter=tuple(no_cache_filter),
        allow=frozenset(allow),
        secrets={s.id: s for s in map(SecretSource.parse, secrets)},
        ssh=dict(map(parse_ssh, ssh)),
        build_contexts={k: _context_value(v) for k, v in (build_contexts or {}).items()},
    )


def _context_value(value: str) -> str:
    """A named context as the planner takes it: a directory made absolute (buildx: from
    the working directory), an image as given."""
    from manyarch.errors import InvalidArgument

    if value.startswith(("docker-image://", "oci-layout://")):
        return value
    if "://" in value:
        raise InvalidArgument(
            f"--build-context {value!r}: manyarch takes a directory, docker-image:// or "
            "oci-layout://", "clone a Git context or fetch a URL into a directory first",
        )  # fmt: skip
    path = Path(value).resolve()
    if not path.is_dir():
        raise InvalidArgument(f"--build-context {value!r} is not a directory")
    return str(path)


@dataclass(frozen=True)
class BuildTimes:
    """When a build started and finished (seconds since the epoch)."""

    started: float
    finished: float


def finish_build(
    result: BuildResult,
    options: BuildOptions,
    export_options: ExportOptions,
    *,
    times: BuildTimes,
    source_date_epoch: int | None,
    cache: BuildCache | None,
    wheels: Path | None,
) -> BuildResult:
    """The exported result, with the metadata file's provenance of every platform, and
    the build's warnings (build args not used, build checks)."""
    from manyarch.imagebuild.inlinecache import records

    store = result.store
    facts = build_facts(
        dockerfile=options.dockerfile,
        context=options.context,
        build_args=options.build_args,
        labels=options.labels,
        target=options.target,
        started=times.started,
        finished=times.finished,
        source_date_epoch=source_date_epoch,
    )
    asked = export_options.attestations
    name = export_options.names[0] if export_options.names else "image"
    created = rfc3339(source_date_epoch if source_date_epoch is not None else int(times.finished))

    def platform_facts(platform: Platform) -> PlatformFacts:
        used = [
            (b.ref, b.resolved_for, str(b.digest)) for b in result.bases if b.platform == platform
        ]
        return PlatformFacts(facts, used)

    def attest(built: Descriptor, platform: Platform) -> list[tuple[str, dict[str, Any]]]:
        return predicates(
            store, built, platform, asked, platform_facts(platform),
            name=name, created=created, wheels=wheels,
        )  # fmt: skip

    def inline(platform: Platform, layers: Sequence[Descriptor]) -> bytes | None:
        return records(cache.chains, platform, layers) if cache is not None else None

    checks = lint_build(result, options)
    unused = [
        f'build-arg "{n}" was not consumed by the Dockerfile' for n in result.unused_build_args
    ]
    with store.lease():
        exported = export(
            store, result.descriptor, result.manifests, export_options, attest=attest, inline=inline
        )
    record = {}
    prov = asked.provenance or ProvenanceOptions(mode="min")
    for m in result.manifests:
        if m.platform is None:
            continue
        pred = predicate(
            replace(facts, materials=base_materials(platform_facts(m.platform).bases)),
            ProvenanceOptions(mode="min", version="v0.2", builder_id=prov.builder_id),
        )
        record[str(m.platform)] = record_provenance(pred)
    return replace(
        result,
        descriptor=exported.descriptor,
        manifests=exported.manifests,
        media_types=exported.media_types,
        config=exported.config,
        provenance=record,
        warnings=(*result.warnings, *unused, *exported.warnings, *checks),
    )


def lint_build(result: BuildResult, options: BuildOptions) -> list[str]:
    """BuildKit's build checks of the Dockerfile just built, as a build's warnings (base
    images' Env read from the store); with ``# check=error=true`` they fail the build."""
    from manyarch.errors import BuildError, ManyarchError
    from manyarch.images import LayoutSource, resolve_image
    from manyarch.subrequests.lint import lint

    platform = options.platforms[0]
    bases = {b.ref: b for b in result.bases if b.platform == platform}

    def env(ref: str) -> Mapping[str, str] | None:
        use = bases.get(ref)
        if use is None or use.manifest is None:
            return None
        try:
            image = resolve_image(LayoutSource(result.store, str(use.manifest)), use.resolved_for)
        except ManyarchError:
            return None
        return image.config.config.env_dict()

    try:
        from manyarch.imagebuild.contextfiles import read_context_text

        text = read_context_text(options.context, options.dockerfile) or ""
        warnings, config = lint(
            text, file=str(options.dockerfile), build_args=options.build_args, base_env=env
        )
    except (OSError, ManyarchError):
        return []
    if warnings and config.error:
        rules = ", ".join(sorted({w.rule for w in warnings}))
        raise BuildError(
            f"lint violation found for rules: {rules}",
            "; ".join(w.short() for w in warnings),
        )
    return [w.short() for w in warnings]


def now() -> float:
    """The wall clock, for :class:`BuildTimes`."""
    return time.time()
