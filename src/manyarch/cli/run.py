"""``manyarch run``: docker run's common flags, a bubblewrap sandbox instead of a daemon."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from manyarch.cli.common import add_registry_flags
from manyarch.cli.pull import pull_and_report
from manyarch.errors import NotFound, UsageError


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
            raise UsageError(f"cannot read env file {f}: {e.strerror}") from None
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
    from manyarch.oci.platform import Platform, host_platform
    from manyarch.run import container
    from manyarch.run.container import RunOptions
    from manyarch.run.local import find_local, parse_image_ref, store_name
    from manyarch.run.network import PortMapping
    from manyarch.store import open_store

    ref = parse_image_ref(args.image)
    platform = Platform.parse(args.platform) if args.platform else None
    ports = [PortMapping.parse(p) for p in args.publish]
    options = RunOptions(
        command=list(args.command),
        entrypoint=args.entrypoint,
        env=parse_env(args.env, args.env_file),
        workdir=args.workdir,
        user=args.user,
        name=args.name,
        ports=ports,
        remove=args.rm,
        detach=args.detach,
        emulation=args.emulation == "on",
        interactive=args.interactive,
        tty=args.tty and os.isatty(0),
        stop_signal=args.stop_signal,
    )
    if args.stop_signal:
        container.parse_signal(args.stop_signal)  # a bad one fails before any pull
    if args.tty and args.interactive and not os.isatty(0):
        raise UsageError(
            "the input device is not a TTY",
            "drop -t when stdin is a pipe or a file (keep -i to feed it to the container)",
        )
    store = open_store()
    image = None if args.pull == "always" else find_local(store, store_name(ref), platform)
    if image is None:
        if args.pull == "never":
            raise NotFound(
                f"no image {args.image} for {platform or 'this platform'} in the local store",
                f"pull it: manyarch pull {args.image}",
            )
        if (
            args.pull == "missing"
            and not args.quiet
            and find_local(store, store_name(ref), None) is None
        ):
            print(f"Unable to find image '{args.image}' locally", file=sys.stderr)
        image = pull_and_report(args, ref, platform, sys.stderr, quiet=args.quiet).image
    host = host_platform()
    if platform is None and not any(p.same(image.platform) for p in host.fallbacks()):
        print(
            f"WARNING: The requested image's platform ({image.platform}) does not match the "
            f"detected host platform ({host}) and no specific platform was requested",
            file=sys.stderr,
            flush=True,
        )
    state = container.create(image, options)
    if not args.detach:
        sys.stdout.flush()
        sys.stderr.flush()
        return container.run_foreground(state)
    started, output = container.start_detached(state)
    if started.status == "exited" and (started.exec_error or started.exit_code == 125):
        sys.stderr.buffer.write(output)
        sys.stderr.flush()
        return started.exit_code if started.exit_code is not None else 125
    print(state.id)
    return 0
