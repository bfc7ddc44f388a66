"""``manyarch images``, ``rmi``, ``save`` and ``load``: the local store as docker shows it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from manyarch.cli.common import UsageError, report, session
from manyarch.cli.containers import ago


def register(sub: Any) -> None:
    """Add ``images``, ``rmi``, ``save`` and ``load``."""
    p = sub.add_parser("images", help="list pulled and loaded images")
    p.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    p.add_argument("--digests", action="store_true", help="show the digest each was pulled by")
    p.set_defaults(func=_images)
    r = sub.add_parser("rmi", help="remove images from the local store")
    r.add_argument("images", nargs="+", metavar="IMAGE")
    r.add_argument(
        "--prune",
        action="store_true",
        help="also delete every blob no image refers to any more (the build cache included)",
    )
    r.set_defaults(func=_rmi)
    s = sub.add_parser("save", help="write images to a tar archive (OCI, or docker's)")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.tar")
    s.add_argument("--platform", help="only this platform")
    s.add_argument(
        "--format",
        choices=["oci", "docker"],
        default="oci",
        help="docker: one platform per image, with the manifest.json docker load reads",
    )
    s.set_defaults(func=_save)
    ld = sub.add_parser("load", help="read images from a tar archive (manyarch or docker save)")
    ld.add_argument("-i", "--input", type=Path, required=True, metavar="FILE.tar")
    ld.add_argument("-q", "--quiet", action="store_true")
    ld.set_defaults(func=_load)


def _images(args: argparse.Namespace) -> int:
    from manyarch.run import container
    from manyarch.units import human_size

    with session(args) as s:
        imgs = s.images()
    if args.quiet:
        for i in imgs:
            print(i.id.short)
        return 0
    head = ["REPOSITORY", "TAG", "IMAGE ID", "PLATFORM", "CREATED", "SIZE"]
    if args.digests:
        head.insert(2, "DIGEST")
    rows = [tuple(head)]
    for i in imgs:
        created = container.parse_time(_micro(i.config.created or ""))
        row = [
            i.repository,
            i.tag,
            i.id.short,
            str(i.platform),
            f"{ago(created)} ago" if created else "N/A",
            human_size(i.size),
        ]
        if args.digests:
            row.insert(2, str(i.repo_digest or i.descriptor.digest))
        rows.append(tuple(row))
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    for r in rows:
        print("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _micro(created: str) -> str:
    # an RFC 3339 time as state.json writes it (microseconds, Z), whatever precision it had
    if not created:
        return ""
    base, _, frac = created.rstrip("Z").partition(".")
    base = base.split("+")[0]
    return f"{base}.{(frac.split('+')[0] + '000000')[:6]}Z"


def _rmi(args: argparse.Namespace) -> int:
    with session(args) as s:
        done = s.rmi(*args.images, prune=args.prune)
    for word in args.images:
        if word in done.errors:
            report(done.errors[word])
        for img in done.untagged.get(word, []):
            print(f"Untagged: {img.name}")
    for d in done.deleted:
        print(f"Deleted: {d}")
    return 1 if done.errors else 0


def _save(args: argparse.Namespace) -> int:
    if not args.output.parent.is_dir():
        raise UsageError(
            f"directory {args.output.parent} does not exist", "create it, or give another -o path"
        )
    with session(args) as s:
        s.save(args.images, args.output, platform=args.platform, format=args.format)
    return 0


def _load(args: argparse.Namespace) -> int:
    with session(args) as s:
        names = s.load(args.input)
    if not args.quiet:
        for n in names:
            print(f"Loaded image: {n}")
    return 0
