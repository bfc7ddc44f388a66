"""Registry authentication as an :class:`httpx.Auth` flow.

The flow is a generator, as in httpx ``_auth.py``: it yields the request,
receives the response, and on ``401`` answers the challenge —

* ``Basic realm=...``: resend with the user's credentials;
* ``Bearer realm=...,service=...,scope=...``: ask the realm for a token for
  the scopes this request needs (``repository:NAME:pull`` or
  ``repository:NAME:pull,push``), with basic credentials, or an OAuth2
  ``refresh_token`` grant when the user has an identity token (distribution's
  ``docs/spec/auth/oauth.md``), then resend with ``Bearer TOKEN``.

Tokens are cached per realm, service and scope set until shortly before they
expire, so a push of many blobs asks for one token. The state lives in one
:class:`AuthState` per client, shared by threads.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx

from manyarch.errors import AuthError
from manyarch.registry.credentials import ANONYMOUS, Credentials
from manyarch.registry.diagnostics import parse_errors, read_capped, redact_text

#: Tokens without ``expires_in`` live 60 s (distribution token spec).
DEFAULT_TOKEN_LIFETIME = 60
#: Tokens are renewed this many seconds before they expire.
EXPIRY_MARGIN = 10
_PARAM = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict, hash=False, compare=True)

    @property
    def realm(self) -> str:
        """Where to ask for a token (bearer) or the realm name (basic)."""
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        """The ``service`` parameter of a bearer challenge."""
        return self.params.get("service", "")


def parse_challenge(header: str | None) -> Challenge | None:
    """Parse ``Bearer realm="...",service="...",scope="..."`` (or ``Basic realm=...``)."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {
        m.group(1).lower(): (
            m.group(2).replace('\\"', '"') if m.group(2) is not None else m.group(3)
        )
        for m in _PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def repository_scope(repository: str, push: bool = False) -> str:
    """``repository:NAME:pull`` or ``repository:NAME:pull,push``."""
    return f"repository:{repository}:{'pull,push' if push else 'pull'}"


@dataclass
class _Token:
    value: str = field(repr=False)
    expires: float


class AuthState:
    """Per-client authentication state: credentials, challenges seen, cached tokens."""

    def __init__(self, credentials_for: Callable[[str], Credentials]) -> None:
        self._credentials_for = credentials_for
        self._lock = threading.Lock()
        self._credentials: dict[str, Credentials] = {}
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, str, tuple[str, ...]], _Token] = {}

    def __repr__(self) -> str:
        return f"AuthState(registries={sorted(self._challenges)})"

    def credentials(self, registry: str) -> Credentials:
        """The credentials for a registry, looked up once."""
        with self._lock:
            found = self._credentials.get(registry)
        if found is None:
            found = self._credentials_for(registry)
            with self._lock:
                self._credentials[registry] = found
        return found

    def secrets(self) -> list[str]:
        """Every secret known to this state, to scrub from messages."""
        with self._lock:
            out = [c.password for c in self._credentials.values()]
            out += [c.identity_token for c in self._credentials.values()]
            out += [t.value for t in self._tokens.values()]
        return [s for s in out if s]

    def remember(self, registry: str, challenge: Challenge) -> None:
        """Keep the challenge a registry answered with (from a ping or a 401)."""
        with self._lock:
            self._challenges[registry] = challenge

    def challenge(self, registry: str) -> Challenge | None:
        """The last challenge seen from a registry."""
        with self._lock:
            return self._challenges.get(registry)

    def cached_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> str | None:
        """A token still valid for these scopes, if one was issued."""
        key = (challenge.realm, challenge.service, scopes)
        with self._lock:
            token = self._tokens.get(key)
            if token is None:
                return None
            if token.expires <= time.monotonic():
                del self._tokens[key]
                return None
            return token.value

    def store_token(
        self, challenge: Challenge, scopes: tuple[str, ...], value: str, lifetime: float
    ) -> None:
        """Cache a token until a little before it expires."""
        expires = time.monotonic() + max(lifetime - EXPIRY_MARGIN, 1.0)
        with self._lock:
            self._tokens[(challenge.realm, challenge.service, scopes)] = _Token(value, expires)

    def authorization(self, registry: str, scopes: tuple[str, ...]) -> str | None:
        """An ``Authorization`` value that can be sent before any 401, if one is known."""
        challenge = self.challenge(registry)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = self.credentials(registry)
            return None if creds.empty or not creds.username else creds.basic()
        if challenge.scheme == "bearer":
            token = self.cached_token(challenge, scopes)
            return f"Bearer {token}" if token else None
        return None


