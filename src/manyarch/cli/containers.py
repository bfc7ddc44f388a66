"""``manyarch ps``, ``logs``, ``stop``, ``kill``, ``start``, ``restart``, ``rm``, ``exec``,
``inspect``: containers kept as directories, no daemon."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from manyarch.cli.common import defer, report
from manyarch.cli.refused import add_refused
from manyarch.errors import ManyarchError, UsageError

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


def _ps(args: argparse.Namespace) -> int:
    from manyarch.gotemplate import render_rows
    from manyarch.run import container, describe

    every = args.all or args.latest or args.last >= 0 or bool(args.filter)
    states = container.list_containers(all_=every)
    states = [s for s in states if describe.ps_filter(args.filter)(s)]
    states = describe.before_since(states, args.filter, container.find)
    if args.latest:
        states = states[:1]
    elif args.last >= 0:
        states = states[: args.last]
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
    from manyarch.run import container, logs
    from manyarch.units import parse_timestamp

    s = container.find(args.container)
    tail = None
    if args.tail != "all":
        try:
            tail = int(args.tail)
        except ValueError:
            raise UsageError(f"invalid --tail {args.tail!r}", "a number of lines, or all") from None
    since = parse_timestamp(args.since) if args.since else None
    until = parse_timestamp(args.until) if args.until else None

    def show(r: logs.Record) -> None:
        out = sys.stdout if r.stream == "stdout" else sys.stderr
        data = (r.timestamp().encode() + b" " if args.timestamps else b"") + r.data
        out.flush()
        out.buffer.write(data)
        out.flush()

    records = logs.read(s.log)
    chosen = logs.select(records, tail=tail, since=since, until=until)
    for r in chosen:
        show(r)
    if not args.follow or until is not None:
        return 0

    def done() -> bool:
        current = container.load_state(s.directory)
        return current is None or current.status == "exited"

    for i, r in enumerate(logs.follow(s.log, done)):
        if i >= len(records) and (since is None or r.time >= since):
            show(r)
    return 0


def _each(words: list[str], act: Any) -> int:
    from manyarch.run import container

    code = 0
    for word in words:
        try:
            act(container.find(word))
            print(word)
        except ManyarchError as e:
            report(e)
            code = 1
    return code


def _stop(args: argparse.Namespace) -> int:
    from manyarch.run import container

    if args.signal:
        container.parse_signal(args.signal)
    timeout = None if isinstance(args.time, _Unset) else args.time
    return _each(args.containers, lambda s: container.stop(s, timeout, args.signal))


def _kill(args: argparse.Namespace) -> int:
    from manyarch.run import container

    container.parse_signal(args.signal)
    return _each(args.containers, lambda s: container.kill(s, args.signal))


def _start(args: argparse.Namespace) -> int:
    from manyarch.run import supervisor

    return _each(args.containers, supervisor.start_again)


def _restart(args: argparse.Namespace) -> int:
    from manyarch.run import container, supervisor

    def again(s: ContainerState) -> None:
        container.stop(s, args.time, args.signal)
        current = container.load_state(s.directory)
        if current is None:
            raise ManyarchError(f"container {s.name} was removed when it stopped (--rm)")
        supervisor.start_again(current)

    return _each(args.containers, again)


def _rm(args: argparse.Namespace) -> int:
    from manyarch import builders
    from manyarch.errors import NotFound
    from manyarch.run import container

    code = 0
    for word in args.containers:
        try:
            try:
                s = container.find(word)
            except NotFound:
                if builders.find(word) is None:
                    raise
                builders.remove(word)  # `docker buildx rm NAME`: a builder of that name
            else:
                container.remove(s, force=args.force, volumes=args.volumes)
            print(word)
        except ManyarchError as e:
            report(e)
            code = 1
    return code


def _exec(args: argparse.Namespace) -> int:
    from pathlib import Path

    from manyarch.cli.run import parse_env
    from manyarch.run import container, enter

    if not args.command:
        raise UsageError("exec needs a command", "manyarch exec CONTAINER COMMAND [ARG...]")
    s = container.find(args.container)
    if not container.is_running(s) or not s.pid:
        raise ManyarchError(
            f"container {s.name} is not running", f"start it first: manyarch start {s.name}"
        )
    if args.tty and args.interactive and not os.isatty(0):
        raise UsageError("the input device is not a TTY", "drop -t when stdin is not a terminal")
    env = dict(s.env)
    env.update(parse_env(args.env, [Path(f) for f in args.env_file]))
    if args.tty:
        env.setdefault("TERM", os.environ.get("TERM") or "xterm")
    return enter.run(
        s, list(args.command), env=env, user=args.user if args.user is not None else s.user,
        workdir=args.workdir or s.cwd, interactive=args.interactive, tty=args.tty,
        detach=args.detach,
    )  # fmt: skip


def _inspect(args: argparse.Namespace) -> int:
    from manyarch.errors import NotFound
    from manyarch.gotemplate import render, unescape
    from manyarch.run import container, describe, local
    from manyarch.store import open_store

    out: list[Any] = []
    code = 0
    store = None
    for word in args.names:
        try:
            if args.type != "image":
                try:
                    out.append(describe.container_inspect(container.find(word)))
                    continue
                except NotFound:
                    if args.type == "container":
                        raise
            store = store or open_store()
            hits = local.lookup(store, word)
            if not hits:
                raise NotFound(f"no such object: {word}", "list them with `manyarch ps -a` "
                               "or `manyarch images`")  # fmt: skip
            best = local.best_of(hits)
            names = [i.name for i in local.list_images(store) if i.id == best.id]
            out.append(describe.image_inspect(best, names))
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
