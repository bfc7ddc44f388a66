"""``manyarch copy SRC DST``: between registries and OCI layouts, all platforms or some."""

from __future__ import annotations

import argparse
from typing import Any

from manyarch.cli.common import add_registry_flags, client_factory


def register(sub: Any) -> None:
    """Add the ``copy`` command."""
    p = sub.add_parser("copy", help="copy an image or index between registries and OCI layouts")
    p.add_argument("source", help="REF or oci-layout://PATH[:TAG]")
    p.add_argument("destination", help="REF or oci-layout://PATH[:TAG]")
    p.add_argument("--platform", action="append", default=[], help="copy only these platforms")
    add_registry_flags(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from manyarch.images import copy, open_sink, open_source
    from manyarch.oci.platform import parse_platforms
    from manyarch.oci.reference import parse_any

    client = client_factory(args)
    src = open_source(parse_any(args.source), client)
    sink, tag = open_sink(parse_any(args.destination), client)
    platforms = parse_platforms(args.platform) if args.platform else None
    desc = copy(src, sink, tag=tag, platforms=platforms, jobs=args.jobs)
    print(f"{args.destination}@{desc.digest}")
    return 0
