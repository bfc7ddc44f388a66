"""``manyarch ps``, ``logs``, ``stop``, ``kill``, ``start``, ``restart``, ``rm``, ``exec``,
``inspect``: containers kept as directories, no daemon."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from manyarch.cli.common import UsageError, defer, report, session
from manyarch.cli.refused import add_refused
from manyarch.errors import ManyarchError

if TYPE_CHECKING:
    from manyarch.run.container import ContainerState


def register(sub: Any) -> None:
    """Add the container commands."""
    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="also the stopped ones")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true", help="full ids and commands")
    p.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="id, name, label, status, exited, ancestor, health, before, since",
    )
    p.add_argument("--format", help="a Go template ({{.ID}}, {{.Names}}, {{json .}}, table ...)")
    p.add_argument(
        "-n", "--last", type=int, default=-1, metavar="N", help="the N last created (all states)"
    )
    p.add_argument("-l", "--latest", action="store_true", help="the last created (all states)")
    p.add_argument("-s", "--size", action="store_true", help="the size each container wrote")
    add_refused(p, "ps")
    p.set_defaults(func=_ps)
    lg = sub.add_parser("logs", help="print what a container wrote")
    lg.add_argument("container")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    lg.add_argument("-n", "--tail", default="all", metavar="N", help="only the last N lines")
    lg.add_argument("-t", "--timestamps", action="store_true", help="each line's time")
    lg.add_argument("--since", metavar="TIME", help="RFC 3339, Unix seconds or a duration (10m)")
    lg.add_argument("--until", metavar="TIME", help="RFC 3339, Unix seconds or a duration")
    add_refused(lg, "logs")
    lg.set_defaults(func=_logs)
    st = sub.add_parser("stop", help="stop running containers (SIGTERM, then SIGKILL)")
    defer(st, _stop_flags)
    st.set_defaults(func=_stop)
    k = sub.add_parser("kill", help="send a signal to running containers (SIGKILL by default)")
    k.add_argument("containers", nargs="+", metavar="CONTAINER")
    k.add_argument("-s", "--signal", default="SIGKILL", help="e.g. SIGTERM, HUP or 15")
    k.set_defaults(func=_kill)
    sa = sub.add_parser("start", help="start stopped containers again (detached)")
    sa.add_argument("containers", nargs="+", metavar="CONTAINER")
    sa.set_defaults(func=_start)
    rs = sub.add_parser("restart", help="stop, then start containers")
    rs.add_argument("containers", nargs="+", metavar="CONTAINER")
    rs.add_argument("-t", "--time", type=float, metavar="SECONDS", help="before SIGKILL")
    rs.add_argument("-s", "--signal", help="the stop signal")
    rs.set_defaults(func=_restart)
    rm = sub.add_parser("rm", help="remove containers")
    rm.add_argument("containers", nargs="+", metavar="CONTAINER")
    rm.add_argument("-f", "--force", action="store_true", help="stop running ones first")
    rm.add_argument("-v", "--volumes", action="store_true", help="and their anonymous volumes")
    rm.set_defaults(func=_rm)
    ex = sub.add_parser("exec", help="run a command in a running container")
    ex.add_argument("-i", "--interactive", action="store_true", help="feed it this stdin")
    ex.add_argument("-t", "--tty", action="store_true", help="a pseudo-terminal")
    ex.add_argument("-d", "--detach", action="store_true", help="leave it running")
    ex.add_argument("-u", "--user", help="USER[:GROUP] (default: the container's)")
    ex.add_argument("-w", "--workdir", help="working directory (default: the container's)")
    ex.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]")
    ex.add_argument("--env-file", action="append", default=[], metavar="FILE")
    ex.add_argument("container")
    ex.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    ex.set_defaults(func=_exec)
    ins = sub.add_parser("inspect", help="containers' or images' details as JSON")
    ins.add_argument("names", nargs="+", metavar="NAME|ID")
    ins.add_argument("-f", "--format", help="a Go template, e.g. '{{.State.Status}}'")
    ins.add_argument("--type", choices=["container", "image"], help="what the names are")
    ins.add_argument("-s", "--size", action="store_true", help="accepted: sizes are always given")
    ins.set_defaults(func=_inspect)


class _Unset(float):
    """A default that says it was not typed (stop then uses the container's --stop-timeout)."""


def _stop_flags(st: argparse.ArgumentParser) -> None:
    from manyarch.run.container import DEFAULT_STOP_TIMEOUT

    st.add_argument("containers", nargs="+", metavar="CONTAINER")
    st.add_argument(
        "-t",
        "--time",
        "--timeout",
        type=float,
        default=_Unset(DEFAULT_STOP_TIMEOUT),
        help="seconds before SIGKILL (default: the container's --stop-timeout, else 10)",
    )
    st.add_argument("-s", "--signal", help="what to send first (default: the container's)")


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """How long ago, worded as docker words it."""
    from manyarch.run.describe import ago as describe_ago

    return describe_ago(when, now)


def status_of(s: ContainerState) -> str:
    """docker's STATUS column."""
    from manyarch.run.describe import status_of as describe_status

    return describe_status(s)


def _ps(args: argparse.Namespace) -> int:
    from manyarch.gotemplate import render_rows
    from manyarch.run import describe

    last = 1 if args.latest else (args.last if args.last >= 0 else None)
    with session(args) as sess:
        states = sess.ps(all=args.all, filters=args.filter, last=last)
    if args.quiet:
        for s in states:
            print(s.id if args.no_trunc else s.id[:12])
        return 0
    rows = [describe.ps_row(s, no_trunc=args.no_trunc, size=args.size) for s in states]
    fmt = args.format
    if not fmt or fmt == "table":
        cols = ["ID", "Image", "Platform", "Command", "RunningFor", "Status", "Ports", "Names"]
        if args.size:
            cols.append("Size")
        fmt = "table " + "\\t".join("{{." + c + "}}" for c in cols)
    if fmt == "json":
        fmt = "{{json .}}"
    sys.stdout.write(_strip(render_rows(fmt, rows, describe.PS_HEADERS)))
    return 0


def _strip(text: str) -> str:
    return "".join(line.rstrip() + "\n" for line in text.splitlines())


def _logs(args: argparse.Namespace) -> int:
    tail = None
    if args.tail != "all":
        try:
            tail = int(args.tail)
        except ValueError as e:
            raise UsageError(f"invalid --tail {args.tail!r}", "a number of lines, or all") from e
    with session(args) as s:
        records = s.logs(
            args.container, follow=args.follow, tail=tail, since=args.since, until=args.until
        )
        for r in records:
            out = sys.stdout if r.stream == "stdout" else sys.stderr
            out.flush()
            out.buffer.write((r.timestamp().encode() + b" " if args.timestamps else b"") + r.data)
            out.flush()
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
    timeout = None if isinstance(args.time, _Unset) else args.time
    with session(args) as s:
        return _each(args.containers, lambda w: s.stop(w, timeout=timeout, signal=args.signal))


def _kill(args: argparse.Namespace) -> int:
    from manyarch.run.container import parse_signal

    parse_signal(args.signal)
    with session(args) as s:
        return _each(args.containers, lambda w: s.kill(w, signal=args.signal))


def _start(args: argparse.Namespace) -> int:
    with session(args) as s:
        return _each(args.containers, s.start)


def _restart(args: argparse.Namespace) -> int:
    with session(args) as s:
        return _each(args.containers, lambda w: s.restart(w, timeout=args.time, signal=args.signal))


def _rm(args: argparse.Namespace) -> int:
    with session(args) as s:
        return _each(args.containers, lambda w: s.rm(w, force=args.force, volumes=args.volumes))


def _exec(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from manyarch.cli.run import parse_env

    if not args.command:
        raise UsageError("exec needs a command", "manyarch exec CONTAINER COMMAND [ARG...]")
    if args.tty and args.interactive and not os.isatty(0):
        raise UsageError("the input device is not a TTY", "drop -t when stdin is not a terminal")
    env = parse_env(args.env, [Path(f) for f in args.env_file])
    with session(args) as s:
        return s.exec(
            args.container, args.command, env=env, user=args.user, workdir=args.workdir,
            interactive=args.interactive, tty=args.tty, detach=args.detach,
        )  # fmt: skip


def _inspect(args: argparse.Namespace) -> int:
    from manyarch.gotemplate import render, unescape

    out: list[Any] = []
    code = 0
    with session(args) as s:
        for word in args.names:
            try:
                out.extend(s.describe(word, type=args.type))
            except ManyarchError as e:
                report(e)
                code = 1
    if args.format:
        fmt = unescape(args.format)
        for obj in out:
            sys.stdout.write(render(fmt, obj) + "\n")
    else:
        print(json.dumps(out, indent=4))
    return code
