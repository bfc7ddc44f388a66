"""Entry point: builds the argument parser from the command modules and runs one."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence

from manyarch._version import __version__
from manyarch.cli.common import Parser, exit_code, report
from manyarch.errors import DiskFull, ManyarchError

#: The order commands are listed in; any other module of manyarch.cli with a
#: ``register(subparsers)`` function is found and listed after these.
COMMANDS = (
    "build",
    "imagetools",
    "copy",
    "pull",
    "run",
    "containers",
    "images_cmd",
    "base",
    "login",
    "emulation",
    "builder",
)


def _command_modules() -> list[str]:
    import pkgutil

    import manyarch.cli as pkg

    found = {m.name for m in pkgutil.iter_modules(pkg.__path__)} - {"main", "common", "outputs"}
    return [c for c in COMMANDS if c in found] + sorted(found - set(COMMANDS))


def build_parser() -> argparse.ArgumentParser:
    """The full parser, one sub-parser per command module."""
    parser = Parser(
        prog="manyarch",
        description="Multi-platform container images for Python applications, without Docker.",
    )
    parser.add_argument("--version", action="version", version=f"manyarch {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for every error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in _command_modules():
        module = importlib.import_module(f"manyarch.cli.{name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    try:
        try:
            return _run(list(sys.argv[1:] if argv is None else argv))
        finally:  # here (also after argparse's --help), where a reader that went away is handled
            sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (`manyarch images | head -1`): stop quietly, as
        # a shell tool does, and keep Python from complaining at exit when it
        # flushes stdout again
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
        return 128 + signal.SIGPIPE


def debug_asked(args_list: Sequence[str]) -> bool:
    """Whether ``--debug`` is manyarch's own flag here: before the command's name.

    (``manyarch run IMG grep --debug x`` gives ``--debug`` to grep.)
    """
    for word in args_list:
        if word == "--debug":
            return True
        if word == "--" or not word.startswith("-"):
            return False
    return False


def _run(args_list: list[str]) -> int:
    args: argparse.Namespace | None = None
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        return int(args.func(args) or 0)
    except ManyarchError as e:
        if args.debug if args is not None else debug_asked(args_list):
            raise
        report(e)
        return exit_code(e)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        # a full disk is the machine's state, not a bug, wherever the write was
        full = DiskFull.of(e)
        if full is None or (args.debug if args is not None else debug_asked(args_list)):
            raise
        report(full)
        return 1
