"""The session under the CLI: a call gives the command line's digest for every output
kind; one registry client per session and one ``GET /v2/`` per registry host; the
registries' settings found where BuildKit and docker find them; ``--debug`` is
manyarch's own flag."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import manyarch
from manyarch import config
from manyarch.cli.main import main
from manyarch.errors import NotFound
from manyarch.oci import mediatypes as mt
from manyarch.registry import RegistryClient
from tests.helpers.cli import manyarch as manyarch_cli
from tests.helpers.faults import FaultProxy
from tests.helpers.registry_server import RegistryServer, TLSRegistry
from tests.helpers.tiny_base import TinyBase, tiny_base
from tests.imagebuild.build_helpers import make_context

__all__ = ["tiny_base"]

DOCKERFILE = """\
ARG BASE
FROM $BASE
COPY hello.txt /srv/hello.txt
RUN uname -m > /srv/arch
"""
BOTH = ["linux/amd64", "linux/arm64"]


@pytest.fixture
def isolated(isolated_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Own store, caches and work dir; a fixed SOURCE_DATE_EPOCH (RUN under QEMU)."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.chdir(tmp_path)
    return isolated_build


def _cli_digest(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["build", "--progress", "quiet", *argv]) == 0, capsys.readouterr().err
    return capsys.readouterr().out.strip()


@pytest.mark.slow
def test_a_call_gives_the_command_lines_digest_for_every_output(
    tmp_path: Path,
    isolated: Path,
    tiny_base: TinyBase,
    registry: RegistryServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = make_context(tmp_path, DOCKERFILE, {"hello.txt": "hello\n"})
    repo = f"{registry.host}/same"
    both = ["--platform", ",".join(BOTH), "--build-arg", f"BASE={tiny_base.ref}", str(ctx)]
    arm = ["--platform", "linux/arm64", "--build-arg", f"BASE={tiny_base.ref}", str(ctx)]
    cli = {
        "registry": _cli_digest(capsys, "-t", f"{repo}:cli", "--push", *both),
        "registry-oci": _cli_digest(
            capsys, "-t", f"{repo}:cli-oci", "-o", "type=registry,oci-mediatypes=true", *both
        ),
        "layout": _cli_digest(capsys, "-t", "x:1", "-o", f"type=oci,dest={tmp_path}/l", *both),
        "archive": _cli_digest(capsys, "-o", f"type=oci,dest={tmp_path / 'a.tar'}", *both),
        "docker": _cli_digest(
            capsys, "-t", "x:1", "-o", f"type=docker,dest={tmp_path}/d.tar", *arm
        ),
    }
    with manyarch.Session() as s:
        result = s.build(ctx, platforms=BOTH, build_args={"BASE": tiny_base.ref})
        one = s.build(ctx, platforms=["linux/arm64"], build_args={"BASE": tiny_base.ref})
        oci = s.build(ctx, platforms=BOTH, build_args={"BASE": tiny_base.ref}, media_types="oci")
        api = {
            "registry": s.publish(result, f"{repo}:api"),
            "registry-oci": s.publish(oci, f"{repo}:api-oci"),
            "layout": s.publish(result, f"oci-layout://{tmp_path / 'api-l'}:1"),
            "archive": s.publish(result, f"oci-archive://{tmp_path / 'api-a.tar'}"),
            "docker": s.publish(one, f"docker-archive://{tmp_path / 'api-d.tar'}:x:1"),
        }
        assert {k: v.rsplit("@", 1)[1] for k, v in api.items()} == cli
        assert s.inspect(f"{repo}:api").descriptor.media_type == mt.DOCKER_MANIFEST_LIST
        assert s.inspect(f"{repo}:api-oci").descriptor.media_type == mt.OCI_INDEX
    assert result.media_types is None and oci.media_types == "oci"


@pytest.mark.slow
def test_one_client_and_one_ping_per_registry_host(
    tmp_path: Path,
    isolated: Path,
    tiny_base: TinyBase,
    registry: RegistryServer,
    faulty: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # two registry hosts (two proxies in front of the one registry): the base comes
    # from the first; the image and its build cache go to the second
    bases = FaultProxy(registry.host)
    try:
        assert main(["copy", tiny_base.ref, f"{bases.host}/tiny:1"]) == 0
        bases.seen.clear()
        made: list[RegistryClient] = []
        real_init = RegistryClient.__init__

        def counted(self: RegistryClient, *args: object, **kw: object) -> None:
            made.append(self)
            real_init(self, *args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(RegistryClient, "__init__", counted)
        ctx = make_context(tmp_path, DOCKERFILE, {"hello.txt": "hello\n"})
        cache = f"type=registry,ref={faulty.host}/pings:buildcache"
        argv = [
            "build", "--platform", ",".join(BOTH), "--build-arg", f"BASE={bases.host}/tiny:1",
            "-t", f"{faulty.host}/pings:1", "--push", "--cache-to", cache, "--cache-from", cache,
            "--progress", "quiet", str(ctx),
        ]  # fmt: skip
        assert main(argv) == 0, capsys.readouterr().err
        assert len(made) == 1
        assert bases.seen.count(("GET", "/v2/")) == 1
        assert faulty.seen.count(("GET", "/v2/")) == 1
        assert faulty.methods("/manifests/1$") == ["PUT"]  # the image went there, once
    finally:
        bases.stop()


# -- where registries' settings come from -------------------------------------------


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(
        os.environ,
        MANYARCH_STORE=str(tmp_path / "store"),
        DOCKER_CONFIG=str(tmp_path / "docker"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
    )


def test_buildkitd_toml_of_the_current_directory_is_not_read(
    tmp_path: Path, tls_registry: TLSRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a cloned repository must not turn TLS verification off for a registry
    repo = tmp_path / "cloned"
    repo.mkdir()
    (repo / "buildkitd.toml").write_text(f'[registry."{tls_registry.host}"]\n  insecure = true\n')
    monkeypatch.chdir(repo)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert tls_registry.host not in config.registry_options().skip_verify
    r = manyarch_cli(_env(tmp_path), "imagetools", "inspect", f"{tls_registry.host}/x:1", cwd=repo)
    assert r.returncode == 1 and "certificate" in r.stderr, r.stderr
    # where BuildKit reads it, it is read
    user = tmp_path / "config" / "buildkit" / "buildkitd.toml"
    user.parent.mkdir(parents=True)
    user.write_text((repo / "buildkitd.toml").read_text())
    assert tls_registry.host in config.registry_options().skip_verify
    r = manyarch_cli(_env(tmp_path), "imagetools", "inspect", f"{tls_registry.host}/x:1", cwd=repo)
    assert r.returncode == 1 and "certificate" not in r.stderr, r.stderr


def test_insecure_registry_means_what_daemon_json_means(
    tmp_path: Path, tls_registry: TLSRegistry
) -> None:
    # plain http allowed AND the certificate not verified: the hint of a refused
    # certificate says to add it, and adding it works
    env = _env(tmp_path)
    login = ["login", "-u", tls_registry.username, "--password-stdin", tls_registry.host]
    refused = subprocess.run(
        [sys.executable, "-m", "manyarch", *login], env=env, input=tls_registry.password,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 1 and "certificate" in refused.stderr
    assert f"--insecure-registry {tls_registry.host}" in refused.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "manyarch", *login, "--insecure-registry", tls_registry.host],
        env=env, input=tls_registry.password, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (ok.returncode, ok.stdout) == (0, "Login Succeeded\n"), ok.stderr
    opts = config.registry_options(insecure=["reg.example:5000"])
    assert opts.may_use_http("reg.example:5000") and not opts.verifies_tls("reg.example:5000")


def test_debug_is_manyarchs_own_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MANYARCH_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    # after the image, --debug is the command's (grep's here): an error stays an error
    # (125: docker run's status for its own errors)
    assert main(["run", "--pull", "never", "no-such-image", "grep", "--debug", "x"]) == 125
    assert "error: no image no-such-image" in capsys.readouterr().err
    with pytest.raises(NotFound):
        main(["--debug", "run", "--pull", "never", "no-such-image", "grep", "x"])
