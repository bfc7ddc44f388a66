"""RegistryOptions defaults and checks; insecure registries from buildkitd.toml and daemon.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manyarch.errors import InvalidArgument, InvalidInput
from manyarch.registry import (
    RegistryHosts,
    RegistryOptions,
    is_loopback,
    load_insecure_hosts,
    load_registry_hosts,
)
from manyarch.registry.options import split_host

# The seed's buildkitd.toml, as the demo's README gives it.
SEED_BUILDKITD = """\
[registry."host.docker.internal:5000"]
  http = true
  insecure = true
"""
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defaults_in_one_place() -> None:
    o = RegistryOptions()
    assert (o.jobs, o.retries, o.backoff, o.backoff_max, o.timeout) == (4, 5, 0.2, 10.0, 60.0)
    assert (o.chunk_size, o.monolithic_max) == (16 * 2**20, 32 * 2**20)
    assert o.insecure == frozenset() and o.user_agent.startswith("manyarch/")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"jobs": 0},
        {"retries": -1},
        {"backoff": 0},
        {"backoff": 5.0, "backoff_max": 1.0},
        {"timeout": 0},
        {"chunk_size": 0},
        {"monolithic_max": -1},
        {"insecure": frozenset({"http://registry:5000"})},
        {"insecure": frozenset({"registry:5000/path"})},
        {"insecure": "registry:5000"},
    ],
)
def test_conflicting_or_invalid_options_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        RegistryOptions(**kwargs)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.8.9.10", True),
        ("[::1]:5000", True),
        ("host.docker.internal:5000", False),
        ("registry.example.com", False),
        ("10.0.0.1:5000", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert RegistryOptions().may_use_http(host) is loopback


@given(
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True),
    st.one_of(st.none(), st.integers(1, 65535)),
)
def test_split_host_round_trip(name: str, port: int | None) -> None:
    text = name if port is None else f"{name}:{port}"
    assert split_host(text) == (name, port)


def test_seed_buildkitd_toml(tmp_path: Path) -> None:
    path = tmp_path / "buildkitd.toml"
    path.write_text(SEED_BUILDKITD)
    hosts = load_registry_hosts(path)
    assert hosts == RegistryHosts(
        plain_http=frozenset({"host.docker.internal:5000"}),
        skip_verify=frozenset({"host.docker.internal:5000"}),
    )
    assert load_insecure_hosts(buildkitd_toml=path) == {"host.docker.internal:5000"}
    options = RegistryOptions().with_hosts(hosts)
    assert options.may_use_http("host.docker.internal:5000")
    assert not options.verifies_tls("host.docker.internal:5000")
    assert not options.may_use_http("host.docker.internal:5001")


@pytest.mark.skipif(not (REPO_ROOT / "buildkitd.toml").exists(), reason="no buildkitd.toml")
def test_repository_buildkitd_toml() -> None:
    assert "host.docker.internal:5000" in load_insecure_hosts(REPO_ROOT / "buildkitd.toml")


@pytest.mark.parametrize(
    ("toml", "plain", "unverified"),
    [
        ('[registry."a:1"]\nhttp = true\n', {"a:1"}, set()),
        ('[registry."a:1"]\ninsecure = true\n', set(), {"a:1"}),
        ('[registry."a:1"]\nhttp = false\nmirrors = ["m"]\n', set(), set()),
        ('[registry."docker.io"]\nmirrors = ["mirror.gcr.io"]\n', set(), set()),
        ("debug = true\n", set(), set()),
    ],
)
def test_buildkitd_tables(tmp_path: Path, toml: str, plain: set[str], unverified: set[str]) -> None:
    path = tmp_path / "buildkitd.toml"
    path.write_text(toml)
    assert load_registry_hosts(path) == RegistryHosts(frozenset(plain), frozenset(unverified))


def test_daemon_json(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(
        json.dumps({"insecure-registries": ["host.docker.internal:5000", "localhost:5000"]})
    )
    assert load_insecure_hosts(daemon_json=path) == {"host.docker.internal:5000", "localhost:5000"}


def test_daemon_json_cidr(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"insecure-registries": ["10.20.0.0/16"]}))
    options = RegistryOptions().with_hosts(load_registry_hosts(daemon_json=path))
    assert options.may_use_http("10.20.3.4:5000")
    assert not options.may_use_http("10.21.3.4:5000")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("buildkitd.toml", "[registry\n"),
        ("daemon.json", "{"),
        ("daemon.json", '{"insecure-registries": "a:1"}'),
    ],
)
def test_bad_config_files(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidInput) as info:
        if name.endswith(".toml"):
            load_registry_hosts(buildkitd_toml=path)
        else:
            load_registry_hosts(daemon_json=path)
    assert str(path) in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read"):
        load_registry_hosts(tmp_path / "nope.toml")
