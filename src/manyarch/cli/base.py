"""``manyarch base``: a multi-platform base image from Debian packages, without emulation.

    manyarch base --preset python --platform linux/amd64,linux/arm64 \\
        -t localhost:5000/python:3.11-bookworm --push
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from manyarch.cli.common import add_registry_flags, defer, session

if TYPE_CHECKING:
    from manyarch.oci.platform import Platform


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
        "else a layout directory), type=docker,dest=FILE.tar or type=registry",
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


def _progress(platform: Platform, step: str, seconds: float) -> None:
    # One write per line: print() writes the newline apart, and the platforms report from threads.
    sys.stderr.write(f"[{platform}] {step} ({seconds:.1f}s)\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    """Build (or reuse) the base, then write or push it (through the local store)."""
    import logging

    from manyarch.cli.outputs import outputs
    from manyarch.publish import RegistryDestination

    if getattr(args, "debug", False):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("debug: %(message)s"))
        logger = logging.getLogger("manyarch.base")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    outs = outputs(args.output, args.tag, push=args.push)
    include = tuple(p.strip() for item in args.include for p in item.split(",") if p.strip())
    with session(args) as s:
        result = s.base(
            platforms=[args.platform] if args.platform else [],
            preset=args.preset,
            suite=args.suite,
            mirror=args.mirror,
            include=include,
            epoch=args.source_date_epoch,
            use_cache=not args.no_cache,
            cache_dir=args.cache_dir,
            progress=_progress,
        )
        for img in result.image.images:
            how = "cached" if img.cached else "built"
            print(f"{img.platform}: {img.manifest.digest} ({how}, {len(img.packages)} packages)")
        for dest in outs.destinations:
            where = s.publish(result, dest, media_types=outs.media_types)
            print(f"pushed {where}" if isinstance(dest, RegistryDestination) else f"wrote {where}")
    if args.sbom is not None:
        pushed = [d.ref for d in outs.destinations if isinstance(d, RegistryDestination)]
        name = (
            str(pushed[0].tagged_or_latest()) if pushed else next(iter(args.tag), "manyarch-base")
        )
        doc = result.sbom(name)
        args.sbom.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote SBOM {args.sbom} ({len(doc['packages'])} packages)")
    print(result.descriptor.digest)
    return 0