def token_request(
    challenge: Challenge, scopes: tuple[str, ...], creds: Credentials, user_agent: str
) -> httpx.Request:
    """The request that asks a bearer realm for a token."""
    if not challenge.realm.startswith(("http://", "https://")):
        raise AuthError(f"the registry's token realm {challenge.realm!r} is not a URL")
    headers = {"User-Agent": user_agent}
    if creds.identity_token:
        form: list[tuple[str, str]] = [
            ("grant_type", "refresh_token"),
            ("refresh_token", creds.identity_token),
            ("client_id", "manyarch"),
        ]
        if challenge.service:
            form.append(("service", challenge.service))
        form += [("scope", s) for s in scopes]
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = urlencode(form).encode("ascii")
        return httpx.Request("POST", challenge.realm, content=body, headers=headers)
    params: list[tuple[str, str | int | float | bool | None]] = []
    if challenge.service:
        params.append(("service", challenge.service))
    params += [("scope", s) for s in scopes]
    if creds.username:
        headers["Authorization"] = creds.basic()
    return httpx.Request("GET", challenge.realm, params=params, headers=headers)


def parse_token_response(
    response: httpx.Response, registry: str, secrets: list[str]
) -> tuple[str, float]:
    """``(token, lifetime)`` from a token endpoint's answer, or :class:`AuthError`."""
    body = read_capped(response, 1 << 20)
    if response.status_code != 200:
        diagnostics = parse_errors(body)
        detail = "; ".join(f"{c}: {m}" for c, m in diagnostics) or f"{response.status_code}"
        refused = response.status_code in (401, 403)
        raise AuthError(
            redact_text(f"the token service of {registry} said {detail}", secrets),
            (
                f"the credentials for {registry} were refused: manyarch login {registry}"
                if refused
                else f"the token service of {registry} failed; try again later"
            ),
            status=response.status_code,
            codes=[c for c, _ in diagnostics],
            temporary=response.status_code >= 500,
        )
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        obj = None
    if not isinstance(obj, dict):
        raise AuthError(f"the token service of {registry} did not answer with JSON")
    token = obj.get("token") or obj.get("access_token")
    if not isinstance(token, str) or not token:
        raise AuthError(f"the token service of {registry} answered without a token")
    lifetime = obj.get("expires_in")
    if not isinstance(lifetime, int | float) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    return token, float(lifetime)


def _covered(scope: str, scopes: tuple[str, ...]) -> bool:
    resource, _, actions = scope.rpartition(":")
    for have in scopes:
        have_resource, _, have_actions = have.rpartition(":")
        if have_resource == resource and set(actions.split(",")) <= set(have_actions.split(",")):
            return True
    return False


class RegistryAuth(httpx.Auth):
    """The auth flow for requests to one registry that need a set of scopes."""

    requires_response_body = False

    def __init__(
        self, state: AuthState, registry: str, scopes: tuple[str, ...], user_agent: str
    ) -> None:
        self.state = state
        self.registry = registry
        self.scopes = scopes
        self.user_agent = user_agent
        #: Whether the last request carried credentials (to tell "missing" from "refused").
        self.sent_credentials = False

    def __repr__(self) -> str:
        return f"RegistryAuth({self.registry!r}, {self.scopes!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send; on 401 answer the challenge once and send again."""
        header = self.state.authorization(self.registry, self.scopes)
        if header:
            request.headers["Authorization"] = header
            self.sent_credentials = True
        response = yield request
        if response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
        if challenge is None:
            return
        self.state.remember(self.registry, challenge)
        creds = self.state.credentials(self.registry)
        if challenge.scheme == "basic":
            if creds.empty or header == creds.basic():
                return
            request.headers["Authorization"] = creds.basic()
            self.sent_credentials = True
        elif challenge.scheme == "bearer":
            scopes = self.scopes
            asked = challenge.params.get("scope", "")
            # A registry may name a scope we did not think of (e.g. a mount source).
            scopes += tuple(s for s in asked.split(" ") if s and not _covered(s, scopes))
            token_response = yield token_request(challenge, scopes, creds, self.user_agent)
            # httpx reads every response of the flow itself; read it now, bounded by the transport.
            token_response.read()
            token, lifetime = parse_token_response(
                token_response, self.registry, self.state.secrets()
            )
            self.state.store_token(challenge, self.scopes, token, lifetime)
            if scopes != self.scopes:
                self.state.store_token(challenge, scopes, token, lifetime)
            request.headers["Authorization"] = f"Bearer {token}"
            self.sent_credentials = not creds.empty
        else:
            return
        yield request


__all__ = [
    "ANONYMOUS",
    "AuthState",
    "Challenge",
    "RegistryAuth",
    "parse_challenge",
    "repository_scope",
]
