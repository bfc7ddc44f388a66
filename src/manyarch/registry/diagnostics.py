"""Turn a registry's answer into a :class:`~manyarch.errors.ManyarchError`.

Follows go-containerregistry ``transport/error.go``: the ``errors[]`` JSON
body becomes the codes and the message, ``temporary`` says whether a retry
may help, the body read is capped, and URLs are redacted (query values that
may carry tokens or upload state, user info) before they reach any message.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterable, Sequence
from urllib.parse import quote

import httpx

from manyarch.errors import AuthError, ManyarchError, NotFound, RegistryError, TransportError
from manyarch.registry.transport import TooSlow

#: Longest error body read from a registry.
MAX_ERROR_BODY = 64 * 1024
#: Codes after which a retry may succeed (go-containerregistry's list).
TEMPORARY_CODES = frozenset({"BLOB_UPLOAD_INVALID", "TOOMANYREQUESTS", "UNKNOWN", "UNAVAILABLE"})
#: Statuses after which a retry may succeed.
TEMPORARY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
NOT_FOUND_CODES = frozenset({"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"})
# Query parameters that are safe to show; any other value is redacted.
_SHOWN_PARAMS = frozenset({"digest", "mount", "from", "n", "last", "service", "scope"})
HTTP_HINT = (
    "this registry speaks plain http: add --insecure-registry {host} or list it in "
    'buildkitd.toml ([registry."{host}"] http = true)'
)


def redact_url(url: httpx.URL | str) -> str:
    """The URL without user info and with sensitive query values replaced by ``REDACTED``."""
    u = httpx.URL(str(url))
    if u.userinfo:
        u = u.copy_with(userinfo=b"")
    if u.query:
        query = "&".join(
            f"{k}={quote(v, safe=':,') if k in _SHOWN_PARAMS else 'REDACTED'}"
            for k, v in u.params.multi_items()
        )
        u = u.copy_with(query=query.encode("ascii"))
    return str(u)


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``REDACTED``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "REDACTED")
    return text


def read_capped(response: httpx.Response, limit: int = MAX_ERROR_BODY) -> bytes:
    """At most ``limit`` bytes of a response body, streamed or not."""
    if response.is_stream_consumed or hasattr(response, "_content"):
        return response.content[:limit]
    out = bytearray()
    try:
        for chunk in response.iter_raw():
            out += chunk
            if len(out) >= limit:
                break
    except httpx.HTTPError:
        pass
    finally:
        response.close()
    return bytes(out[:limit])


def parse_errors(body: bytes) -> list[tuple[str, str]]:
    """``(code, message)`` pairs of an OCI ``{"errors": [...]}`` body."""
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    items = obj.get("errors") if isinstance(obj, dict) else None
    if not isinstance(items, list):
        return []
    out = []
    for item in items:
        if isinstance(item, dict) and item.get("code"):
            out.append((str(item["code"]), str(item.get("message") or "")))
    return out


def response_error(
    response: httpx.Response,
    registry: str,
    *,
    secrets: Sequence[str] = (),
    sent_credentials: bool = False,
) -> ManyarchError:
    """The error for a response whose status was not expected."""
    request = response.request
    body = read_capped(response)
    diagnostics = parse_errors(body)
    codes = [c for c, _ in diagnostics]
    status = response.status_code
    where = f"{request.method} {redact_url(request.url)}"
    if diagnostics:
        detail = "; ".join(f"{c}: {m}" if m else c for c, m in diagnostics)
    else:
        text = body.decode("utf-8", errors="replace").strip()
        detail = f"{status} {response.reason_phrase}"
        if text and request.method != "HEAD" and len(text) < 300:
            detail += f": {text}"
    message = redact_text(f"{where}: {detail}", secrets)
    temporary = (
        status in TEMPORARY_STATUSES if not codes else all(c in TEMPORARY_CODES for c in codes)
    )
    if status in (401, 403) or {"UNAUTHORIZED", "DENIED"} & set(codes):
        if sent_credentials:
            why = f"the credentials for {registry} were refused: manyarch login {registry}"
        else:
            why = f"this registry wants credentials: manyarch login {registry}"
        return AuthError(message, why, status=status, codes=codes)
    if status == 404 or NOT_FOUND_CODES & set(codes):
        return NotFound(message)
    hint: str | None = None
    if status == 405 and request.method == "DELETE":
        hint = "the registry does not allow deletes (distribution: storage.delete.enabled: true)"
    elif status == 400 and b"HTTP request to an HTTPS server" in body:
        hint = f"{registry} speaks https: remove it from the insecure registries"
    elif temporary:
        hint = "the registry may be overloaded or restarting; try again later"
    return RegistryError(message, hint, status=status, codes=codes, temporary=temporary)


def _is_plain_http_answer(exc: BaseException) -> bool:
    for e in _chain(exc):
        if isinstance(e, ssl.SSLError) and e.reason in (
            "WRONG_VERSION_NUMBER",
            "RECORD_LAYER_FAILURE",
            "PACKET_LENGTH_TOO_LONG",
            "HTTP_REQUEST",
        ):
            return True
        text = str(e)
        if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
            return True
    return False


def is_certificate_error(exc: BaseException) -> bool:
    """The TLS handshake failed on the certificate (not on the protocol)."""
    return any(
        isinstance(e, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(e)
        for e in _chain(exc)
    )


def is_tls_protocol_error(exc: BaseException) -> bool:
    """An https request was answered by something that does not speak TLS."""
    return _is_plain_http_answer(exc)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        out.append(e)
        todo += [e.__cause__, e.__context__]
    return out


def transport_error(exc: httpx.HTTPError, registry: str, url: httpx.URL | str) -> TransportError:
    """The error for a request that got no (complete) answer."""
    where = redact_url(url)
    if url and httpx.URL(str(url)).scheme == "https" and is_tls_protocol_error(exc):
        return TransportError(
            f"{where}: the registry answered an https request in plain http",
            HTTP_HINT.format(host=registry),
        )
    if is_certificate_error(exc):
        return TransportError(
            f"{where}: the TLS certificate of {registry} is not trusted",
            "install its CA in the system store or point SSL_CERT_FILE at it; "
            f"or, if you trust the network, add --insecure-registry {registry}",
        )
    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        if (
            "Name or service not known" in text
            or "nodename nor servname" in text
            or ("Temporary failure in name resolution" in text)
        ):
            hint = f"the name {registry.rsplit(':', 1)[0]} does not resolve: check its spelling"
        else:
            hint = f"is a registry running at {registry}? (connection failed: {text or 'refused'})"
        return TransportError(f"{where}: cannot connect to {registry}", hint, temporary=True)
    if isinstance(exc, httpx.ReadTimeout) and isinstance(exc.__cause__, TooSlow):
        return TransportError(
            f"{where}: {registry} sends too slowly ({exc})",
            "the registry or the network is stalling; try again later",
            temporary=True,
        )
    if isinstance(exc, httpx.TimeoutException):
        return TransportError(
            f"{where}: {registry} did not answer in time",
            "the registry or the network is slow; raise the timeout",
            temporary=True,
        )
    return TransportError(
        f"{where}: the connection to {registry} broke ({type(exc).__name__})",
        "try again; check the network",
        temporary=True,
    )
