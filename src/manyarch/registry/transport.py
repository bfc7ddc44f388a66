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
* Every read from a registry is guarded (:class:`RateGuard`): besides the idle
  timeout (httpx's read timeout: no byte at all), an answer that has started
  must keep :attr:`RegistryOptions.min_rate` over each
  :attr:`RegistryOptions.rate_window` of time spent waiting for it, headers
  included. The wait for the first byte is the idle timeout's alone: a
  registry hashing a large upload before it answers is not slow.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import typing
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


class TooSlow(httpcore.ReadTimeout):
    """An answer came slower than the minimum rate (httpx reports it as a ReadTimeout)."""


class _GuardedStream(httpcore.NetworkStream):
    """A connection whose reads must keep a minimum rate once an answer has begun."""

    def __init__(self, inner: httpcore.NetworkStream, min_rate: int, window: float) -> None:
        self._inner = inner
        self._min_rate = min_rate
        self._window = window
        self._begun = False
        self._waited = 0.0
        self._got = 0

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        start = time.monotonic()
        data = self._inner.read(max_bytes, timeout)
        if not self._begun:
            self._begun = bool(data)
            self._got = len(data)
            return data
        self._waited += time.monotonic() - start
        self._got += len(data)
        if self._waited >= self._window:
            if self._got < self._min_rate * self._waited:
                raise TooSlow(
                    f"{self._got} bytes in {self._waited:.0f} s, "
                    f"below the minimum of {self._min_rate} bytes/s"
                )
            self._waited, self._got = 0.0, 0
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._begun, self._waited, self._got = False, 0.0, 0  # a new request: a new answer
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _GuardedStream(inner, self._min_rate, self._window)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class RateGuard(httpcore.NetworkBackend):
    """The system's sockets, each read guarded by :class:`_GuardedStream`."""

    def __init__(self, options: RegistryOptions) -> None:
        self._inner = httpcore.SyncBackend()
        self._options = options

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _GuardedStream(inner, self._options.min_rate, self._options.rate_window)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.connect_unix_socket(path, timeout, socket_options)
        return _GuardedStream(inner, self._options.min_rate, self._options.rate_window)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _guarded(transport: httpx.HTTPTransport, options: RegistryOptions) -> httpx.HTTPTransport:
    # httpx takes no network backend; its pool (httpcore's public ConnectionPool) does.
    pool = transport._pool
    if not isinstance(pool, httpcore.ConnectionPool):  # pragma: no cover - httpx changed
        raise TypeError(f"unexpected httpx connection pool {type(pool).__name__}")
    pool._network_backend = RateGuard(options)
    return transport


class RegistryTransport(httpx.BaseTransport):
    """Routes each request to a verifying or non-verifying pool and resolves gateway names."""

    def __init__(self, options: RegistryOptions) -> None:
        self._options = options
        limits = httpx.Limits(
            max_connections=max(16, 4 * options.jobs), max_keepalive_connections=16
        )
        self._verified = _guarded(
            httpx.HTTPTransport(verify=system_ssl_context(), limits=limits), options
        )
        self._unverified: httpx.HTTPTransport | None = None
        self._lock = threading.Lock()
        self._limits = limits

    def _pool(self, host: str) -> httpx.HTTPTransport:
        if self._options.verifies_tls(host):
            return self._verified
        with self._lock:
            if self._unverified is None:
                self._unverified = _guarded(
                    httpx.HTTPTransport(verify=unverified_ssl_context(), limits=self._limits),
                    self._options,
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
