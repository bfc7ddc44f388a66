"""``manyarch build`` from the command line: the seed's flags, outputs, progress, failures."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from manyarch.cli.main import main
from manyarch.oci import mediatypes as mt
from tests.helpers.registry_server import RegistryServer
from tests.helpers.tiny_base import TinyBase, tiny_base
from tests.imagebuild.build_helpers import make_context

__all__ = ["tiny_base"]

DOCKERFILE = """\
ARG BASE
FROM ${BASE}
WORKDIR /srv
COPY app/ app/
RUN echo "running on $(uname -m)" && uname -m > /srv/arch
CMD ["/bin/sh"]
"""
FILES = {"app/hello.txt": "hello\n"}


@pytest.fixture(autouse=True)
def isolated(isolated_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Own store and work dir (conftest: it must end empty, even after a failure)."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.chdir(tmp_path)
    return isolated_build


def skopeo_raw(ref: str) -> dict[str, object]:
    """``skopeo inspect --raw`` of a reference, as JSON."""
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", ref],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout)
    return result


def tags(registry: RegistryServer, repo: str) -> list[str]:
    """The repository's tags ([] when it does not exist)."""
    try:
        with urllib.request.urlopen(f"{registry.url}/v2/{repo}/tags/list") as r:
            return list(json.load(r).get("tags") or [])
    except urllib.error.HTTPError as e:
        assert e.code == 404
        return []


def platforms_of(index: dict[str, object]) -> list[str]:
    """``os/arch`` of each manifest in an index."""
    ms = index["manifests"]
    assert isinstance(ms, list)
    return [f"{m['platform']['os']}/{m['platform']['architecture']}" for m in ms]


