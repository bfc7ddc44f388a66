"""``manyarch run``: docker run's common flags, a bubblewrap sandbox instead of a daemon."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from manyarch.cli.common import Parser, UsageError, add_registry_flags, session
from manyarch.cli.refused import add_refused

if TYPE_CHECKING:
    from manyarch.run.container import RunOptions


def register(sub: Any) -> None:
    """Add the ``run`` command."""
    p = sub.add_parser(
        "run",
        help="run a command in a new container (pulls the image when needed)",
        description="Run an image's Entrypoint + Cmd in a bubblewrap sandbox (own user, PID, "
        "IPC, UTS, mount and network namespaces; Docker's capabilities and seccomp profile). "
        "The network is its own, wired by pasta (outbound, and -p ports in); the host's "
        "loopback services are out of reach. Exit status: the program's, 125 when "
        "manyarch fails, 126 when the command cannot be run, 127 when it is not found.",
        add_help=False,  # -h is --hostname, as in docker
    )
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background, print id")
    p.add_argument(
        "-i", "--interactive", action="store_true", help="keep stdin open: the container reads it"
    )
    p.add_argument(
        "-t", "--tty", action="store_true", help="a pseudo-terminal, sized as this one, with TERM"
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
    p.add_argument(
        "-P", "--publish-all", action="store_true", help="publish every exposed port to a free one"
    )
    p.add_argument("--expose", action="append", default=[], metavar="PORT[/PROTO]")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]")
    p.add_argument("--env-file", action="append", default=[], type=Path, metavar="FILE")
    p.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--label-file", action="append", default=[], type=Path, metavar="FILE")
    p.add_argument("-w", "--workdir", help="working directory inside the container (created)")
    p.add_argument("-u", "--user", help="USER[:GROUP] (names or numbers)")
    p.add_argument("--entrypoint", help="override the image's ENTRYPOINT")
    _container_flags(p)
    p.add_argument(
        "--stop-signal", metavar="SIGNAL", help="what `stop` sends first (default: the image's)"
    )
    p.add_argument("--stop-timeout", type=float, metavar="SECONDS", help="before SIGKILL")
    p.add_argument("--cidfile", type=Path, metavar="FILE", help="write the container id there")
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
    _security_flags(p)
    add_refused(p, "run")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD")
    add_registry_flags(p)
    p.set_defaults(func=_run)


def _security_flags(p: argparse.ArgumentParser) -> None:
    """--network, --privileged, --cap-add, --cap-drop, --security-opt: the explicit choices."""
    p.add_argument(
        "--network",
        "--net",
        default="bridge",
        choices=["bridge", "default", "host", "none"],
        help="bridge (default): its own namespace, outbound through pasta; host: the host's "
        "network (its loopback services too); none: loopback only",
    )
    p.add_argument(
        "--privileged",
        action="store_true",
        help="as the host's root: every capability, no seccomp, no user namespace",
    )
    p.add_argument("--cap-add", action="append", default=[], metavar="CAP")
    p.add_argument("--cap-drop", action="append", default=[], metavar="CAP")
    p.add_argument(
        "--security-opt",
        action="append",
        default=[],
        metavar="OPT",
        help="seccomp=unconfined turns the seccomp filter off; no-new-privileges is always on",
    )


def _security(args: argparse.Namespace) -> Any:
    """The container's Security from the flags (docker's spellings)."""
    from manyarch.sandbox.confine import Security

    seccomp = True
    for opt in args.security_opt:
        key, _, value = opt.replace(":", "=", 1).partition("=")
        if key == "seccomp" and value == "unconfined":
            seccomp = False
        elif key == "no-new-privileges" and value in ("", "true"):
            pass  # always so (bubblewrap sets it)
        else:
            raise UsageError(
                f"unsupported --security-opt {opt!r}",
                "manyarch takes seccomp=unconfined and no-new-privileges",
            )
    return Security.of(
        privileged=args.privileged, cap_add=args.cap_add, cap_drop=args.cap_drop, seccomp=seccomp
    )


def _container_flags(p: argparse.ArgumentParser) -> None:
    """Names, mounts and the root: -h, --add-host, -v, --mount, --tmpfs, --read-only."""
    p.add_argument("-h", "--hostname", help="the container's host name")
    p.add_argument(
        "--add-host", action="append", default=[], metavar="NAME:IP", help="a line of /etc/hosts"
    )
    p.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        metavar="[SRC:]DST[:ro]",
        help="bind a host path (SRC starts with / or .) or a named volume; DST alone: anonymous",
    )
    p.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="type=bind|volume|tmpfs,...",
        help="source=,target=,readonly,tmpfs-size=,tmpfs-mode=",
    )
    p.add_argument("--tmpfs", action="append", default=[], metavar="DST[:size=64m,mode=1777]")
    p.add_argument("--read-only", action="store_true", help="mount the root read-only")
    _runtime_flags(p)


def _runtime_flags(p: argparse.ArgumentParser) -> None:
    """The init, restarts, cgroup limits and the health check."""
    p.add_argument(
        "--init",
        action="store_const",
        const="true",
        help="a native init (tini) as PID 1 that forwards signals and reaps; --init=false "
        "turns it off (default: on for an emulated image, off otherwise)",
    )
    p.add_argument("--no-init", dest="init", action="store_const", const="false",
                   help=argparse.SUPPRESS)  # fmt: skip
    if isinstance(p, Parser):
        p.spellings.update({"--init=true": "--init", "--init=false": "--no-init"})
    p.add_argument(
        "--restart",
        default="no",
        metavar="POLICY",
        help="no | on-failure[:N] | always | unless-stopped (the supervisor restarts it)",
    )
    p.add_argument("-m", "--memory", metavar="BYTES", help="memory limit (cgroups), e.g. 256m")
    p.add_argument("--cpus", type=float, default=0.0, help="CPU limit (cgroups), e.g. 1.5")
    p.add_argument("--pids-limit", type=int, default=0, help="process limit (cgroups)")
    p.add_argument("--health-cmd", metavar="CMD", help="the health probe (a shell command)")
    p.add_argument("--health-interval", metavar="DURATION")
    p.add_argument("--health-timeout", metavar="DURATION")
    p.add_argument("--health-retries", type=int, metavar="N")
    p.add_argument("--health-start-period", metavar="DURATION")
    p.add_argument("--health-start-interval", metavar="DURATION")
    p.add_argument("--no-healthcheck", action="store_true", help="ignore the image's HEALTHCHECK")


def parse_labels(items: list[str], files: list[Path]) -> dict[str, str]:
    """``--label-file`` then ``-l`` (``KEY`` alone: an empty value, as docker)."""
    lines: list[str] = []
    for f in files:
        try:
            text = f.read_text()
        except OSError as e:
            raise UsageError(f"cannot read label file {f}: {e.strerror}") from e
        lines += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    lines += items
    out: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition("=")
        if not key:
            raise UsageError(f"invalid label {line!r}", "write -l KEY=VALUE")
        out[key] = value
    return out


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


def _options(args: argparse.Namespace) -> RunOptions:
    """RunOptions from the flags (each parsed and checked before any pull)."""
    from manyarch.errors import LimitsUnavailable
    from manyarch.run import cgroups, container, mounts
    from manyarch.run.cgroups import Limits
    from manyarch.run.container import RunOptions
    from manyarch.run.network import PortMapping
    from manyarch.run.spec import parse_add_host
    from manyarch.units import parse_size

    if args.stop_signal:
        container.parse_signal(args.stop_signal)  # a bad one fails before any pull
    if args.tty and args.interactive and not os.isatty(0):
        raise UsageError(
            "the input device is not a TTY",
            "drop -t when stdin is a pipe or a file (keep -i to feed it to the container)",
        )
    memory = 0
    if args.memory:
        try:
            memory = parse_size(args.memory)
        except ValueError as e:
            raise UsageError(f"invalid --memory {args.memory!r}", "e.g. -m 256m or -m 1g") from e
    container.parse_restart(args.restart)
    limits = Limits(memory, args.cpus, args.pids_limit)
    try:
        cgroups.check(limits)  # refused before anything is pulled
    except LimitsUnavailable as e:
        flags = {"memory": "--memory", "cpu": "--cpus", "pids": "--pids-limit"}
        named = ", ".join(flags[c] for c in limits.controllers())
        raise UsageError(
            e.message.replace(limits.words(), named, 1),
            (e.hint or "").replace("or go without", "or drop the flag"),
        ) from e
    health = {
        "cmd": args.health_cmd,
        "interval": args.health_interval,
        "timeout": args.health_timeout,
        "retries": args.health_retries,
        "start_period": args.health_start_period,
        "start_interval": args.health_start_interval,
    }
    return RunOptions(
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
        tty=args.tty and (args.detach or os.isatty(0)),
        stop_signal=args.stop_signal,
        init=None if args.init is None else args.init == "true",
        hostname=args.hostname,
        extra_hosts=[parse_add_host(h) for h in args.add_host],
        mounts=[
            *(mounts.parse_volume(v) for v in args.volume),
            *(mounts.parse_mount(m) for m in args.mount),
            *(mounts.parse_tmpfs(t) for t in args.tmpfs),
        ],
        read_only=args.read_only,
        labels=parse_labels(args.label, args.label_file),
        restart=args.restart,
        limits=limits,
        health_flags={k: v for k, v in health.items() if v is not None},
        no_healthcheck=args.no_healthcheck,
        stop_timeout=args.stop_timeout,
        publish_all=args.publish_all,
        expose=list(args.expose),
        network="bridge" if args.network == "default" else args.network,
        security=_security(args),
    )


def _run(args: argparse.Namespace) -> int:
    """docker run's exit status: manyarch's own failures are 125."""
    from manyarch.cli.common import report
    from manyarch.errors import ManyarchError

    try:
        return _run_container(args)
    except ManyarchError as e:
        if getattr(args, "debug", False):
            raise
        report(e)
        return 125


def _run_container(args: argparse.Namespace) -> int:
    from manyarch.cli.pull import pull_printer

    options = _options(args)
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
        if args.cidfile:
            args.cidfile.write_text(created.state.id)
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
