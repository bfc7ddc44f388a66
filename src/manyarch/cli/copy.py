"""``manyarch copy SRC DST``: :meth:`Session.copy`, between registries and OCI layouts."""

from __future__ import annotations

import argparse
from typing import Any

from manyarch.cli.common import add_registry_flags, session


def register(sub: Any) -> None:
    """Add the ``copy`` command."""
    p = sub.add_parser("copy", help="copy an image or index between registries and OCI layouts")
    p.add_argument("source", help="REF or oci-layout://PATH[:TAG]")
    p.add_argument("destination", help="REF or oci-layout://PATH[:TAG]")
    p.add_argument("--platform", action="append", default=[], help="copy only these platforms")
    add_registry_flags(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    with session(args) as s:
        desc = s.copy(args.source, args.destination, platforms=args.platform)
    print(f"{args.destination}@{desc.digest}")
    return 0
