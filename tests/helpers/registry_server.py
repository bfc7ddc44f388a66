"""Real registries for the tests: the CNCF distribution registry (Debian's ``docker-registry``).

Fixtures (session-scoped: one process each per test run, started on first use):

* ``registry``        plain http on 127.0.0.1, anonymous, deletes enabled;
* ``tls_registry``    https (a ``trustme`` CA) with htpasswd basic auth;
* ``token_registry``  plain http with ``auth: token`` and a token service
  (a small ``http.server`` thread issuing JWTs signed by a key whose
  certificate the registry trusts — the real bearer-token dance);
* ``faulty``          (function-scoped) a loopback :class:`FaultProxy` in
  front of ``registry`` that injects 500/503/429, drops connections in the
  middle of a body or corrupts a body, as each test asks.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REGISTRY_BIN = "/usr/bin/docker-registry"
USERNAME = "tester"
PASSWORD = "s3cret-Pa55word"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RegistryServer:
    """A running ``docker-registry serve`` process."""

    host: str
    url: str
    root: Path
    process: subprocess.Popen[bytes]
    ca_file: Path | None = None

    def stop(self) -> None:
        """Terminate the process (kill it if it lingers)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def start_registry(
    root: Path,
    *,
    tls: tuple[Path, Path] | None = None,
    ca_file: Path | None = None,
    auth: dict[str, Any] | None = None,
) -> RegistryServer:
    """Start a registry storing into ``root``; wait until ``/v2/`` answers."""
    if not Path(REGISTRY_BIN).exists():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    port = free_port()
    host = f"127.0.0.1:{port}"
    http: dict[str, Any] = {"addr": host, "secret": "manyarch-test-secret"}
    if tls is not None:
        http["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }
    if auth:
        config["auth"] = auth
    config_file = root / "config.yml"
    # YAML is a superset of JSON.
    config_file.write_text(json.dumps(config, indent=2))
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen(
        [REGISTRY_BIN, "serve", str(config_file)], stdout=log, stderr=subprocess.STDOUT
    )
    scheme = "https" if tls else "http"
    server = RegistryServer(host, f"{scheme}://{host}", root, process, ca_file)
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{server.url}/v2/", timeout=2, context=context).close()
            break
        except urllib.error.HTTPError:
            break  # 401: up, and wants credentials
        except OSError as e:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                output = (root / "registry.log").read_text(errors="replace")
                raise RuntimeError(f"docker-registry did not start: {e}\n{output}") from e
            time.sleep(0.05)
    return server


@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryServer]:
    """An anonymous plain-http registry on 127.0.0.1."""
    root = Path(tempfile.mkdtemp(prefix="manyarch-registry-"))
    server = start_registry(root)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def htpasswd_line(user: str, password: str) -> str:
    """A bcrypt htpasswd entry (the only hash distribution accepts)."""
    tool = shutil.which("htpasswd")
    if tool:
        out = subprocess.run(
            [tool, "-nbB", user, password], capture_output=True, check=True, text=True
        )
        return out.stdout.strip()
    try:
        import bcrypt  # type: ignore[import-not-found]
    except ImportError:
        pytest.skip("neither htpasswd (apache2-utils) nor bcrypt is installed")
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    return f"{user}:{hashed}"


