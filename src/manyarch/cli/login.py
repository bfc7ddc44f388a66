"""``manyarch login`` / ``manyarch logout``: the docker config file, written as docker does."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from manyarch.cli.common import UsageError, add_registry_flags, session


def register(sub: Any) -> None:
    """Add the ``login`` and ``logout`` commands."""
    p = sub.add_parser(
        "login", help="log in to a registry (~/.docker/config.json, or its credential helper)"
    )
    p.add_argument("server", help="HOST[:PORT], or as a URL: https://HOST[:PORT]/")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password", help="prefer --password-stdin")
    p.add_argument("--password-stdin", action="store_true")
    add_registry_flags(p)
    p.set_defaults(func=_login)
    q = sub.add_parser("logout", help="remove a registry's credentials")
    q.add_argument("server", help="HOST[:PORT], or as a URL: https://HOST[:PORT]/")
    q.set_defaults(func=_logout)


def _login(args: argparse.Namespace) -> int:
    import getpass

    if args.password_stdin and args.password:
        raise UsageError("--password and --password-stdin are mutually exclusive")
    if args.password:
        # docker's words: the password stays in the shell's history and in ps
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
              file=sys.stderr)  # fmt: skip
    if not args.username and not sys.stdin.isatty():
        raise UsageError("no username given and no terminal to ask for one", "give it with -u USER")
    user = args.username or input("Username: ")
    if args.password_stdin:
        password = sys.stdin.read().rstrip("\n")
    else:
        password = args.password or getpass.getpass("Password: ")
    if not user or not password:
        raise UsageError(
            "username and password are required",
            "give -u USER and the password on stdin with --password-stdin",
        )
    with session(args) as s:
        s.login(args.server, user, password)
    print("Login Succeeded")
    return 0


def _logout(args: argparse.Namespace) -> int:
    with session(args) as s:
        removed = s.logout(args.server)
        host = s.login_host(args.server)
    if removed:
        print(f"Removing login credentials for {host}")
    else:
        print(f"Not logged in to {host}")
    return 0
