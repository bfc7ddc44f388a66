"""``manyarch login`` / ``manyarch logout``: the docker config file, written as docker does."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from manyarch.cli.common import add_registry_flags, registry_options
from manyarch.errors import AuthError, ManyarchError, NotFound, UsageError


def register(sub: Any) -> None:
    """Add the ``login`` and ``logout`` commands."""
    p = sub.add_parser("login", help="log in to a registry (writes ~/.docker/config.json)")
    p.add_argument("server", help="HOST[:PORT]")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password", help="prefer --password-stdin")
    p.add_argument("--password-stdin", action="store_true")
    add_registry_flags(p)
    p.set_defaults(func=_login)
    q = sub.add_parser("logout", help="remove a registry's credentials")
    q.add_argument("server", help="HOST[:PORT]")
    q.set_defaults(func=_logout)


def _config_path() -> Path:
    from manyarch.registry.credentials import docker_config_dir

    return docker_config_dir() / "config.json"


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ManyarchError(
            f"cannot read the docker config {path}: {e}",
            "fix the JSON or move the file away (it holds every registry login)",
        ) from None
    return data if isinstance(data, dict) else {}


def _save(path: Path, data: dict[str, Any]) -> None:
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config.json.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent="\t")
        f.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _login(args: argparse.Namespace) -> int:
    import base64
    import getpass
    import tempfile
    from dataclasses import replace

    from manyarch.oci.reference import Reference
    from manyarch.registry import RegistryClient
    from manyarch.registry.credentials import server_key

    if args.password_stdin and args.password:
        raise UsageError("--password and --password-stdin are mutually exclusive")
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
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    key = server_key(args.server)
    # try the credentials from a private config before writing the real one
    with tempfile.TemporaryDirectory() as tmp:
        _save(Path(tmp) / "config.json", {"auths": {key: {"auth": auth}}})
        opts = registry_options(args)
        with RegistryClient(replace(opts, docker_config=Path(tmp))) as client:
            probe = Reference(args.server, "manyarch/login-probe", "latest")
            try:
                client.list_tags(probe)
            except NotFound:
                pass  # authenticated: the repository simply does not exist
            except AuthError as e:
                raise AuthError(
                    f"login to {args.server} failed: {e.message}",
                    "check the username and password (or token)",
                    status=e.status,
                ) from None
    path = _config_path()
    data = _load(path)
    data.setdefault("auths", {})[key] = {"auth": auth}
    _save(path, data)
    print("Login Succeeded")
    return 0


def _logout(args: argparse.Namespace) -> int:
    from manyarch.registry.credentials import server_key

    path = _config_path()
    data = _load(path)
    key = server_key(args.server)
    if key not in data.get("auths", {}):
        print(f"Not logged in to {args.server}")
        return 0
    del data["auths"][key]
    _save(path, data)
    print(f"Removing login credentials for {args.server}")
    return 0
