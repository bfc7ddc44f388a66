"""``manyarch version``, ``create`` and ``use``: buildx's builder commands, so the seed's
``docker buildx create --name N --driver docker-container --config ./buildkitd.toml --use``
works with ``manyarch`` in its place (no daemon: a builder keeps that buildkitd.toml)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add ``version``, ``create`` and ``use``."""
    v = sub.add_parser("version", help="show the version (as docker buildx version)")
    v.set_defaults(func=_version)
    c = sub.add_parser(
        "create",
        help="name a builder and its buildkitd.toml (as docker buildx create; no daemon)",
        description="Record a builder: later commands read its buildkitd.toml "
        '([registry."HOST:PORT"] http/insecure) with the usual ones. manyarch runs no '
        "daemon, so --driver is noted only. `manyarch rm NAME` forgets it.",
    )
    c.add_argument("--name", help="the builder's name (default: a random one)")
    c.add_argument("--driver", default="docker-container", help="noted only: no daemon runs")
    c.add_argument("--config", type=Path, metavar="BUILDKITD_TOML", help="its buildkitd.toml")
    c.add_argument("--use", action="store_true", help="make it the current builder")
    c.add_argument("--bootstrap", action="store_true", help="accepted: nothing to start")
    c.add_argument("--platform", action="append", default=[], help="accepted, noted nowhere")
    c.add_argument("--driver-opt", action="append", default=[], help="accepted, ignored")
    c.add_argument("--buildkitd-flags", help="accepted, ignored")
    c.set_defaults(func=_create)
    u = sub.add_parser("use", help="make a builder the current one (as docker buildx use)")
    u.add_argument("name", metavar="NAME")
    u.set_defaults(func=_use)


def _version(args: argparse.Namespace) -> int:
    from manyarch._version import __version__

    print(f"manyarch {__version__}")
    return 0


def _create(args: argparse.Namespace) -> int:
    from manyarch import builders

    b = builders.create(args.name, driver=args.driver, config=args.config, use=args.use)
    print(b.name)
    return 0


def _use(args: argparse.Namespace) -> int:
    from manyarch import builders

    builders.select(args.name)
    return 0
