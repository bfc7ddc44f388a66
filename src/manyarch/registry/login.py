"""Logging in and out: credentials checked against the registry, then kept where
``docker login`` keeps them: the credential helper ``config.json`` names for the
registry (``credHelpers``, else ``credsStore``; ``auths[server]`` is then an
empty entry), else ``auths[server].auth`` in ``config.json`` (mode 0600).

The server may be written as docker takes it (``https://host:port/v2/``,
``http://host:port``): it names ``host:port``."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from manyarch.errors import AuthError, InvalidArgument, ManyarchError, NotFound
from manyarch.oci.reference import Reference
from manyarch.registry.client import RegistryClient
from manyarch.registry.credentials import (
    docker_config_dir,
    erase_with_helper,
    helper_for,
    login_host,
    server_key,
    store_with_helper,
)
from manyarch.registry.options import RegistryOptions


def config_path() -> Path:
    """The docker ``config.json`` logins are written to."""
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
        ) from e
    return data if isinstance(data, dict) else {}


def _save(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically; on any failure (a full disk) no temporary file stays."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config.json.")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent="\t")
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(e, OSError):
            raise ManyarchError(
                f"cannot write {path}: {e.strerror or e}",
                "free some space (or fix the permissions) and log in again; "
                "the file was left as it was",
            ) from e
        raise


def login(options: RegistryOptions, server: str, username: str, password: str) -> None:
    """Check ``username``/``password`` against ``server``, then keep them.

    The check runs with a client of its own that knows only these credentials
    (a private config file), so that a refusal leaves the real file untouched.
    """
    if not username or not password:
        raise InvalidArgument("username and password are required")
    server = login_host(server)
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    key = server_key(server)
    with tempfile.TemporaryDirectory() as tmp:
        _save(Path(tmp) / "config.json", {"auths": {key: {"auth": auth}}})
        with RegistryClient(replace(options, docker_config=Path(tmp))) as client:
            probe = Reference(server, "manyarch/login-probe", "latest")
            try:
                client.list_tags(probe)
            except NotFound:
                pass  # authenticated: the repository simply does not exist
            except AuthError as e:
                raise AuthError(
                    f"login to {server} failed: {e.message}",
                    "check the username and password (or token)",
                    status=e.status,
                ) from e
    path = config_path()
    data = _load(path)
    helper = helper_for(data, server)
    if helper is not None:
        store_with_helper(helper, key, username, password)
    data.setdefault("auths", {})[key] = {} if helper is not None else {"auth": auth}
    _save(path, data)


def logout(server: str) -> bool:
    """Forget ``server``'s credentials (in its helper too); False when there were none."""
    path = config_path()
    data = _load(path)
    server = login_host(server)
    key = server_key(server)
    if key not in data.get("auths", {}):
        return False
    del data["auths"][key]
    _save(path, data)
    helper = helper_for(data, server)
    if helper is not None:
        erase_with_helper(helper, key)
    return True
