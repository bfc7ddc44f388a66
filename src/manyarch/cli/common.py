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

from manyarch.errors import ManyarchError, UsageError

if TYPE_CHECKING:
    from manyarch.registry import RegistryClient, RegistryOptions

#: Adds flags to a parser; see :func:`defer`.
AddFlags = Callable[[argparse.ArgumentParser], None]

#: Where buildkitd.toml files are looked for when --config is not given (BuildKit's own
#: places, then the current directory, where the seed keeps its buildkitd.toml).
BUILDKITD_CONFIGS = (
    Path("/etc/buildkit/buildkitd.toml"),
    Path.home() / ".config" / "buildkit" / "buildkitd.toml",
    Path("buildkitd.toml"),
)
DAEMON_JSON = Path("/etc/docker/daemon.json")


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
            error.exit_code = 125  # docker run's status for its own errors
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
        help="allow plain http (and unverified TLS) for this registry; repeatable",
    )
    g.add_argument(
        "--config",
        dest="buildkitd_config",
        type=Path,
        metavar="BUILDKITD_TOML",
        help='read [registry."HOST:PORT"] http/insecure from this buildkitd.toml '
        "(default: the current builder's, /etc/buildkit, ~/.config/buildkit, ./buildkitd.toml)",
    )
    g.add_argument(
        "--daemon-config",
        type=Path,
        metavar="DAEMON_JSON",
        help="read insecure-registries from this docker daemon.json "
        "(default: /etc/docker/daemon.json when present)",
    )
    g.add_argument("--jobs", type=int, default=4, help="parallel blob transfers (default 4)")


def registry_options(args: argparse.Namespace) -> RegistryOptions:
    """RegistryOptions from the shared flags and the configuration files."""
    from manyarch.registry import RegistryOptions
    from manyarch.registry.options import load_registry_hosts

    opts = RegistryOptions(
        insecure=frozenset(getattr(args, "insecure_registry", []) or []),
        jobs=getattr(args, "jobs", 4) or 4,
    )
    configs: list[Path] = []
    explicit = getattr(args, "buildkitd_config", None)
    if explicit is not None:
        configs.append(explicit)
    else:
        from manyarch import builders

        builder = builders.current()  # `create --config F --use`, as buildx keeps it
        if builder is not None and builder.config is not None:
            configs.append(builder.config)
        configs.extend(p for p in BUILDKITD_CONFIGS if p.is_file())
    daemon = getattr(args, "daemon_config", None)
    if daemon is None and DAEMON_JSON.is_file():
        daemon = DAEMON_JSON
    for i, cfg in enumerate(configs or [None]):
        opts = opts.with_hosts(load_registry_hosts(cfg, daemon if i == 0 else None))
    return opts


def client_factory(args: argparse.Namespace) -> Any:
    """A lazy RegistryClient factory bound to the flags (one client per command)."""
    from manyarch.registry import RegistryClient

    holder: list[RegistryClient] = []

    def make() -> RegistryClient:
        if not holder:
            holder.append(RegistryClient(registry_options(args)))
        return holder[0]

    return make


def report(error: ManyarchError) -> None:
    """Print ``error: <message>`` and its hint on stderr, as every command does."""
    print(f"error: {error.message}", file=sys.stderr)
    if error.hint:
        print(f"hint: {error.hint}", file=sys.stderr)


def stderr_is_tty() -> bool:
    """Whether progress may be drawn live."""
    return sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb"
