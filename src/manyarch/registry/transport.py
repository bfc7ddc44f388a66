"""The httpx transport under the registry client: TLS policy and name resolution.

* TLS is verified against the system CA store (``ssl.create_default_context``,
  which honours ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``), not certifi's bundle:
  the machine's trust is the one a user configured.
* Hosts listed in :attr:`RegistryOptions.skip_verify` get an unverified context.
* ``host.docker.internal`` is the name Docker Desktop gives the host machine;
  the seed's demo pushes to ``host.docker.internal:5000``. On a machine without
  Docker Desktop the name usually does not resolve, so when the system resolver
  does not know it the transport connects to ``RegistryOptions.host_gateway``
  (127.0.0.1) instead, keeping the ``Host`` header and the TLS server name, so the
  registry still sees the name it was asked for.
"""

from __future__ import annotations

import socket
import ssl
import threading
from functools import lru_cache

import httpcore
import httpx

from manyarch.registry.options import RegistryOptions

#: How much httpcore asks the socket for at a time. Its default, 64 KiB, makes
#: h11's per-piece copying the bottleneck of a blob download (measured here:
#: 200 MiB pulled in 0.93 s with 64 KiB reads, 0.45 s with 1 MiB reads).
READ_SIZE = 1 << 20
_http11 = httpcore._sync.http11.HTTP11Connection
if getattr(_http11, "READ_NUM_BYTES", READ_SIZE) < READ_SIZE:
    _http11.READ_NUM_BYTES = READ_SIZE

#: Names that stand for the machine running the containers' engine.
GATEWAY_NAMES = frozenset({"host.docker.internal", "gateway.docker.internal"})


@lru_cache(maxsize=16)
def _resolves(name: str) -> bool:
    try:
        socket.getaddrinfo(name, None)
    except OSError:
        return False
    return True


def system_ssl_context() -> ssl.SSLContext:
    """A verifying context on the system CA store (``SSL_CERT_FILE`` respected)."""
    return ssl.create_default_context()


def unverified_ssl_context() -> ssl.SSLContext:
    """A context that accepts any certificate (for registries marked insecure)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class RegistryTransport(httpx.BaseTransport):
    """Routes each request to a verifying or non-verifying pool and resolves gateway names."""

    def __init__(self, options: RegistryOptions) -> None:
        self._options = options
        limits = httpx.Limits(
            max_connections=max(16, 4 * options.jobs), max_keepalive_connections=16
        )
        self._verified = httpx.HTTPTransport(verify=system_ssl_context(), limits=limits)
        self._unverified: httpx.HTTPTransport | None = None
        self._lock = threading.Lock()
        self._limits = limits

    def _pool(self, host: str) -> httpx.HTTPTransport:
        if self._options.verifies_tls(host):
            return self._verified
        with self._lock:
            if self._unverified is None:
                self._unverified = httpx.HTTPTransport(
                    verify=unverified_ssl_context(), limits=self._limits
                )
            return self._unverified

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request through the right pool, to the right address."""
        url = request.url
        netloc = url.netloc.decode("ascii")
        pool = self._pool(netloc)
        if url.host in GATEWAY_NAMES and not _resolves(url.host):
            extensions = dict(request.extensions)
            extensions.setdefault("sni_hostname", url.host)
            request = httpx.Request(
                request.method,
                url.copy_with(host=self._options.host_gateway),
                headers=request.headers,  # keeps Host: host.docker.internal:PORT
                stream=request.stream,
                extensions=extensions,
            )
        return pool.handle_request(request)

    def close(self) -> None:
        """Close both connection pools."""
        self._verified.close()
        if self._unverified is not None:
            self._unverified.close()
