"""``manyarch base``: a multi-platform base image from Debian packages, without emulation.

    manyarch base --preset python --platform linux/amd64,linux/arm64 \\
        -t localhost:5000/python:3.11-bookworm --push
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from manyarch.cli.common import add_registry_flags, client_factory, defer
from manyarch.errors import UsageError

if TYPE_CHECKING:
    from manyarch.baseimage import image as base_image
    from manyarch.baseimage import options as base_options
    from manyarch.oci.platform import Platform
    from manyarch.oci.reference import Reference


def register(sub: Any) -> None:
    """Add the ``base`` command."""
    p = sub.add_parser(
        "base",
        help="make a multi-platform base image from Debian packages (no emulation)",
        description="Unpack Debian packages for each platform with mmdebstrap (no maintainer "
        "script runs, so no emulation), finish the rootfs on the host, and assemble an "
        "image index. Reproducible with SOURCE_DATE_EPOCH and a snapshot mirror; reused "
        "from $XDG_CACHE_HOME/manyarch/base when built before with the same inputs.",
    )
    defer(p, _flags)
    p.set_defaults(func=run)


def _flags(p: argparse.ArgumentParser) -> None:
    from manyarch.baseimage import options as base_options

    p.add_argument(
        "--platform",
        default="",
        help="comma-separated platforms, e.g. linux/amd64,linux/arm64 (default: this machine's)",
    )
    p.add_argument(
        "--suite", default=base_options.DEFAULT_SUITE, help="Debian suite (default %(default)s)"
    )
    p.add_argument(
        "--mirror",
        default=base_options.DEFAULT_MIRROR,
        help="Debian mirror URL; a snapshot.debian.org URL makes builds reproducible "
        "(default %(default)s)",
    )
    p.add_argument(
        "--preset",
        default="minimal",
        choices=sorted(base_options.PRESETS),
        help="package set: python = python3, pip, venv, python command, /bin/sh, coreutils",
    )
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PKG,...",
        help="more Debian packages (their dependencies come along); repeatable",
    )
    p.add_argument(
        "-t", "--tag", action="append", default=[], metavar="REF", help="image name; repeatable"
    )
    p.add_argument("--push", action="store_true", help="push to the registry named by -t")
    p.add_argument(
        "-o",
        "--output",
        action="append",
        default=[],
        metavar="SPEC",
        help="type=oci,dest=PATH (an OCI archive when PATH ends in .tar, or tar=true; "
        "else a layout directory) or type=registry",
    )
    p.add_argument("--sbom", type=Path, metavar="PATH", help="also write the packages as SPDX JSON")
    p.add_argument(
        "--source-date-epoch",
        type=int,
        metavar="SECONDS",
        help="clamp timestamps to this time (default: $SOURCE_DATE_EPOCH)",
    )
    p.add_argument("--no-cache", action="store_true", help="rebuild even when cached")
    p.add_argument(
        "--cache-dir",
        type=Path,
        help="where built platforms are kept (default $XDG_CACHE_HOME/manyarch/base)",
    )
    add_registry_flags(p)


def _epoch(args: argparse.Namespace) -> int | None:
    if args.source_date_epoch is not None:
        return int(args.source_date_epoch)
    env = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not env:
        return None
    try:
        return int(env)
    except ValueError:
        raise UsageError(
            f"SOURCE_DATE_EPOCH={env!r} is not a number of seconds",
            "set it to an integer, e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)",
        ) from None


def _options(args: argparse.Namespace) -> base_options.BaseOptions:
    from manyarch.baseimage import options as base_options
    from manyarch.oci.platform import Platform, default_platform, parse_platforms

    platforms = parse_platforms(args.platform) if args.platform else [default_platform()]
    include = tuple(p.strip() for item in args.include for p in item.split(",") if p.strip())
    kw: dict[str, Any] = {}
    if args.cache_dir is not None:
        kw["cache_dir"] = args.cache_dir
    return base_options.BaseOptions(
        # Debian's amd64 is the x86-64 baseline whatever this host's level (v2, v3).
        platforms=tuple(
            Platform.of(p.os, p.architecture, "" if p.architecture == "amd64" else p.variant)
            for p in platforms
        ),
        suite=args.suite,
        mirror=args.mirror,
        include=include,
        preset=args.preset,
        epoch=_epoch(args),
        use_cache=not args.no_cache,
        **kw,
    )


def _destinations(args: argparse.Namespace) -> tuple[list[Reference], list[tuple[Path, bool]]]:
    from manyarch.imagebuild.publish import parse_output
    from manyarch.oci.reference import Reference

    refs = [Reference.parse(t).tagged_or_latest() for t in args.tag]
    push = bool(args.push)
    layouts: list[tuple[Path, bool]] = []
    for text in args.output:
        spec = parse_output(text)
        if spec.type in ("registry", "image"):
            push = push or spec.type == "registry" or spec.attrs.get("push") == "true"
            for name in filter(None, spec.attrs.get("name", "").split(",")):
                refs.append(Reference.parse(name).tagged_or_latest())
        elif spec.type == "oci":
            dest = spec.attrs.get("dest")
            if not dest or dest == "-":
                raise UsageError(
                    "type=oci needs dest=PATH (a directory, or an archive ending in .tar)"
                )
            tar = spec.attrs.get("tar", "true" if dest.endswith(".tar") else "false")
            layouts.append((Path(dest), tar == "true"))
        else:
            raise UsageError(
                f"manyarch base cannot write --output type={spec.type}",
                "use --push, or --output type=oci,dest=PATH",
            )
    if push and not refs:
        raise UsageError("--push needs a name", "add -t REGISTRY/NAME:TAG")
    return (refs if push else []), layouts


def _progress(platform: Platform, step: str, seconds: float) -> None:
    # One write per line: print() writes the newline apart, and the platforms report from threads.
    sys.stderr.write(f"[{platform}] {step} ({seconds:.1f}s)\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    """Build (or reuse) the base, then write or push it."""
    import logging
    import tempfile

    from manyarch.baseimage import image as base_image
    from manyarch.baseimage import spdx
    from manyarch.imagebuild.publish import RegistryPublisher
    from manyarch.layout import Layout
    from manyarch.oci.reference import Reference

    if getattr(args, "debug", False):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("debug: %(message)s"))
        logger = logging.getLogger("manyarch.base")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    opts = _options(args)
    refs, layouts = _destinations(args)
    image = base_image.build_base(opts, progress=_progress)
    for img in image.images:
        how = "cached" if img.cached else "built"
        print(f"{img.platform}: {img.manifest.digest} ({how}, {len(img.packages)} packages)")
    tag = (refs[0].tag if refs else None) or (
        Reference.parse(args.tag[0]).tagged_or_latest().tag if args.tag else "latest"
    )
    for dest, tar in layouts:
        if tar:
            _write_archive(image, dest, tag or "latest")
        else:
            base_image.save_layout(image, Layout.open(dest, create=True), tag)
        print(f"wrote {dest}{'' if tar else f':{tag}'}")
    if refs:
        opts.cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".push-", dir=opts.cache_dir) as tmp:
            store = Layout.open(Path(tmp) / "layout", create=True)
            desc = base_image.save_layout(image, store, None)
            publisher = RegistryPublisher(refs, client_factory(args), jobs=args.jobs)
            for name in publisher.publish(store, desc):
                print(f"pushed {name}")
    if args.sbom is not None:
        name = str(refs[0]) if refs else (args.tag[0] if args.tag else "manyarch-base")
        doc = spdx.spdx_document(image, name)
        args.sbom.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote SBOM {args.sbom} ({len(doc['packages'])} packages)")
    print(image.digest)
    return 0


def _write_archive(image: base_image.BaseImage, dest: Path, tag: str) -> None:
    import tempfile

    from manyarch.baseimage import image as base_image
    from manyarch.layout import Layout, export_tar

    parent = dest.parent if str(dest.parent) else Path(".")
    with tempfile.TemporaryDirectory(prefix=".manyarch-", dir=parent) as tmp:
        layout = Layout.open(Path(tmp) / "layout", create=True)
        base_image.save_layout(image, layout, tag)
        partial = Path(tmp) / "archive.tar"
        export_tar(layout, partial)
        partial.replace(dest)
