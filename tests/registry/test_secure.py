"""TLS, basic auth, bearer tokens, credential helpers and transport hints, on real registries."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import stat
import uuid
from pathlib import Path

import pytest

from manyarch.errors import AuthError, TransportError
from manyarch.oci import Descriptor, Digest, Manifest, Reference
from manyarch.oci import mediatypes as mt
from manyarch.registry import RegistryClient, RegistryOptions
from tests.helpers.registry_server import (
    PASSWORD,
    USERNAME,
    RegistryServer,
    TLSRegistry,
    TokenRegistry,
    free_port,
)

pytestmark = pytest.mark.integration


def docker_config(directory: Path, host: str, user: str, password: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return directory


def round_trip(client: RegistryClient, host: str) -> Reference:
    """Push a config blob and a manifest, read both back."""
    ref = Reference.parse(f"{host}/secure/{uuid.uuid4().hex[:8]}:v1")
    data = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    desc = Descriptor(mt.OCI_CONFIG, Digest.of(data), len(data))
    assert client.push_blob(ref, desc, lambda: io.BytesIO(data))
    doc = Manifest(desc).to_document()
    client.put_manifest(ref, doc)
    assert client.get_manifest(ref) == doc
    assert client.open_blob_bytes(ref, desc) == data
    return ref


@pytest.fixture
def trust(tls_registry: TLSRegistry, monkeypatch: pytest.MonkeyPatch) -> TLSRegistry:
    """Trust the test CA through SSL_CERT_FILE, as a user would."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_registry.ca_file))
    return tls_registry


def test_basic_auth_over_tls(trust: TLSRegistry, tmp_path: Path) -> None:
    config = docker_config(tmp_path / "docker", trust.host, USERNAME, PASSWORD)
    with RegistryClient(RegistryOptions(docker_config=config)) as client:
        round_trip(client, trust.host)


def test_wrong_password(trust: TLSRegistry, tmp_path: Path) -> None:
    wrong = "Wrong-Password-1234"
    config = docker_config(tmp_path / "docker", trust.host, USERNAME, wrong)
    with (
        RegistryClient(RegistryOptions(docker_config=config, retries=0)) as client,
        pytest.raises(AuthError) as info,
    ):
        round_trip(client, trust.host)
    error = info.value
    assert error.status == 401
    assert f"manyarch login {trust.host}" in (error.hint or "")
    assert "refused" in (error.hint or "")
    for secret in (wrong, PASSWORD, base64.b64encode(f"{USERNAME}:{wrong}".encode()).decode()):
        assert secret not in str(error) and secret not in repr(error)


def test_no_credentials(trust: TLSRegistry, tmp_path: Path) -> None:
    with (
        RegistryClient(RegistryOptions(docker_config=tmp_path, retries=0)) as client,
        pytest.raises(AuthError) as info,
    ):
        client.list_tags(Reference.parse(f"{trust.host}/secure/none"))
    assert f"manyarch login {trust.host}" in (info.value.hint or "")


def test_untrusted_certificate(tls_registry: TLSRegistry, tmp_path: Path) -> None:
    # The system store does not know the test CA; loopback must not fall back to http here.
    with (
        RegistryClient(RegistryOptions(docker_config=tmp_path, retries=0)) as client,
        pytest.raises(TransportError) as info,
    ):
        client.ping(tls_registry.host)
    assert "not trusted" in info.value.message and "SSL_CERT_FILE" in (info.value.hint or "")


def test_skip_verify(tls_registry: TLSRegistry, tmp_path: Path) -> None:
    config = docker_config(tmp_path / "docker", tls_registry.host, USERNAME, PASSWORD)
    options = RegistryOptions(docker_config=config, skip_verify=frozenset({tls_registry.host}))
    with RegistryClient(options) as client:
        round_trip(client, tls_registry.host)


