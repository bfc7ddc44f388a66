"""A registry that drips its answer cannot hang a pull: idle timeout and minimum rate.

The servers here are tiny loopback HTTP servers made by the tests: one answers
the ping, then drips a blob (or a whole answer, headers included) one byte at a
time, as a hostile or broken registry would.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from manyarch.errors import TransportError
from manyarch.oci import Descriptor, Digest, Reference
from manyarch.oci import mediatypes as mt
from manyarch.registry import RegistryClient, RegistryOptions

BLOB = b"x" * 4096
DESC = Descriptor(mt.OCI_LAYER_GZIP, Digest.of(BLOB), len(BLOB))


@dataclass
class Dripper:
    """A loopback server: /v2/ answers at once; anything else is dripped."""

    sock: socket.socket
    interval: float
    drip_headers: bool
    stop: threading.Event
    connections: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                while not self.stop.is_set():
                    request = b""
                    while b"\r\n\r\n" not in request:
                        piece = conn.recv(65536)
                        if not piece or piece.startswith(b"\x16"):
                            return  # closed, or a TLS hello: this server speaks plain http
                        request += piece
                    if request.split(b" ", 2)[1] == b"/v2/":
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        continue
                    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(BLOB)}\r\n\r\n".encode()
                    if not self.drip_headers:
                        conn.sendall(head)
                        head = b""
                    for i in range(len(head + BLOB)):
                        conn.sendall((head + BLOB)[i : i + 1])
                        if self.stop.wait(self.interval):
                            return
            except OSError:
                return


@pytest.fixture(params=[False, True], ids=["body", "headers"])
def dripper(request: pytest.FixtureRequest) -> Iterator[Dripper]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = Dripper(sock, 5.0, request.param, threading.Event())
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        sock.shutdown(socket.SHUT_RDWR)  # wakes the accept
        sock.close()
        thread.join(timeout=5)


@pytest.mark.slow
def test_a_dripping_registry_fails_the_pull_with_a_clear_error(dripper: Dripper) -> None:
    """One byte every 5 s: the transfer is below the minimum rate, and said so."""
    options = RegistryOptions(retries=1, backoff=0.01, backoff_max=0.02, rate_window=2.0)
    ref = Reference.parse(f"{dripper.host}/slow/image:latest")
    began = time.monotonic()
    with RegistryClient(options) as client, pytest.raises(TransportError) as caught:
        client.fetch_blob(ref, DESC, io.BytesIO())
    assert time.monotonic() - began < 30, "the pull hung on the dripping registry"
    err = caught.value
    assert err.temporary, "a slow transfer may go better on a retry"
    assert "too slowly" in err.message and dripper.host in err.message
    assert "bytes/s" in err.message
    assert dripper.connections >= 2, "the transfer was retried"


def test_rate_options_are_checked() -> None:
    with pytest.raises(Exception, match="minimum rate"):
        RegistryOptions(min_rate=-1)
    with pytest.raises(Exception, match="window"):
        RegistryOptions(rate_window=0)
    o = RegistryOptions()
    # a multi-GB blob on a slow link passes: the defaults only cut a stalled transfer
    assert (o.min_rate, o.rate_window) == (1024, 30.0)
