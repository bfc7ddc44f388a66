"""A loopback reverse proxy in front of a real registry that misbehaves on request.

Each test arms faults (``proxy.inject("503", method="PUT", path="/manifests/")``);
a fault fires on the next matching requests (``times``) and is then spent:

* ``"500"``, ``"503"``, ``"429"`` — answer that status with an OCI ``errors``
  body (429 carries ``Retry-After: 0``) instead of forwarding;
* ``"drop"`` — forward, then send the headers and half of the body and close
  the connection;
* ``"corrupt"`` — forward, then flip one byte of the body (a lying proxy).

``paginate_tags`` emulates tag-list pagination (``?n=``, ``last=``, ``Link``)
as distribution 3 and the distribution spec do; Debian's registry 2.8
ignores ``n``. Every request is recorded in :attr:`FaultProxy.seen`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}


@dataclass
class Fault:
    """One armed fault."""

    action: str
    method: str | None
    path: re.Pattern[str]
    times: int

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request."""
        return (self.method is None or self.method == method) and bool(self.path.search(path))


class FaultProxy:
    """A reverse proxy on 127.0.0.1 forwarding to ``upstream`` (``host:port``, plain http)."""

    def __init__(self, upstream: str, *, paginate_tags: bool = False) -> None:
        self.upstream = upstream
        self.paginate_tags = paginate_tags
        self.faults: list[Fault] = []
        #: ``(method, path)`` of every request, in order.
        self.seen: list[tuple[str, str]] = []
        #: ``(action, method, path)`` of every fault that fired.
        self.fired: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self.url = f"http://{self.host}"

    def inject(
        self, action: str, *, method: str | None = None, path: str = "", times: int = 1
    ) -> None:
        """Arm a fault for the next ``times`` requests matching ``method`` and ``path`` (regex)."""
        if action not in ("500", "502", "503", "429", "drop", "corrupt"):
            raise ValueError(f"unknown fault {action!r}")
        with self._lock:
            self.faults.append(Fault(action, method, re.compile(path), times))

    def take(self, method: str, path: str) -> str | None:
        """The fault that fires for this request, if any (and record the request)."""
        with self._lock:
            self.seen.append((method, path))
            for fault in self.faults:
                if fault.times > 0 and fault.matches(method, path):
                    fault.times -= 1
                    self.fired.append((fault.action, method, path))
                    return fault.action
        return None

    def methods(self, path: str = "") -> list[str]:
        """Methods of the requests seen whose path matches ``path``."""
        return [m for m, p in self.seen if re.search(path, p)]

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def _forward(
    proxy: FaultProxy, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, str, list[tuple[str, str]], bytes]:
    conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
    try:
        conn.request(
            method,
            path,
            body=body if body or method in ("PUT", "POST", "PATCH") else None,
            headers=headers,
        )
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.reason, resp.getheaders(), data
    finally:
        conn.close()


def _paginate(
    proxy: FaultProxy, path: str, headers: dict[str, str]
) -> tuple[int, str, list[tuple[str, str]], bytes] | None:
    url = urlparse(path)
    if not url.path.endswith("/tags/list"):
        return None
    query = parse_qs(url.query)
    if "n" not in query:
        return None
    status, reason, upstream_headers, data = _forward(proxy, "GET", url.path, headers, b"")
    if status != 200:
        return status, reason, upstream_headers, data
    listing = json.loads(data)
    tags = sorted(listing.get("tags") or [])
    last = query.get("last", [""])[0]
    if last:
        tags = [t for t in tags if t > last]
    n = int(query["n"][0])
    page, rest = tags[:n], tags[n:]
    out_headers = [("Content-Type", "application/json")]
    if rest:
        following = f"{url.path}?{urlencode({'n': n, 'last': page[-1]})}"
        out_headers.append(("Link", f'<{following}>; rel="next"'))
    body = json.dumps({"name": listing["name"], "tags": page}).encode()
    return 200, "OK", out_headers, body


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            method, path = self.command, self.path
            action = proxy.take(method, path)
            if action in ("500", "502", "503", "429"):
                code = "TOOMANYREQUESTS" if action == "429" else "UNAVAILABLE"
                payload = json.dumps(
                    {"errors": [{"code": code, "message": f"injected {action}"}]}
                ).encode()
                self.send_response(int(action))
                self.send_header("Content-Type", "application/json")
                if action == "429":
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(payload)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            result = _paginate(proxy, path, headers) if proxy.paginate_tags else None
            if result is None:
                result = _forward(proxy, method, path, headers, body)
            status, reason, upstream_headers, data = result
            if action == "corrupt" and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            self.send_response(status, reason)
            content_length = str(len(data))
            for key, value in upstream_headers:
                if key.lower() == "content-length" and method == "HEAD":
                    content_length = value
                elif key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", content_length)
            self.end_headers()
            if method == "HEAD":
                return
            if action == "drop" and len(data) > 1:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(data)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

    return Handler
