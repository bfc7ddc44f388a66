"""Registry credentials from a docker ``config.json``, as the docker CLI finds them.

Lookup order for a registry (docker/cli ``configfile.GetAuthConfig``):
``credHelpers[host]``, else ``credsStore``, else the ``auths`` entry. A
helper is the program ``docker-credential-NAME``; ``get`` reads the server
URL on stdin and writes ``{"ServerURL", "Username", "Secret"}``; a
``Username`` of ``<token>`` makes ``Secret`` an identity (refresh) token.
docker.io is stored under ``https://index.docker.io/v1/``.

Secrets never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manyarch.errors import AuthError, InvalidInput, ToolMissing
from manyarch.registry.options import DOCKER_HUB_AUTH_KEY

_DOCKER_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    """A user name with a password, or an identity token; secrets hidden from repr."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    @property
    def empty(self) -> bool:
        """No user, no password, no token: anonymous."""
        return not (self.username or self.password or self.identity_token)

    def basic(self) -> str:
        """The ``Authorization`` value for HTTP basic auth."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


ANONYMOUS = Credentials()


def docker_config_dir(explicit: Path | None = None) -> Path:
    """``explicit``, else ``$DOCKER_CONFIG``, else ``~/.docker``."""
    if explicit is not None:
        return explicit
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path.home() / ".docker"


def server_key(registry: str) -> str:
    """The key a registry's credentials are stored under (docker.io is special)."""
    return DOCKER_HUB_AUTH_KEY if registry in _DOCKER_HUB_NAMES else registry


def _hostname(key: str) -> str:
    # docker/cli ConvertToHostname: strip the scheme and any path.
    for prefix in ("http://", "https://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    return key.split("/", 1)[0]


def _load(config_dir: Path) -> dict[str, Any]:
    path = config_dir / "config.json"
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} is not a JSON object")
    return data


def _from_entry(entry: Any, where: str) -> Credentials:
    if not isinstance(entry, dict):
        return ANONYMOUS
    username = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    auth = entry.get("auth")
    if auth:
        try:
            decoded = base64.b64decode(str(auth), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            # not chained: a decoding error quotes bytes of the secret
            raise InvalidInput(
                f"{where}: the 'auth' value is not base64 of user:password",
                "log in again to rewrite it",
            ) from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise InvalidInput(f"{where}: the 'auth' value has no ':' between user and password")
    return Credentials(username, password, str(entry.get("identitytoken") or ""))


def run_helper(helper: str, server: str) -> Credentials:
    """Ask ``docker-credential-HELPER get`` for the credentials of ``server``."""
    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.run(
            [program, "get"],
            input=server.encode(),
            capture_output=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError as e:
        raise ToolMissing(program) from e
    except subprocess.TimeoutExpired as e:
        raise AuthError(f"{program} did not answer within 60 s") from e
    if proc.returncode != 0:
        out = proc.stdout.decode(errors="replace").strip()
        # The helper protocol's "not found" message: anonymous access, not an error.
        if "credentials not found" in out.lower():
            return ANONYMOUS
        raise AuthError(
            f"{program} get failed (exit {proc.returncode})",
            f"check that {program} works: echo {server} | {program} get",
        )
    try:
        data = json.loads(proc.stdout)
        username, secret = str(data["Username"]), str(data["Secret"])
    except (ValueError, KeyError, TypeError) as e:
        raise AuthError(f"{program} get did not answer with credentials JSON") from e
    if username == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(username, secret)


def login_host(server: str) -> str:
    """The registry a ``login``/``logout`` argument names, as docker reads it.

    docker/cli ``ConvertToHostname``: ``https://host:port/v2/`` and
    ``http://host:port`` mean ``host:port``; the scheme never forces plain http
    (insecure registries decide that, as for dockerd).
    """
    host = _hostname(server.strip())
    if not host or any(c in host for c in "?#@ \t"):
        raise InvalidInput(
            f"invalid registry {server!r}", "write it as HOST[:PORT] or https://HOST[:PORT]/"
        )
    return host


def helper_for(config: dict[str, Any], registry: str) -> str | None:
    """The credential helper docker uses for ``registry``: credHelpers, else credsStore."""
    key = server_key(registry)
    helpers = config.get("credHelpers") or {}
    if isinstance(helpers, dict):
        helper = helpers.get(registry) or helpers.get(key)
        if helper:
            return str(helper)
    store = config.get("credsStore")
    return str(store) if store else None


def _helper(helper: str, action: str, data: bytes) -> None:
    """``docker-credential-HELPER store|erase``, the secret only on its stdin."""
    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.run(
            [program, action], input=data, capture_output=True, timeout=60, check=False
        )
    except FileNotFoundError as e:
        raise ToolMissing(program) from e
    except subprocess.TimeoutExpired as e:
        raise AuthError(f"{program} {action} did not answer within 60 s") from e
    if proc.returncode != 0:
        said = proc.stdout.decode(errors="replace").strip().splitlines()
        raise AuthError(
            f"{program} {action} failed (exit {proc.returncode})"
            + (f": {said[0][:200]}" if said else ""),
            f"check that {program} works, or remove it from config.json to keep logins there",
        )


def store_with_helper(helper: str, server: str, username: str, password: str) -> None:
    """Keep a login in the helper, as docker's native store does."""
    body = {"ServerURL": server, "Username": username, "Secret": password}
    _helper(helper, "store", json.dumps(body).encode())


def erase_with_helper(helper: str, server: str) -> None:
    """Forget a login kept in the helper."""
    _helper(helper, "erase", server.encode())


def lookup(registry: str, config_dir: Path | None = None) -> Credentials:
    """The credentials docker would use for ``registry`` (``host[:port]``), or anonymous."""
    directory = docker_config_dir(config_dir)
    config = _load(directory)
    key = server_key(registry)
    helper = helper_for(config, registry)
    if helper:
        return run_helper(helper, key)
    auths = config.get("auths") or {}
    if not isinstance(auths, dict):
        return ANONYMOUS
    where = f"{directory / 'config.json'} auths[{key!r}]"
    if key in auths:
        return _from_entry(auths[key], where)
    wanted = _hostname(key)
    for stored, entry in auths.items():
        if _hostname(str(stored)) == wanted:
            return _from_entry(entry, where)
    return ANONYMOUS
