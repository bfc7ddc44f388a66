"""``manyarch run``: docker run's common flags, a bubblewrap sandbox instead of a daemon."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from manyarch.cli.common import UsageError, add_registry_flags, session


def register(sub: Any) -> None:
    """Add the ``run`` command."""
    p = sub.add_parser(
        "run",
        help="run a command in a new container (pulls the image when needed)",
        description="Run an image's Entrypoint + Cmd in a bubblewrap sandbox (own PID, IPC, "
        "UTS and mount namespaces). Without -p the container shares the host's network; "
        "with -p it gets its own, wired by pasta.",
    )
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background, print id")
    p.add_argument(
        "-i", "--interactive", action="store_true", help="keep stdin open: the container reads it"
    )
    p.add_argument(
        "-t", "--tty", action="store_true", help="give the container this terminal (with -i)"
    )
    p.add_argument("--name", help="name the container")
    p.add_argument("--platform", help="run this platform of the image (e.g. linux/arm64)")
    p.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="[IP:][HOST:]CONTAINER",
        help="forward a host port (a free one when omitted) to the container; repeatable",
    )
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]")
    p.add_argument("--env-file", action="append", default=[], type=Path, metavar="FILE")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("-u", "--user", help="USER[:GROUP] (names or numbers)")
    p.add_argument("--entrypoint", help="override the image's ENTRYPOINT")
    p.add_argument(
        "--stop-signal", metavar="SIGNAL", help="what `stop` sends first (default: the image's)"
    )
    p.add_argument(
        "--emulation",
        choices=["on", "off"],
        default="on",
        help="off: no binfmt handlers in the sandbox, for this run only",
    )
    p.add_argument(
        "--pull",
        choices=["missing", "always", "never"],
        default="missing",
        help="when to pull (default: missing)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="pull without printing")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD")
    add_registry_flags(p)
    p.set_defaults(func=_run)


def parse_env(items: list[str], files: list[Path]) -> dict[str, str]:
    """``--env-file`` then ``-e``, as docker reads them (``KEY`` alone: from this environment)."""
    out: dict[str, str] = {}
    lines: list[tuple[str, str]] = []
    for f in files:
        try:
            text = f.read_text()
        except OSError as e:
            raise UsageError(f"cannot read env file {f}: {e.strerror}") from e
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if line and not line.startswith("#"):
                lines.append((line, f"{f}:{n}"))
    lines += [(i, "-e") for i in items]
    for line, where in lines:
        key, sep, value = line.partition("=")
        if not key or any(c.isspace() for c in key):
            raise UsageError(f"invalid environment variable {line!r} ({where})", "write KEY=VALUE")
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out


def _run(args: argparse.Namespace) -> int:
    from manyarch.cli.pull import pull_printer
    from manyarch.run.container import RunOptions
    from manyarch.run.network import PortMapping

    if args.tty and args.interactive and not os.isatty(0):
        raise UsageError(
            "the input device is not a TTY",
            "drop -t when stdin is a pipe or a file (keep -i to feed it to the container)",
        )
    options = RunOptions(
        command=list(args.command),
        entrypoint=args.entrypoint,
        env=parse_env(args.env, args.env_file),
        workdir=args.workdir,
        user=args.user,
        name=args.name,
        ports=[PortMapping.parse(p) for p in args.publish],
        remove=args.rm,
        detach=args.detach,
        emulation=args.emulation == "on",
        interactive=args.interactive,
        tty=args.tty and os.isatty(0),
        stop_signal=args.stop_signal,
    )
    with session(args) as s:
        created = s.create(
            args.image,
            options,
            platform=args.platform,
            pull=args.pull,
            progress=pull_printer(args.image, sys.stderr, quiet=args.quiet),
        )
        for warning in created.warnings:
            print(f"WARNING: {warning}", file=sys.stderr, flush=True)
        if not args.detach:
            sys.stdout.flush()
            sys.stderr.flush()
        started = s.start(created, detach=args.detach)
    if not args.detach:
        return started.exit_code if started.exit_code is not None else 125
    state = started.state
    if state.status == "exited" and (state.exec_error or state.exit_code == 125):
        sys.stderr.buffer.write(started.output)
        sys.stderr.flush()
        return state.exit_code if state.exit_code is not None else 125
    print(state.id)
    return 0
