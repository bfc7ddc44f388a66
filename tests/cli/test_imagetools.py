"""imagetools inspect/create, copy and login against the real distribution registry."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from manyarch.cli.main import main
from manyarch.layout import Layout
from manyarch.oci import Index, Manifest
from manyarch.oci import mediatypes as mt
from tests.helpers.faults import FaultProxy
from tests.helpers.images import make_index
from tests.helpers.registry_server import RegistryServer

SEED = """\
Name:      {name}
MediaType: {list_type}
Digest:    {digest}

Manifests:
  Name:      {name}@{amd}
  MediaType: {manifest_type}
  Platform:  linux/amd64

  Name:      {name}@{arm}
  MediaType: {manifest_type}
  Platform:  linux/arm64
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def skopeo_raw(ref: str) -> bytes:
    return subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        check=True,
        capture_output=True,
    ).stdout


@pytest.mark.parametrize("docker", [True, False], ids=["docker-list", "oci-index"])
def test_inspect_prints_the_seed_layout(
    tmp_path: Path, registry: RegistryServer, capsys: pytest.CaptureFixture[str], docker: bool
) -> None:
    host = registry.host
    layout, desc = make_index(tmp_path / "lay", docker=docker)
    ref = f"{host}/fastapi-multiarch:{'docker' if docker else 'oci'}"
    code, _, err = run(capsys, "copy", f"oci-layout://{tmp_path / 'lay'}:latest", ref)
    assert code == 0, err
    assert skopeo_raw(ref) == layout.read_blob(desc.digest)
    index = Index.parse(layout.read_blob(desc.digest))
    code, out, err = run(capsys, "imagetools", "inspect", ref)
    assert code == 0, err
    assert out == SEED.format(
        name=ref,
        list_type=mt.DOCKER_MANIFEST_LIST if docker else mt.OCI_INDEX,
        manifest_type=mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST,
        digest=desc.digest,
        amd=index.manifests[0].digest,
        arm=index.manifests[1].digest,
    )
    code, raw, err = run(capsys, "imagetools", "inspect", "--raw", ref)
    assert code == 0, err
    assert raw.encode() == layout.read_blob(desc.digest)


def test_inspect_formats_and_sizes(
    tmp_path: Path, registry: RegistryServer, capsys: pytest.CaptureFixture[str]
) -> None:
    host = registry.host
    make_index(tmp_path / "lay")
    ref = f"{host}/formats:v1"
    assert run(capsys, "copy", f"oci-layout://{tmp_path / 'lay'}:latest", ref)[0] == 0
    _, out, _ = run(capsys, "imagetools", "inspect", "--format", "{{json .Manifest}}", ref)
    obj = json.loads(out)
    assert obj["mediaType"] == mt.OCI_INDEX and len(obj["manifests"]) == 2
    _, out, _ = run(
        capsys, "imagetools", "inspect", "--format", '{{json .Image "linux/arm64"}}', ref
    )
    assert json.loads(out)["architecture"] == "arm64"
    _, out, _ = run(capsys, "imagetools", "inspect", "--format", "{{json .Image}}", ref)
    assert set(json.loads(out)) == {"linux/amd64", "linux/arm64"}
    code, _, err = run(capsys, "imagetools", "inspect", "--format", "{{.Bogus}}", ref)
    assert code == 2 and "unsupported --format" in err
    _, out, _ = run(capsys, "imagetools", "inspect", "--sizes", ref)
    assert "linux/amd64:" in out and "2 layers (1 shared)" in out


def test_create_merges_single_platform_images(
    tmp_path: Path, registry: RegistryServer, capsys: pytest.CaptureFixture[str]
) -> None:
    host = registry.host
    make_index(tmp_path / "lay")
    src = f"oci-layout://{tmp_path / 'lay'}:latest"
    # as if built on two runners: one image per platform, pushed separately
    assert run(capsys, "copy", "--platform", "linux/amd64", src, f"{host}/merge:amd64")[0] == 0
    assert run(capsys, "copy", "--platform", "linux/arm64", src, f"{host}/merge:arm64")[0] == 0
    assert Manifest.parse(skopeo_raw(f"{host}/merge:amd64")).layers
    code, out, _ = run(
        capsys, "imagetools", "create", "--dry-run", f"{host}/merge:amd64", f"{host}/merge:arm64"
    )
    assert code == 0 and len(json.loads(out)["manifests"]) == 2
    code, _, err = run(
        capsys,
        "imagetools", "create", "-t", f"{host}/merge:latest",
        f"{host}/merge:amd64", f"{host}/merge:arm64",
    )  # fmt: skip
    assert code == 0, err
    index = Index.parse(skopeo_raw(f"{host}/merge:latest"))
    assert [str(p) for p in index.platforms()] == ["linux/amd64", "linux/arm64"]
    # the same image twice: identical digests are merged, not duplicated
    code, out, err = run(
        capsys, "imagetools", "create", "--dry-run", f"{host}/merge:amd64", f"{host}/merge:amd64"
    )
    assert code == 0, err
    assert [m["platform"]["architecture"] for m in json.loads(out)["manifests"]] == ["amd64"]
    # two different images of one platform are refused
    make_index(tmp_path / "lay2", ["linux/amd64"], docker=True)
    other = f"{host}/merge:amd64-docker"
    assert run(capsys, "copy", f"oci-layout://{tmp_path / 'lay2'}:latest", other)[0] == 0
    code, _, err = run(capsys, "imagetools", "create", "--dry-run", f"{host}/merge:amd64", other)
    assert code == 2 and "two sources give linux/amd64" in err, err


def test_copy_to_layout_refuses_corrupt_blobs(
    tmp_path: Path, faulty: FaultProxy, capsys: pytest.CaptureFixture[str], registry: RegistryServer
) -> None:
    host = registry.host
    make_index(tmp_path / "lay")
    ref = f"{host}/corrupt:v1"
    assert run(capsys, "copy", f"oci-layout://{tmp_path / 'lay'}:latest", ref)[0] == 0
    faulty.inject("corrupt", method="GET", path="/blobs/sha256:", times=100)
    dest = tmp_path / "out"
    code, _, err = run(
        capsys,
        "copy",
        f"{faulty.host}/corrupt:v1",
        f"oci-layout://{dest}:v1",
    )
    assert code == 1
    assert "digest" in err
    # the layout is opened before the first blob: it is left valid, untagged, no temp files
    layout = Layout.open(dest)
    assert layout.verify() == []
    assert layout.tags() == []
    assert not [p for p in (dest / "blobs" / "sha256").iterdir() if p.name.startswith(".tmp")]


def test_login_logout(
    tmp_path: Path,
    tls_registry: RegistryServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    reg = tls_registry
    monkeypatch.setenv("SSL_CERT_FILE", str(reg.ca_file))
    code, _, err = run(capsys, "login", "-u", reg.username, "-p", "wrong", reg.host)
    assert code == 1 and "login" in err and "wrong" not in err
    assert not (tmp_path / "docker" / "config.json").exists()
    code, out, err = run(capsys, "login", "-u", reg.username, "-p", reg.password, reg.host)
    assert code == 0, err
    assert "Login Succeeded" in out
    cfg = json.loads((tmp_path / "docker" / "config.json").read_text())
    assert reg.host in cfg["auths"]
    assert oct((tmp_path / "docker" / "config.json").stat().st_mode & 0o777) == "0o600"
    code, out, _ = run(capsys, "logout", reg.host)
    assert code == 0
    assert reg.host not in json.loads((tmp_path / "docker" / "config.json").read_text())["auths"]
