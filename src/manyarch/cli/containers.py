"""``manyarch ps``, ``logs``, ``stop`` and ``rm``: containers kept as directories, no daemon."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from manyarch.cli.common import defer, report, session
from manyarch.errors import ManyarchError

if TYPE_CHECKING:
    from manyarch.run.container import ContainerState


def register(sub: Any) -> None:
    """Add ``ps``, ``logs``, ``stop`` and ``rm``."""
    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="also the stopped ones")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true", help="full ids and commands")
    p.set_defaults(func=_ps)
    lg = sub.add_parser("logs", help="print what a detached container wrote")
    lg.add_argument("container")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    lg.set_defaults(func=_logs)
    st = sub.add_parser("stop", help="stop running containers (SIGTERM, then SIGKILL)")
    defer(st, _stop_flags)
    st.set_defaults(func=_stop)
    rm = sub.add_parser("rm", help="remove containers")
    rm.add_argument("containers", nargs="+", metavar="CONTAINER")
    rm.add_argument("-f", "--force", action="store_true", help="stop running ones first")
    rm.set_defaults(func=_rm)


def _stop_flags(st: argparse.ArgumentParser) -> None:
    from manyarch.run.container import DEFAULT_STOP_TIMEOUT

    st.add_argument("containers", nargs="+", metavar="CONTAINER")
    st.add_argument("-t", "--time", type=float, default=DEFAULT_STOP_TIMEOUT)


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """How long ago, worded as docker words it."""
    from manyarch.units import human_duration

    if when is None:
        return "?"
    return human_duration(((now or datetime.now(UTC)) - when).total_seconds())


def status_of(s: ContainerState) -> str:
    """docker's STATUS column."""
    from manyarch.run.container import parse_time

    if s.status == "running":
        return f"Up {ago(parse_time(s.started))}"
    if s.status == "exited":
        return f"Exited ({s.exit_code}) {ago(parse_time(s.finished))} ago"
    return "Created"


def _ps(args: argparse.Namespace) -> int:
    from manyarch.run.container import parse_time

    with session(args) as sess:
        states = sess.ps(all=args.all)
    if args.quiet:
        for s in states:
            print(s.id if args.no_trunc else s.id[:12])
        return 0
    rows = [("CONTAINER ID", "IMAGE", "PLATFORM", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")]
    for s in states:
        cmd = " ".join(s.argv)
        if not args.no_trunc and len(cmd) > 20:
            cmd = cmd[:19] + "…"
        rows.append(
            (
                s.id if args.no_trunc else s.id[:12],
                s.image,
                s.platform,
                f'"{cmd}"',
                f"{ago(parse_time(s.created))} ago",
                status_of(s),
                ", ".join(str(p) for p in s.port_mappings),
                s.name,
            )
        )
    _table(rows)
    return 0


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _logs(args: argparse.Namespace) -> int:
    with session(args) as s:
        for chunk in s.logs(args.container, follow=args.follow):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
    return 0


def _each(words: list[str], action: Callable[[str], object]) -> int:
    """``action`` on every container named, as docker does: each one printed, or its error."""
    code = 0
    for word in words:
        try:
            action(word)
            print(word)
        except ManyarchError as e:
            report(e)
            code = 1
    return code


def _stop(args: argparse.Namespace) -> int:
    with session(args) as s:
        return _each(args.containers, lambda word: s.stop(word, timeout=args.time))


def _rm(args: argparse.Namespace) -> int:
    with session(args) as s:
        return _each(args.containers, lambda word: s.rm(word, force=args.force))
