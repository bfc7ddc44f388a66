"""A loopback stand-in for GitHub Actions' cache service (v2): the twirp calls
``CreateCacheEntry``, ``FinalizeCacheEntryUpload``, ``GetCacheEntryDownloadURL`` and the
signed URLs they hand out, as go-actions-cache and actions/toolkit speak to them. GitHub's
service cannot be reached from these machines; this one keeps entries in memory."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SERVICE = "/twirp/github.actions.results.api.v1.CacheService/"


@dataclass
class GhaCacheService:
    """What a test sees of the service: its URL and token, and what it holds."""

    url: str
    token: str
    entries: dict[str, bytes] = field(default_factory=dict)
    pending: dict[str, bytearray] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    unauthorized: int = 0


def _handler(service: GhaCacheService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def reply(self, code: int, body: bytes = b"", kind: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Authorization") != f"Bearer {service.token}":
                service.unauthorized += 1
                self.reply(401, b'{"code":"unauthenticated","msg":"no"}')
                return
            req = json.loads(data)
            method = self.path.removeprefix(SERVICE)
            key = req.get("key", "")
            if method == "CreateCacheEntry":
                if key in service.entries or key in service.pending:
                    self.reply(409, b'{"code":"already_exists","msg":"exists"}')
                    return
                service.pending[key] = bytearray()
                self.reply(
                    200,
                    json.dumps(
                        {"ok": True, "signed_upload_url": f"{service.url}blob/{key}?sig=x"}
                    ).encode(),
                )
            elif method == "FinalizeCacheEntryUpload":
                blob = service.pending.pop(key, None)
                if blob is None or len(blob) != req.get("size_bytes"):
                    self.reply(200, b'{"ok":false}')
                    return
                service.entries[key] = bytes(blob)
                service.order.append(key)
                self.reply(200, json.dumps({"ok": True, "entry_id": len(service.order)}).encode())
            elif method == "GetCacheEntryDownloadURL":
                found = key if key in service.entries else None
                for prefix in req.get("restore_keys") or ():
                    if found is None:
                        matches = [k for k in service.order if k.startswith(prefix)]
                        found = matches[-1] if matches else None
                if found is None:
                    self.reply(200, b'{"ok":false}')
                    return
                url = f"{service.url}blob/{found}?sig=y"
                self.reply(
                    200,
                    json.dumps(
                        {"ok": True, "signed_download_url": url, "matched_key": found}
                    ).encode(),
                )
            else:
                self.reply(404, b'{"code":"bad_route"}')

        def do_PUT(self) -> None:
            key = self.path.split("/blob/", 1)[1].split("?", 1)[0]
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if key not in service.pending or self.headers.get("x-ms-blob-type") != "BlockBlob":
                self.reply(403)
                return
            service.pending[key] += data
            self.reply(201)

        def do_GET(self) -> None:
            key = self.path.split("/blob/", 1)[1].split("?", 1)[0]
            if key not in service.entries:
                self.reply(404)
                return
            self.reply(200, service.entries[key], "application/octet-stream")

    return Handler


@contextmanager
def gha_cache_service() -> Iterator[GhaCacheService]:
    """A running service on 127.0.0.1 (its URL ends with ``/``, as the runner's does)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    service = GhaCacheService(f"http://127.0.0.1:{server.server_address[1]}/", secrets.token_hex(8))
    server.RequestHandlerClass = _handler(service)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