@dataclass
class TLSRegistry:
    """A registry behind TLS with basic auth; ``ca_file`` is the CA to trust."""

    server: RegistryServer
    ca_file: Path
    username: str = USERNAME
    password: str = PASSWORD

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return self.server.host

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT``."""
        return self.server.url


@pytest.fixture(scope="session")
def tls_registry() -> Iterator[TLSRegistry]:
    """A registry over https (trustme CA) with htpasswd basic auth."""
    import trustme

    root = Path(tempfile.mkdtemp(prefix="manyarch-tls-registry-"))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file, key_file = root / "cert.pem", root / "key.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    htpasswd = root / "htpasswd"
    htpasswd.write_text(htpasswd_line(USERNAME, PASSWORD) + "\n")
    auth = {"htpasswd": {"realm": "manyarch-test", "path": str(htpasswd)}}
    server = start_registry(root, tls=(cert_file, key_file), ca_file=ca_file, auth=auth)
    yield TLSRegistry(server, ca_file)
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


# -- bearer tokens ---------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class TokenService:
    """A token endpoint as distribution's ``auth: token`` expects (docs/spec/auth/jwt.md)."""

    service: str
    issuer: str
    signer_key: Any
    signer_cert_der: bytes
    username: str = USERNAME
    password: str = PASSWORD
    refresh_token: str = "refresh-7c1e9d2b"
    lifetime: int = 300
    #: One entry per token issued: (grant, scopes).
    issued: list[tuple[str, list[str]]] = field(default_factory=list)

    def sign(self, scopes: list[str], subject: str) -> str:
        """A JWT granting ``scopes`` (``repository:NAME:ACTIONS``)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        now = int(time.time())
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(self.signer_cert_der).decode()],
        }
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.lifetime,
            "nbf": now - 5,
            "iat": now,
            "jti": base64.b16encode(time.time_ns().to_bytes(8, "big")).decode(),
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = self.signer_key.sign(
            signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return signing_input + "." + _b64url(signature)


def _token_handler(service: TokenService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, obj: dict[str, Any]) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            from urllib.parse import parse_qs, urlparse

            query = parse_qs(urlparse(self.path).query)
            expected = base64.b64encode(f"{service.username}:{service.password}".encode())
            if self.headers.get("Authorization", "") != "Basic " + expected.decode():
                self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad login"}]})
                return
            scopes = query.get("scope", [])
            service.issued.append(("password", scopes))
            self._answer(
                200,
                {"token": service.sign(scopes, service.username), "expires_in": service.lifetime},
            )

        def do_POST(self) -> None:
            from urllib.parse import parse_qs

            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [
                service.refresh_token
            ]:
                self._answer(401, {"error": "invalid_grant"})
                return
            scopes = form.get("scope", [])
            service.issued.append(("refresh_token", scopes))
            self._answer(
                200,
                {
                    "access_token": service.sign(scopes, service.username),
                    "expires_in": service.lifetime,
                },
            )

    return Handler


@dataclass
class TokenRegistry:
    """A registry that wants bearer tokens from :attr:`tokens`."""

    server: RegistryServer
    tokens: TokenService
    realm: str

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return self.server.host


@pytest.fixture(scope="session")
def token_registry() -> Iterator[TokenRegistry]:
    """A plain-http registry with ``auth: token`` and its token service."""
    import trustme
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    root = Path(tempfile.mkdtemp(prefix="manyarch-token-registry-"))
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    signer = ca.issue_cert("token-signer.test", key_type=trustme.KeyType.RSA)
    bundle = root / "token-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    key = serialization.load_pem_private_key(signer.private_key_pem.bytes(), password=None)
    cert = x509.load_pem_x509_certificate(signer.cert_chain_pems[0].bytes())
    tokens = TokenService(
        service="manyarch-test-registry",
        issuer="manyarch-test-issuer",
        signer_key=key,
        signer_cert_der=cert.public_bytes(serialization.Encoding.DER),
    )
    http_server = ThreadingHTTPServer(("127.0.0.1", 0), _token_handler(tokens))
    thread = threading.Thread(target=http_server.serve_forever, daemon=True)
    thread.start()
    realm = f"http://127.0.0.1:{http_server.server_address[1]}/token"
    auth = {
        "token": {
            "realm": realm,
            "service": tokens.service,
            "issuer": tokens.issuer,
            "rootcertbundle": str(bundle),
        }
    }
    server = start_registry(root, auth=auth)
    yield TokenRegistry(server, tokens, realm)
    server.stop()
    http_server.shutdown()
    http_server.server_close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def faulty(registry: RegistryServer) -> Iterator[Any]:
    """A fault-injecting proxy in front of the session registry."""
    from tests.helpers.faults import FaultProxy

    proxy = FaultProxy(registry.host)
    yield proxy
    proxy.stop()
