"""Credentials from docker config.json (auths, credsStore, credHelpers), challenges, redaction."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from manyarch.errors import AuthError, InvalidInput
from manyarch.registry import Credentials, lookup, parse_challenge, redact_url
from manyarch.registry.auth import AuthState, token_request
from manyarch.registry.diagnostics import redact_text

SECRET = "hunter2-Very-Secret"


def write_config(directory: Path, config: dict[str, object]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("auths", "registry", "expected"),
    [
        ({"r.example:5000": {"auth": b64(f"bob:{SECRET}")}}, "r.example:5000", ("bob", SECRET)),
        (
            {"https://r.example:5000/v2/": {"auth": b64("bob:x:y")}},
            "r.example:5000",
            ("bob", "x:y"),
        ),
        ({"r.example": {"username": "amy", "password": SECRET}}, "r.example", ("amy", SECRET)),
        ({"https://index.docker.io/v1/": {"auth": b64("hub:pw")}}, "docker.io", ("hub", "pw")),
        ({"other:1": {"auth": b64("a:b")}}, "r.example", ("", "")),
        ({}, "r.example", ("", "")),
    ],
)
def test_auths_entries(
    tmp_path: Path, auths: dict[str, object], registry: str, expected: tuple[str, str]
) -> None:
    config = write_config(tmp_path / "docker", {"auths": auths})
    creds = lookup(registry, config)
    assert (creds.username, creds.password) == expected


def test_identity_token(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"auths": {"r:1": {"auth": "", "identitytoken": SECRET}}})
    assert lookup("r:1", config) == Credentials(identity_token=SECRET)


def test_docker_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path / "env", {"auths": {"r:1": {"auth": b64("env:pw")}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "env"))
    assert lookup("r:1").username == "env"


def test_missing_config_is_anonymous(tmp_path: Path) -> None:
    assert lookup("r:1", tmp_path / "nowhere").empty


@pytest.mark.parametrize(
    "config",
    ["{", '{"auths": {"r:1": {"auth": "***"}}}', '{"auths": {"r:1": {"auth": "bm9jb2xvbg=="}}}'],
)
def test_broken_config(tmp_path: Path, config: str) -> None:
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(InvalidInput) as info:
        lookup("r:1", tmp_path)
    assert "config.json" in str(info.value)


def test_credentials_repr_hides_secrets() -> None:
    creds = Credentials("bob", SECRET, SECRET + "-token")
    assert SECRET not in repr(creds) and "bob" in repr(creds)


def make_helper(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def helper_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    # Answers only for the server it was asked about, as real helpers do.
    make_helper(
        bin_dir,
        "test",
        '[ "$1" = get ] || exit 2\nread server\n'
        'case "$server" in\n'
        '  r:1) echo \'{"ServerURL":"r:1","Username":"helped","Secret":"' + SECRET + "\"}' ;;\n"
        '  https://index.docker.io/v1/) echo \'{"ServerURL":"hub","Username":"<token>",'
        '"Secret":"idtoken"}\' ;;\n'
        "  *) echo 'credentials not found in native keychain'; exit 1 ;;\n"
        "esac\n",
    )
    make_helper(bin_dir, "broken", "echo oops; exit 3\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


@pytest.mark.parametrize(
    ("config", "registry", "expected"),
    [
        ({"credHelpers": {"r:1": "test"}}, "r:1", Credentials("helped", SECRET)),
        ({"credsStore": "test"}, "r:1", Credentials("helped", SECRET)),
        ({"credsStore": "test"}, "docker.io", Credentials(identity_token="idtoken")),
        ({"credsStore": "test"}, "other:2", Credentials()),
        # credHelpers wins over credsStore and auths
        (
            {"credHelpers": {"r:1": "test"}, "credsStore": "broken", "auths": {"r:1": {}}},
            "r:1",
            Credentials("helped", SECRET),
        ),
    ],
)
def test_credential_helpers(
    tmp_path: Path,
    helper_path: Path,
    config: dict[str, object],
    registry: str,
    expected: Credentials,
) -> None:
    assert lookup(registry, write_config(tmp_path / "cfg", config)) == expected


def test_failing_helper(tmp_path: Path, helper_path: Path) -> None:
    with pytest.raises(AuthError) as info:
        lookup("r:1", write_config(tmp_path / "cfg", {"credsStore": "broken"}))
    assert "docker-credential-broken" in str(info.value)


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/python:pull"',
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/python:pull",
            },
        ),
        ('Basic realm="Registry Realm"', "basic", {"realm": "Registry Realm"}),
        (
            "bearer realm=http://t/token, service=svc",
            "bearer",
            {"realm": "http://t/token", "service": "svc"},
        ),
        (
            'Bearer realm="r",scope="repository:a:pull repository:b:pull,push"',
            "bearer",
            {"realm": "r", "scope": "repository:a:pull repository:b:pull,push"},
        ),
    ],
)
def test_parse_challenge(header: str, scheme: str, params: dict[str, str]) -> None:
    challenge = parse_challenge(header)
    assert challenge is not None
    assert challenge.scheme == scheme and challenge.params == params


@given(
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\'), min_size=1
    ),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\')),
)
def test_parse_challenge_round_trip(realm: str, service: str) -> None:
    challenge = parse_challenge(f'Bearer realm="{realm}",service="{service}"')
    assert challenge is not None
    assert (challenge.realm, challenge.service) == (realm, service)


def test_token_request_scopes_and_refresh_token() -> None:
    challenge = parse_challenge('Bearer realm="https://t.example/token",service="svc"')
    assert challenge is not None
    scopes = ("repository:a:pull,push", "repository:b:pull")
    basic = token_request(challenge, scopes, Credentials("u", SECRET), "ua")
    assert basic.method == "GET"
    assert basic.url.params.get_list("scope") == list(scopes)
    assert basic.headers["Authorization"] == "Basic " + b64(f"u:{SECRET}")
    refresh = token_request(challenge, scopes, Credentials(identity_token=SECRET), "ua")
    assert refresh.method == "POST"
    form = httpx.QueryParams(refresh.content.decode())
    assert form["grant_type"] == "refresh_token" and form["refresh_token"] == SECRET
    assert form.get_list("scope") == list(scopes)


def test_auth_state_repr_has_no_secret() -> None:
    state = AuthState(lambda _registry: Credentials("u", SECRET))
    state.credentials("r:1")
    assert SECRET not in repr(state)
    assert SECRET in state.secrets()


@pytest.mark.parametrize(
    ("url", "hidden", "shown"),
    [
        ("https://u:pw@r:1/v2/a/blobs/uploads/x?_state=abc", ["pw", "abc"], ["r:1", "_state"]),
        ("https://s3/bucket/blob?X-Amz-Signature=sig&X-Amz-Credential=cred", ["sig", "cred"], []),
        ("https://t/token?service=svc&scope=repository:a:pull", [], ["svc", "repository:a:pull"]),
        ("https://r/v2/a/blobs/uploads/x?digest=sha256:ab", [], ["sha256:ab"]),
    ],
)
def test_redact_url(url: str, hidden: list[str], shown: list[str]) -> None:
    out = redact_url(url)
    for text in hidden:
        assert text not in out
    for text in shown:
        assert text in out


def test_redact_text() -> None:
    assert SECRET not in redact_text(f"x {SECRET} y", [SECRET, ""])