@pytest.mark.slow
def test_seed_command_line_pushes_one_index(
    tmp_path: Path,
    tiny_base: TinyBase,
    registry: RegistryServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = make_context(tmp_path, "", FILES)
    (ctx / "Dockerfile.tiny").write_text(DOCKERFILE)
    name = f"{registry.host}/tiny-multiarch"
    rc = main([
        "build", "--platform", "linux/amd64,linux/arm64",
        "-t", f"{name}:latest", "-t", f"{name}:v1",
        "-f", str(ctx / "Dockerfile.tiny"),
        "--push",
        "--build-arg", "BUILDKIT_INLINE_CACHE=1",
        "--build-arg", f"BASE={tiny_base.ref}",
        "--metadata-file", str(tmp_path / "meta.json"),
        "--insecure-registry", registry.host,
        "--progress", "plain",
        str(ctx),
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "BUILDKIT_INLINE_CACHE" not in err  # read by BuildKit itself, no warning
    assert "[linux/arm64 4/5] RUN echo" in err and "running on aarch64" in err, err
    index = skopeo_raw(f"docker://{name}:latest")
    assert index["mediaType"] == mt.DOCKER_MANIFEST_LIST
    assert platforms_of(index) == ["linux/amd64", "linux/arm64"]
    assert skopeo_raw(f"docker://{name}:v1") == index
    meta = json.loads((tmp_path / "meta.json").read_text())
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{name}:latest"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert meta["containerimage.digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert meta["containerimage.descriptor"]["mediaType"] == mt.DOCKER_MANIFEST_LIST
    assert meta["image.name"] == f"{name}:latest,{name}:v1"
    for m in index["manifests"]:  # type: ignore[union-attr]
        manifest = skopeo_raw(f"docker://{name}@{m['digest']}")
        assert manifest["mediaType"] == mt.DOCKER_MANIFEST


def test_oci_media_types_on_request(
    tmp_path: Path, tiny_base: TinyBase, registry: RegistryServer
) -> None:
    ctx = make_context(tmp_path, DOCKERFILE.replace("RUN", "# RUN"), FILES)
    name = f"{registry.host}/tiny-oci:latest"
    rc = main([
        "build", "--platform", "linux/amd64,linux/arm64", "-t", name,
        "--output", "type=registry,oci-mediatypes=true", "--build-arg", f"BASE={tiny_base.ref}",
        "--insecure-registry", registry.host, "--progress", "quiet", str(ctx),
    ])  # fmt: skip
    assert rc == 0
    index = skopeo_raw(f"docker://{name}")
    assert index["mediaType"] == mt.OCI_INDEX
    assert platforms_of(index) == ["linux/amd64", "linux/arm64"]


@pytest.mark.parametrize(
    ("step", "line", "shown"),
    [
        ("RUN echo boom-output && exit 4", 4, "boom-output"),
        ("COPY nothing-here /x", 4, "not found"),
        ("FROBNICATE now", 4, "unknown instruction"),
        ('RUN ["unterminated', 4, ""),
    ],
    ids=["run-fails", "missing-copy-source", "unknown-instruction", "malformed"],
)
@pytest.mark.parametrize("progress", ["plain", "tty"])
def test_failures_push_nothing_and_leave_nothing(
    tmp_path: Path,
    tiny_base: TinyBase,
    registry: RegistryServer,
    capsys: pytest.CaptureFixture[str],
    step: str,
    line: int,
    shown: str,
    progress: str,
) -> None:
    df = f"ARG BASE\nFROM $BASE\nCOPY app/ /app/\n{step}\nRUN true\n"
    ctx = make_context(tmp_path, df, FILES)
    repo = f"fail-{progress}-{abs(hash(step)) % 10**8}"
    rc = main([
        "build", "--platform", "linux/amd64,linux/arm64", "-t", f"{registry.host}/{repo}:latest",
        "--push", "--build-arg", f"BASE={tiny_base.ref}", "--insecure-registry", registry.host,
        "--progress", progress, str(ctx),
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1
    assert f"error: {ctx}/Dockerfile:{line}:" in err
    assert shown in err
    if "boom" in shown and progress == "plain":
        assert any(ln.startswith("#") and ln.endswith(" boom-output") for ln in err.splitlines())
    assert tags(registry, repo) == []


def test_outputs_oci_layout_archive_and_docker(
    tmp_path: Path, tiny_base: TinyBase, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = make_context(tmp_path, DOCKERFILE, FILES)
    base = ["build", "--build-arg", f"BASE={tiny_base.ref}", "--progress", "quiet", "-t", "demo:1"]
    rc = main([*base, "--platform", "linux/amd64,linux/arm64",
               "-o", f"type=oci,dest={tmp_path / 'layout'}",
               "-o", f"type=oci,dest={tmp_path / 'image.tar'}", str(ctx)])  # fmt: skip
    assert rc == 0
    digest = capsys.readouterr().out.strip()
    index = skopeo_raw(f"oci:{tmp_path / 'layout'}:1")
    assert index["mediaType"] == mt.OCI_INDEX  # skopeo resolves OCI types in a layout
    assert platforms_of(index) == ["linux/amd64", "linux/arm64"]
    assert skopeo_raw(f"oci-archive:{tmp_path / 'image.tar'}:1") == index
    assert digest.startswith("sha256:")

    archive = tmp_path / "docker.tar"
    rc = main([*base, "--platform", "linux/arm64", "-o", f"type=docker,dest={archive}", str(ctx)])
    assert rc == 0
    with tarfile.open(archive) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        names = set(tf.getnames())
    assert manifest[0]["RepoTags"] == ["demo:1"]
    assert {manifest[0]["Config"], *manifest[0]["Layers"]} <= names
    out = subprocess.run(
        ["skopeo", "inspect", f"docker-archive:{archive}"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["Architecture"] == "arm64" and len(info["Layers"]) == 4
    copied = subprocess.run(
        ["skopeo", "copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'from-docker'}:x"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--platform", "linux/amd64,linux/arm64", "-o", "type=docker,dest=x.tar"],
        ["--push"],  # no -t
        ["-o", "type=oci"],  # no dest
        ["--provenance=true"],
        ["-o", "type=nope"],
        ["-o", "type=local,dest=out"],  # a filesystem export, not an image
        ["-o", "type=tar,dest=out.tar"],  # likewise: an OCI archive is type=oci
    ],
)
def test_usage_errors(tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    ctx = make_context(tmp_path, "FROM scratch\n")
    assert main(["build", *argv, str(ctx)]) == 2
    assert "error:" in capsys.readouterr().err


def _manyarch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "manyarch", *args],
        capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )  # fmt: skip


@pytest.mark.slow
def test_load_puts_every_platform_in_the_local_store_for_images_and_run(
    tmp_path: Path, tiny_base: TinyBase, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = make_context(tmp_path, DOCKERFILE, FILES)
    base = ["build", "--build-arg", f"BASE={tiny_base.ref}", "--progress", "quiet"]
    rc = main([*base, "--platform", "linux/amd64,linux/arm64", "--load", "-t", "demo:1", str(ctx)])
    assert rc == 0, capsys.readouterr().err
    rc = main([*base, "-o", "type=docker", "-t", "demo:default", str(ctx)])  # no --platform
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    rows = _manyarch("images", "--format", "{{.Repository}}:{{.Tag}} {{.Platform}}").stdout
    assert sorted(rows.splitlines()) == [
        "demo:1 linux/amd64",
        "demo:1 linux/arm64",
        "demo:default linux/amd64",  # containerd's default spec: no x86-64 level
    ]
    r = _manyarch("run", "--rm", "demo:1", "cat", "/srv/arch")
    assert (r.returncode, r.stdout) == (0, "x86_64\n"), r.stderr
    if Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        r = _manyarch("run", "--rm", "--platform", "linux/arm64", "demo:1", "cat", "/srv/arch")
        assert (r.returncode, r.stdout) == (0, "aarch64\n"), r.stderr
    fmt = "{{.Architecture}} {{.Variant}} {{json .RepoTags}}"
    r = _manyarch("inspect", "--format", fmt, "demo:default")
    # the same image as demo:1's amd64 one (reproducible): docker lists both tags
    assert r.stdout.split() == ["amd64", "<no", "value>", '["demo:1","demo:default"]'], r.stderr
    # a container keeps its image: rmi refuses it, as docker does, unless forced
    assert _manyarch("run", "--name", "user", "demo:default", "true").returncode == 0
    r = _manyarch("rmi", "demo:default")
    assert r.returncode == 1 and "is using its referenced image" in r.stderr
    assert _manyarch("rmi", "-f", "demo:default").returncode == 0
    assert "demo:default" not in _manyarch("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    assert _manyarch("rm", "user").returncode == 0


@pytest.mark.slow
def test_load_reads_what_docker_skopeo_buildx_and_manyarch_write(
    tmp_path: Path, tiny_base: TinyBase, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = make_context(tmp_path, DOCKERFILE, FILES)
    base = ["build", "--build-arg", f"BASE={tiny_base.ref}", "--progress", "quiet"]
    docker_tar, oci_tar = tmp_path / "docker.tar", tmp_path / "oci.tar"
    rc = main([*base, "-t", "app:own", "-o", f"type=docker,dest={docker_tar}", str(ctx)])
    assert rc == 0
    rc = main([*base, "--platform", "linux/amd64,linux/arm64", "-t", "myapp:dev",
               "-o", f"type=oci,dest={oci_tar}", str(ctx)])  # fmt: skip
    assert rc == 0
    capsys.readouterr()
    # skopeo's docker-archive (uncompressed layers, <hex>.tar names, RepoTags)
    skopeo_tar = tmp_path / "skopeo.tar"
    r = subprocess.run(
        ["skopeo", "copy", f"docker-archive:{docker_tar}",
         f"docker-archive:{skopeo_tar}:app:skopeo"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = _manyarch("load", "-i", str(docker_tar))
    assert r.stdout == "Loaded image: app:own\n", r.stderr
    r = _manyarch("load", "-i", str(skopeo_tar))
    assert r.stdout == "Loaded image: app:skopeo\n", r.stderr
    with open(oci_tar, "rb") as f:  # from stdin, named as buildx names it
        r = subprocess.run([sys.executable, "-m", "manyarch", "load"], stdin=f,
                           capture_output=True, text=True, env=dict(os.environ))  # fmt: skip
    assert r.stdout == "Loaded image: myapp:dev\n", r.stderr
    rows = _manyarch("images", "--format", "{{.Repository}}:{{.Tag}} {{.Platform}}").stdout
    assert sorted(rows.splitlines()) == [
        "app:own linux/amd64",
        "app:skopeo linux/amd64",
        "myapp:dev linux/amd64",
        "myapp:dev linux/arm64",
    ]
    for name in ("app:own", "app:skopeo", "myapp:dev"):
        r = _manyarch("run", "--rm", name, "cat", "/srv/arch")
        assert (r.returncode, r.stdout) == (0, "x86_64\n"), (name, r.stderr)
    # images REPO[:TAG] and --filter
    assert _manyarch("images", "-q", "app").stdout.count("\n") == 2
    assert _manyarch("images", "--format", "{{.Tag}}", "app:skopeo").stdout == "skopeo\n"
    r = _manyarch("images", "--format", "{{.Tag}}", "-f", "reference=myapp:*")
    assert r.stdout.splitlines() == ["dev", "dev"]
    # save to stdout, rmi, load it back
    out = tmp_path / "saved.tar"
    with open(out, "wb") as f:
        r = subprocess.run([sys.executable, "-m", "manyarch", "save", "app:own"], stdout=f,
                           stderr=subprocess.PIPE, text=True, env=dict(os.environ))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert _manyarch("rmi", "app:own").returncode == 0
    assert _manyarch("load", "-q", "-i", str(out)).returncode == 0
    assert "own" in _manyarch("images", "--format", "{{.Tag}}", "app").stdout.split()
    r = _manyarch("load", "-i", str(ctx / "app" / "hello.txt"))
    assert r.returncode == 1 and "not a tar archive" in r.stderr


@pytest.mark.slow
def test_pull_all_tags(tmp_path: Path, tiny_base: TinyBase, registry: RegistryServer) -> None:
    ctx = make_context(tmp_path, DOCKERFILE, FILES)
    for tag in ("a", "b"):
        rc = main(["build", "--build-arg", f"BASE={tiny_base.ref}", "--progress", "quiet",
                   "--push", "-t", f"{registry.host}/every:{tag}", "--insecure-registry",
                   registry.host, str(ctx)])  # fmt: skip
        assert rc == 0
    r = _manyarch(
        "pull", "-a", "-q", "--insecure-registry", registry.host, f"{registry.host}/every"
    )
    assert r.returncode == 0, r.stderr
    tags = _manyarch("images", "--format", "{{.Tag}}", f"{registry.host}/every").stdout
    assert sorted(tags.split()) == ["a", "b"]
    r = _manyarch("pull", "-a", f"{registry.host}/every:a")
    assert r.returncode == 2 and "--all-tags" in r.stderr
