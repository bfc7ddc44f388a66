"""``manyarch imagetools inspect | create``, as ``docker buildx imagetools``:
:meth:`Session.inspect` and :meth:`Session.create_index`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from manyarch.cli.common import UsageError, add_registry_flags, session
from manyarch.errors import InvalidArgument


def register(sub: Any) -> None:
    """Add the ``imagetools`` command."""
    p = sub.add_parser("imagetools", help="inspect and combine images in a registry")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    i = s.add_parser("inspect", help="show an image or index (buildx's layout)")
    i.add_argument("name", help="REF or oci-layout://PATH[:TAG]")
    i.add_argument("--raw", action="store_true", help="print the exact bytes")
    i.add_argument("--format", help="Go template subset: {{json .Manifest}}, {{json .Image}}")
    i.add_argument("--sizes", action="store_true", help="per platform: size, layers, shared")
    add_registry_flags(i)
    i.set_defaults(func=_inspect)
    c = s.add_parser("create", help="combine images or indexes into one index")
    c.add_argument("sources", nargs="*", metavar="SRC")
    c.add_argument("-t", "--tag", action="append", default=[], help="target REF; repeatable")
    c.add_argument("--append", action="store_true", help="keep the target's existing manifests")
    c.add_argument("--dry-run", action="store_true", help="print the index, push nothing")
    c.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE")
    add_registry_flags(c)
    c.set_defaults(func=_create)


def _inspect(args: argparse.Namespace) -> int:
    if args.raw and (args.format or args.sizes):
        raise UsageError("--raw cannot be combined with --format or --sizes")
    with session(args) as s:
        shown = s.inspect(args.name)
        if args.raw:
            sys.stdout.buffer.write(shown.raw)
        elif args.format:
            try:
                sys.stdout.write(shown.format(args.format))
            except InvalidArgument as e:
                raise UsageError(f"unsupported --format {args.format!r}", e.hint) from e
        else:
            sys.stdout.write(shown.text)
            if args.sizes:
                sys.stdout.write(shown.sizes_text)
    return 0


def _create(args: argparse.Namespace) -> int:
    from manyarch.oci.reference import Reference, parse_any

    if not args.tag and not args.dry_run:
        raise UsageError("imagetools create needs a target", "give one with -t REF")
    if not args.sources and not args.append:
        raise UsageError("no source image given", "name the images to combine")
    annotations = dict(a.partition("=")[::2] for a in args.annotation)
    with session(args) as s:
        doc = s.create_index(
            args.sources,
            args.tag,
            append=args.append,
            annotations=annotations,
            push=not args.dry_run,
        )
    if args.dry_run:
        print(json.dumps(json.loads(doc.data), indent=2))
        return 0
    for target in map(parse_any, args.tag):
        name = str(target.tagged_or_latest()) if isinstance(target, Reference) else str(target)
        print(f"{name}@{doc.digest}", file=sys.stderr)
    return 0
