"""``manyarch login``/``logout`` as docker's: credential helpers (credsStore, credHelpers)
written and read through ``docker-credential-NAME``, the --password warning, and
servers written as URLs."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import manyarch
from tests.helpers.registry_server import PASSWORD, USERNAME, TokenRegistry

pytestmark = pytest.mark.integration

#: A credential helper keeping its secrets in a JSON file, as docker's protocol says:
#: store reads {ServerURL, Username, Secret}; get and erase read the server URL.
HELPER = """#!{python}
import json, pathlib, sys
state = pathlib.Path({state!r})
kept = state / "secrets.json"
store = json.loads(kept.read_text()) if kept.exists() else {{}}
op, data = sys.argv[1], sys.stdin.read()
said = json.loads(data)["ServerURL"] if op == "store" else data.strip()
with open(state / "calls", "a") as calls:
    calls.write(op + " " + said + "\\n")
if op == "store":
    c = json.loads(data)
    store[c["ServerURL"]] = c
elif op == "get":
    if data.strip() not in store:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps(store[data.strip()]))
elif op == "erase":
    store.pop(data.strip(), None)
elif op == "list":
    print(json.dumps({{k: v["Username"] for k, v in store.items()}}))
kept.write_text(json.dumps(store))
"""

WARNING = "WARNING! Using --password via the CLI is insecure. Use --password-stdin."


@pytest.fixture
def docker_env(tmp_path: Path) -> dict[str, str]:
    """An environment with its own DOCKER_CONFIG and a fake helper ``docker-credential-fake``."""
    bin_dir, state, config = tmp_path / "bin", tmp_path / "helper", tmp_path / "docker"
    for d in (bin_dir, state, config):
        d.mkdir()
    helper = bin_dir / "docker-credential-fake"
    helper.write_text(HELPER.format(python=sys.executable, state=str(state)))
    helper.chmod(0o755)
    env = dict(os.environ, DOCKER_CONFIG=str(config))
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env


def _config(env: dict[str, str]) -> dict[str, object]:
    data: dict[str, object] = json.loads((Path(env["DOCKER_CONFIG"]) / "config.json").read_text())
    return data


def _write_config(env: dict[str, str], data: dict[str, object]) -> None:
    (Path(env["DOCKER_CONFIG"]) / "config.json").write_text(json.dumps(data))


def _helper_state(env: dict[str, str]) -> tuple[list[str], dict[str, dict[str, str]]]:
    state = Path(env["DOCKER_CONFIG"]).parent / "helper"
    calls = (state / "calls").read_text().splitlines() if (state / "calls").exists() else []
    kept = (
        json.loads((state / "secrets.json").read_text())
        if (state / "secrets.json").exists()
        else {}
    )
    return calls, kept


def _login(env: dict[str, str], server: str, *extra: str) -> tuple[int, str, str]:
    r = manyarch(env, "login", "-u", USERNAME, *extra, server, timeout=120)
    return r.returncode, r.stdout, r.stderr


def _login_stdin(env: dict[str, str], server: str) -> tuple[int, str, str]:
    r = subprocess.run(
        [sys.executable, "-m", "manyarch", "login", "-u", USERNAME, "--password-stdin", server],
        input=PASSWORD + "\n", env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("kind", ["credsStore", "credHelpers"])
def test_login_writes_through_the_credential_helper(
    token_registry: TokenRegistry, docker_env: dict[str, str], kind: str
) -> None:
    host = token_registry.host
    setting: object = "fake" if kind == "credsStore" else {host: "fake"}
    _write_config(docker_env, {kind: setting, "auths": {"other.example": {"auth": "eDp5"}}})
    code, out, err = _login_stdin(docker_env, host)
    assert code == 0, err
    assert "Login Succeeded" in out
    calls, kept = _helper_state(docker_env)
    assert f"store {host}" in calls
    assert kept[host] == {"ServerURL": host, "Username": USERNAME, "Secret": PASSWORD}
    config = _config(docker_env)
    assert config[kind] == setting, "the helper setting is kept"
    auths = config["auths"]
    assert isinstance(auths, dict)
    assert auths[host] == {}, "no secret in config.json: docker writes an empty entry"
    assert auths["other.example"] == {"auth": "eDp5"}
    assert PASSWORD not in (Path(docker_env["DOCKER_CONFIG"]) / "config.json").read_text()
    # what was stored is read back through the helper
    r = manyarch(docker_env, "imagetools", "inspect", f"{host}/none/such:tag", timeout=120)
    assert "authentication required" not in r.stderr.lower(), r.stderr
    assert f"get {host}" in _helper_state(docker_env)[0]
    # and logout erases it there
    r = manyarch(docker_env, "logout", host, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"Removing login credentials for {host}" in r.stdout
    calls, kept = _helper_state(docker_env)
    assert f"erase {host}" in calls and host not in kept
    auths = _config(docker_env)["auths"]
    assert isinstance(auths, dict) and host not in auths


def test_password_on_the_command_line_warns_as_docker(
    token_registry: TokenRegistry, docker_env: dict[str, str]
) -> None:
    code, _, err = _login(docker_env, token_registry.host, "--password", PASSWORD)
    assert code == 0, err
    assert WARNING in err.splitlines()
    code, _, err = _login_stdin(docker_env, token_registry.host)
    assert code == 0 and WARNING not in err


@pytest.mark.parametrize(
    "form", ["https://{host}/v2/", "http://{host}", "http://{host}/", "{host}/v2/"]
)
def test_login_to_a_url_as_docker(
    token_registry: TokenRegistry, docker_env: dict[str, str], form: str
) -> None:
    host = token_registry.host
    code, out, err = _login_stdin(docker_env, form.format(host=host))
    assert code == 0, err
    assert "Login Succeeded" in out
    auths = _config(docker_env)["auths"]
    assert isinstance(auths, dict) and list(auths) == [host], "stored under the host, as docker"
    r = manyarch(docker_env, "logout", form.format(host=host), timeout=60)
    assert r.returncode == 0 and f"Removing login credentials for {host}" in r.stdout


def test_a_url_without_a_host_is_refused(docker_env: dict[str, str]) -> None:
    code, _, err = _login_stdin(docker_env, "https:///v2/")
    assert code != 0 and "Traceback" not in err and "error:" in err


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A tiny tmpfs filled to the last byte (root only); unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounts a tmpfs")
    mount = tmp_path / "full"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(directory: Path) -> None:
    """Write zeros into ``directory`` until its file system is full."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 512)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_login_on_a_full_disk_leaves_no_temporary_file(
    token_registry: TokenRegistry, docker_env: dict[str, str], full_disk: Path
) -> None:
    before = '{"auths": {"other.example": {"auth": "eDp5"}}}'
    (full_disk / "config.json").write_text(before)
    fill(full_disk)
    env = dict(docker_env, DOCKER_CONFIG=str(full_disk))
    code, _, err = _login_stdin(env, token_registry.host)
    assert code == 1, err
    assert "Traceback" not in err and err.startswith("error: cannot write"), err
    assert sorted(p.name for p in full_disk.iterdir()) == ["config.json", "filler"]
    assert (full_disk / "config.json").read_text() == before
