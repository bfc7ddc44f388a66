"""Flags shared by several commands, and how they become library options.

Building the parser must stay cheap (``manyarch --version`` builds it): the
command modules import the library where a command runs, not at the top.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from manyarch.errors import InvalidArgument, ManyarchError

if TYPE_CHECKING:
    from manyarch.session import Session

#: Adds flags to a parser; see :func:`defer`.
AddFlags = Callable[[argparse.ArgumentParser], None]


class UsageError(ManyarchError):
    """The command line is wrong (exit 2). Raised only here, in the CLI: the library
    raises :class:`~manyarch.errors.InvalidArgument`, which the CLI reports alike."""

    #: the exit status when a command's own differs (``run``: docker's 125)
    exit_status: int | None = None


def exit_code(error: ManyarchError) -> int:
    """An error's own status (``exec``'s 126/127, ``run``'s 125), else 2 for a command line
    (or an argument) that is wrong, else 1."""
    own = getattr(error, "exit_status", None)
    if isinstance(own, int):
        return own
    return 2 if isinstance(error, UsageError | InvalidArgument) else 1


class Parser(argparse.ArgumentParser):
    """A parser whose errors are UsageErrors, and whose deferred flags are added when used."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deferred: list[AddFlags] = []
        #: docker's ``--flag=false`` of a boolean flag, as a flag argparse knows
        self.spellings: dict[str, str] = {}

    def _complete(self) -> None:
        while self.deferred:
            self.deferred.pop(0)(self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        """Add the deferred flags, then parse; a sub-command names its own unknown flags."""
        self._complete()
        if self.spellings and args is not None:
            words = list(args)
            end = words.index("--") if "--" in words else len(words)
            args = [self.spellings.get(w, w) for w in words[:end]] + words[end:]
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and " " in self.prog:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def format_usage(self) -> str:
        """Add the deferred flags, then the usage line."""
        self._complete()
        return super().format_usage()

    def format_help(self) -> str:
        """Add the deferred flags, then the help."""
        self._complete()
        return super().format_help()

    def error(self, message: str) -> None:  # type: ignore[override]
        """Raise the error instead of printing usage and exiting.

        An unknown flag is named alone (argparse would list the words after it too).
        """
        if message.startswith("unrecognized arguments: "):
            words = message.removeprefix("unrecognized arguments: ").split()
            flag = next((w for w in words if w.startswith("-")), words[0] if words else "")
            if flag.startswith("-"):
                message = f"unknown flag: {flag.split('=', 1)[0]}"
            else:
                message = f"unexpected argument: {flag}"
        error = UsageError(f"{self.prog}: {message}", f"see '{self.prog} --help'")
        if self.prog.endswith(" run"):
            error.exit_status = 125  # docker run's status for its own errors
        raise error


def defer(parser: argparse.ArgumentParser, add: AddFlags) -> None:
    """Run ``add(parser)`` only when the parser parses or shows help.

    For flags whose defaults, choices or help come from a module too heavy to
    import whenever the parser is built; their order in the help is kept.
    """
    if isinstance(parser, Parser):
        parser.deferred.append(add)
    else:
        add(parser)


def add_registry_flags(p: argparse.ArgumentParser) -> None:
    """--insecure-registry, --config (buildkitd.toml), --daemon-config, --jobs."""
    g = p.add_argument_group("registry")
    g.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="allow plain http and unverified TLS for this registry, as docker's "
        "daemon.json insecure-registries; repeatable",
    )
    g.add_argument(
        "--config",
        dest="buildkitd_config",
        type=Path,
        metavar="BUILDKITD_TOML",
        help='read [registry."HOST:PORT"] http/insecure from this buildkitd.toml '
        "(default: the current builder's, /etc/buildkit/buildkitd.toml, "
        "$XDG_CONFIG_HOME/buildkit/buildkitd.toml)",
    )
    g.add_argument(
        "--daemon-config",
        type=Path,
        metavar="DAEMON_JSON",
        help="read insecure-registries from this docker daemon.json "
        "(default: /etc/docker/daemon.json when present)",
    )
    g.add_argument("--jobs", type=int, default=4, help="parallel blob transfers (default 4)")


def session(args: argparse.Namespace) -> Session:
    """The session a command runs in, from the registry flags (when it has them)."""
    from manyarch.session import Session

    return Session(
        insecure_registries=getattr(args, "insecure_registry", None) or [],
        buildkitd_config=getattr(args, "buildkitd_config", None),
        daemon_config=getattr(args, "daemon_config", None),
        jobs=getattr(args, "jobs", 4) or 4,
    )


def report(error: ManyarchError) -> None:
    """Print ``error: <message>`` and its hint on stderr, as every command does."""
    print(f"error: {error.message}", file=sys.stderr)
    if error.hint:
        print(f"hint: {error.hint}", file=sys.stderr)


def stderr_is_tty() -> bool:
    """Whether progress may be drawn live."""
    return sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb"
