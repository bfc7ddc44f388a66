"""``manyarch images``, ``rmi``, ``save`` and ``load``: the local store as docker shows it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from manyarch.cli.common import UsageError, report, session
from manyarch.cli.containers import ago
from manyarch.cli.refused import add_refused

__all__ = ["ago", "register"]


def register(sub: Any) -> None:
    """Add ``images``, ``rmi``, ``save`` and ``load``."""
    p = sub.add_parser("images", help="list pulled, built (--load) and loaded images")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]", help="only these")
    p.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    p.add_argument("-a", "--all", action="store_true", help="accepted: there are no hidden ones")
    p.add_argument("--digests", action="store_true", help="show the digest each was pulled by")
    p.add_argument("--no-trunc", action="store_true", help="full image ids")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="reference, label, dangling, before, since")  # fmt: skip
    p.add_argument("--format", help="a Go template ({{.Repository}}, {{.Tag}}, {{json .}}, table)")
    add_refused(p, "images")
    p.set_defaults(func=_images)
    r = sub.add_parser("rmi", help="remove images from the local store")
    r.add_argument("images", nargs="+", metavar="IMAGE")
    r.add_argument("-f", "--force", action="store_true", help="untag even when a container uses it")
    r.add_argument(
        "--prune",
        action="store_true",
        help="also delete every blob no image refers to any more (the build cache included)",
    )
    r.set_defaults(func=_rmi)
    s = sub.add_parser("save", help="write images to a tar archive (OCI, or docker's)")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s.add_argument("-o", "--output", type=Path, metavar="FILE.tar", help="default: stdout")
    s.add_argument("--platform", help="only this platform")
    s.add_argument(
        "--format",
        choices=["oci", "docker"],
        default="oci",
        help="docker: one platform per image, with the manifest.json docker load reads",
    )
    s.set_defaults(func=_save)
    ld = sub.add_parser(
        "load", help="read images from a tar archive (docker save, skopeo, buildx, manyarch)"
    )
    ld.add_argument("-i", "--input", type=Path, metavar="FILE.tar", help="default: stdin")
    ld.add_argument("-q", "--quiet", action="store_true")
    ld.set_defaults(func=_load)


def _images(args: argparse.Namespace) -> int:
    from manyarch.gotemplate import render_rows
    from manyarch.run import describe

    with session(args) as s:
        imgs = s.images_matching(args.reference, args.filter)
        if args.quiet:  # a line per row, as docker (an image of two tags twice)
            for i in imgs:
                print(str(i.id) if args.no_trunc else i.id.short)
            return 0
        users: dict[str, int] = {}
        if args.format and "Containers" in args.format:
            for c in s.ps(all=True):
                users[c.manifest_digest] = users.get(c.manifest_digest, 0) + 1
    rows = [
        describe.image_row(
            i, containers=users.get(str(i.descriptor.digest), 0), no_trunc=args.no_trunc
        )
        for i in imgs
    ]
    fmt = args.format
    if not fmt or fmt == "table":
        cols = ["Repository", "Tag", "ID", "Platform", "CreatedSince", "Size"]
        if args.digests:
            cols.insert(2, "Digest")
        fmt = "table " + "\\t".join("{{." + c + "}}" for c in cols)
    if fmt == "json":
        fmt = "{{json .}}"
    text = render_rows(fmt, rows, describe.IMAGE_HEADERS)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in text.splitlines()))
    return 0


def _rmi(args: argparse.Namespace) -> int:
    with session(args) as s:
        done = s.rmi(*args.images, prune=args.prune, force=args.force)
    for word in args.images:
        if word in done.errors:
            report(done.errors[word])
        for img in done.untagged.get(word, []):
            print(f"Untagged: {img.name}")
    for d in done.deleted:
        print(f"Deleted: {d}")
    return 1 if done.errors else 0


def _save(args: argparse.Namespace) -> int:
    dest: Any = args.output
    if dest is None:
        if sys.stdout.isatty():
            raise UsageError(
                "cowardly refusing to save to a terminal",
                "use the -o flag or redirect: manyarch save IMAGE > image.tar",
            )
        sys.stdout.flush()
        dest = sys.stdout.buffer
    elif not dest.parent.is_dir():
        raise UsageError(
            f"directory {dest.parent} does not exist", "create it, or give another -o path"
        )
    with session(args) as s:
        s.save(args.images, dest, platform=args.platform, format=args.format)
    return 0


def _load(args: argparse.Namespace) -> int:
    src: Any = args.input
    if src is None:
        if sys.stdin.isatty():
            raise UsageError(
                "requested load from stdin, but stdin is empty",
                "give the archive with -i FILE.tar, or redirect: manyarch load < image.tar",
            )
        src = sys.stdin.buffer
    with session(args) as s:
        names = s.load(src)
    if not args.quiet:
        for n in names:
            print(f"Loaded image: {_shown(n)}")
    return 0


def _shown(name: str) -> str:
    """A loaded name as docker prints it (familiar: ``app:1``; an unnamed one by its id)."""
    from manyarch.errors import InvalidReference
    from manyarch.oci.reference import Reference

    if name.startswith("none@"):
        return f"ID: {name.removeprefix('none@')}"
    try:
        return Reference.parse(name).familiar
    except InvalidReference:
        return name