def test_credential_helper(
    trust: TLSRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-test"
    asked = tmp_path / "asked"
    helper.write_text(
        f"#!/bin/sh\ncat > {asked}\n"
        f'echo \'{{"ServerURL":"x","Username":"{USERNAME}","Secret":"{PASSWORD}"}}\'\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credHelpers": {trust.host: "test"}}))
    with RegistryClient(RegistryOptions(docker_config=config)) as client:
        round_trip(client, trust.host)
    assert asked.read_text().strip() == trust.host


def test_bearer_token_flow(token_registry: TokenRegistry, tmp_path: Path) -> None:
    config = docker_config(tmp_path / "docker", token_registry.host, USERNAME, PASSWORD)
    issued_before = len(token_registry.tokens.issued)
    with RegistryClient(RegistryOptions(docker_config=config)) as client:
        ref = round_trip(client, token_registry.host)
        client.list_tags(ref)
        client.get_manifest(ref)
    issued = token_registry.tokens.issued[issued_before:]
    scopes = [s for _, grant in issued for s in grant]
    assert f"repository:{ref.repository}:pull,push" in scopes
    assert f"repository:{ref.repository}:pull" in scopes
    # cached: one token per scope set, not one per request
    assert len(issued) == 2


def test_bearer_identity_token(token_registry: TokenRegistry, tmp_path: Path) -> None:
    config = tmp_path / "docker"
    config.mkdir()
    entry = {"auth": "", "identitytoken": token_registry.tokens.refresh_token}
    (config / "config.json").write_text(json.dumps({"auths": {token_registry.host: entry}}))
    before = len(token_registry.tokens.issued)
    with RegistryClient(RegistryOptions(docker_config=config)) as client:
        round_trip(client, token_registry.host)
    grants = {g for g, _ in token_registry.tokens.issued[before:]}
    assert grants == {"refresh_token"}


def test_bearer_refused(token_registry: TokenRegistry, tmp_path: Path) -> None:
    wrong = "Not-The-Password-987"
    config = docker_config(tmp_path / "docker", token_registry.host, USERNAME, wrong)
    with (
        RegistryClient(RegistryOptions(docker_config=config, retries=0)) as client,
        pytest.raises(AuthError) as info,
    ):
        client.get_manifest(Reference.parse(f"{token_registry.host}/secure/x:v1"))
    assert wrong not in str(info.value) and f"manyarch login {token_registry.host}" in (
        info.value.hint or ""
    )


def test_https_answered_in_plain_http(registry: RegistryServer) -> None:
    # 127.0.0.2 is loopback too, but named as "other.test" it is not: https only.
    with RegistryClient(RegistryOptions(retries=0, host_gateway="127.0.0.1")) as client:
        port = registry.host.rsplit(":", 1)[1]
        with pytest.raises(TransportError) as info:
            client.ping(f"host.docker.internal:{port}")
    assert "plain http" in info.value.message
    assert f"--insecure-registry host.docker.internal:{port}" in (info.value.hint or "")
    assert "buildkitd.toml" in (info.value.hint or "")


def test_connection_refused_hint() -> None:
    host = f"127.0.0.1:{free_port()}"
    with (
        RegistryClient(RegistryOptions(retries=1, backoff=0.01, backoff_max=0.01)) as client,
        pytest.raises(TransportError) as info,
    ):
        client.ping(host)
    assert host in info.value.message and "is a registry running" in (info.value.hint or "")
    assert info.value.temporary


@pytest.mark.skipif(socket.getaddrinfo.__module__ != "socket", reason="resolver patched")
def test_host_docker_internal_falls_back_to_loopback(registry: RegistryServer) -> None:
    try:
        socket.getaddrinfo("host.docker.internal", None)
        pytest.skip("host.docker.internal resolves on this machine")
    except OSError:
        pass
    host = f"host.docker.internal:{registry.host.rsplit(':', 1)[1]}"
    with RegistryClient(RegistryOptions(insecure=frozenset({host}))) as client:
        ref = round_trip(client, host)
        # the registry saw the name we used: its upload Location pointed back at it
        assert client.list_tags(ref) == ["v1"]
