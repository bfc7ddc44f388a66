"""``manyarch build``: the flags of ``docker buildx build``, without Docker."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from manyarch.build.builder import BuildOptions, StepEvent, build
from manyarch.build.publish import (
    LayoutPublisher,
    RegistryPublisher,
    parse_output,
    write_metadata,
)
from manyarch.cli.common import add_registry_flags, client_factory, registry_options
from manyarch.errors import UsageError
from manyarch.oci.platform import host_platform, parse_platforms
from manyarch.oci.reference import Reference


def register(sub: Any) -> None:
    """Add the ``build`` command."""
    p = sub.add_parser(
        "build",
        help="build a multi-platform image from a Dockerfile (docker buildx build's flags)",
        description="Build an image for one or more platforms; --push sends ONE reference "
        "(an index with one manifest per platform).",
    )
    p.add_argument("context", help="build context directory")
    p.add_argument("-f", "--file", help="Dockerfile (default: CONTEXT/Dockerfile)")
    p.add_argument("-t", "--tag", action="append", default=[], help="name:tag; repeatable")
    p.add_argument("--platform", action="append", default=[], help="e.g. linux/amd64,linux/arm64")
    p.add_argument("--push", action="store_true", help="same as --output type=registry")
    p.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "-o", "--output", action="append", default=[], help="type=registry|oci|docker,..."
    )
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY[=VALUE]")
    p.add_argument("--target", help="build this stage")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--network", default="default", choices=["default", "host", "none"])
    p.add_argument("--metadata-file", type=Path)
    p.add_argument(
        "--progress", default="auto", choices=["auto", "tty", "plain", "quiet", "rawjson"]
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the digest")
    p.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    p.add_argument("--pull", action="store_true", help="always resolve the base again")
    p.add_argument("--builder", help="accepted for buildx compatibility; no effect")
    p.add_argument("--provenance", help="only false is accepted: manyarch adds no attestations yet")
    p.add_argument("--sbom", help="only false is accepted: manyarch adds no attestations yet")
    add_registry_flags(p)
    p.set_defaults(func=_run)


def _kv(items: list[str], what: str, from_env: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid {what} {item!r}", f"write {what} KEY=VALUE")
        if not sep:
            if not from_env:
                raise UsageError(f"invalid {what} {item!r}", f"write {what} KEY=VALUE")
            if key not in os.environ:
                continue  # docker: --build-arg KEY takes KEY from the environment if set
            value = os.environ[key]
        out[key] = value
    return out


def _run(args: argparse.Namespace) -> int:
    if args.load:
        raise UsageError(
            "--load needs a Docker daemon, and manyarch works without one",
            "use --push, or --output type=docker,dest=FILE.tar and `docker load -i FILE.tar`",
        )
    for flag in ("provenance", "sbom"):
        value = getattr(args, flag)
        if value not in (None, "false", "0"):
            raise UsageError(f"--{flag}={value} is not supported yet", f"use --{flag}=false")
    context = Path(args.context)
    if not context.is_dir():
        raise UsageError(f"build context {args.context!r} is not a directory")
    dockerfile = Path(args.file) if args.file else context / "Dockerfile"
    platforms = parse_platforms(args.platform) if args.platform else [host_platform()]
    build_args = _kv(args.build_arg, "--build-arg", from_env=True)
    tags = [Reference.parse(t) for t in args.tag]
    outputs = [parse_output(o) for o in args.output]
    if args.push:
        outputs.append(parse_output("type=registry"))
    oci_mt: bool | None = None
    for o in outputs:
        if "oci-mediatypes" in o.attrs:
            oci_mt = o.attrs["oci-mediatypes"] == "true"
    registry_out = [o for o in outputs if o.type in ("registry", "image")]
    for o in registry_out:
        if o.type == "image" and o.attrs.get("push") != "true":
            raise UsageError("type=image without push=true needs a Docker daemon", "add push=true")
        if "name" in o.attrs:
            tags.extend(Reference.parse(n) for n in o.attrs["name"].split(","))
    if registry_out and not tags:
        raise UsageError("--push needs a name", "give one with -t registry/name:tag")
    epoch_env = os.environ.get("SOURCE_DATE_EPOCH")
    epoch = int(epoch_env) if epoch_env and epoch_env.isdigit() else None
    options = BuildOptions(
        context=context,
        dockerfile=dockerfile,
        platforms=platforms,
        build_args={k: v for k, v in build_args.items()},
        target=args.target,
        network=args.network,
        labels=_kv(args.label, "--label"),
        annotations=_kv(args.annotation, "--annotation"),
        # buildx: the registry exporter writes Docker media types by default (the
        # seed's manifest list), the oci exporter OCI ones
        docker_media_types=not oci_mt if oci_mt is not None else bool(registry_out),
        epoch=epoch,
        registry=registry_options(args),
    )
    quiet = args.quiet or args.progress == "quiet"
    started = time.monotonic()
    result = build(options, None if quiet else _printer())
    for name in result.unused_build_args:
        if not quiet:
            print(
                f'WARNING: build-arg "{name}" was not consumed by the Dockerfile', file=sys.stderr
            )
    names: list[str] = []
    client = client_factory(args)
    if registry_out:
        pub = RegistryPublisher(tags, client, jobs=args.jobs, progress=None)
        if not quiet:
            for t in tags:
                print(f"pushing {t} ({result.descriptor.digest})", file=sys.stderr)
        names += pub.publish(result.store, result.descriptor)
    for o in outputs:
        if o.type in ("oci", "tar", "local"):
            dest = o.attrs.get("dest")
            if not dest:
                raise UsageError(f"--output type={o.type} needs dest=PATH")
            tag = tags[0].tag if tags and tags[0].tag else "latest"
            names += LayoutPublisher(Path(dest), tag).publish(result.store, result.descriptor)
        elif o.type == "docker":
            raise UsageError(
                "--output type=docker is not supported yet", "use type=oci,dest=FILE.tar"
            )
    if args.metadata_file:
        write_metadata(args.metadata_file, result.descriptor, [str(t) for t in tags])
    if quiet:
        print(result.descriptor.digest)
    else:
        took = time.monotonic() - started
        print(f"built {result.descriptor.digest} in {took:.1f}s", file=sys.stderr)
        for n in names:
            print(n, file=sys.stderr)
    return 0


def _printer() -> Any:
    def show(e: StepEvent) -> None:
        head = f"[{e.platform} {e.index}/{e.total}] {e.text}"
        if e.seconds is None:
            print(head, file=sys.stderr, flush=True)
        else:
            status = "CACHED" if e.cached else f"DONE {e.seconds:.1f}s"
            print(f"{head} {status}", file=sys.stderr, flush=True)

    return show
