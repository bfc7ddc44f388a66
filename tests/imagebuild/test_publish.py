"""Publishers: registry (several tags), OCI layout and archive, docker archive; --output parsing."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from manyarch.errors import UsageError
from manyarch.imagebuild.publish import (
    DockerArchivePublisher,
    LayoutPublisher,
    OutputSpec,
    RegistryPublisher,
    parse_output,
    write_metadata,
)
from manyarch.layout import Layout
from manyarch.oci import mediatypes as mt
from manyarch.oci.manifest import Index, Manifest
from manyarch.oci.reference import Reference
from manyarch.registry import RegistryClient, RegistryOptions
from tests.helpers.images import make_index
from tests.helpers.registry_server import RegistryServer


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("type=registry", OutputSpec("registry")),
        ("type=registry,oci-mediatypes=true", OutputSpec("registry", {"oci-mediatypes": "true"})),
        ("type=image,name=r/x:1,push=true", OutputSpec("image", {"name": "r/x:1", "push": "true"})),
        ("type=oci,dest=out.tar", OutputSpec("oci", {"dest": "out.tar"})),
        ("type=docker,dest=/tmp/i.tar", OutputSpec("docker", {"dest": "/tmp/i.tar"})),
        ("outdir", OutputSpec("local", {"dest": "outdir"})),
    ],
)
def test_parse_output(text: str, spec: OutputSpec) -> None:
    assert parse_output(text) == spec


@pytest.mark.parametrize("text", ["type=cacheonly", "", "type=oci,dest", "dest=x"])
def test_parse_output_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_output(text)


def test_registry_publisher_pushes_every_tag(tmp_path: Path, registry: RegistryServer) -> None:
    layout, desc = make_index(tmp_path / "src", docker=True)
    refs = [Reference.parse(f"{registry.host}/pub/multi:{t}") for t in ("a", "b")]
    with RegistryClient(RegistryOptions(insecure=frozenset({registry.host}))) as client:
        names = RegistryPublisher(refs, lambda: client).publish(layout, desc)
        assert names == [f"{r.name}:{r.tag}@{desc.digest}" for r in refs]
        for r in refs:
            doc = client.get_manifest(r)
            assert doc.digest == desc.digest and doc.media_type == mt.DOCKER_MANIFEST_LIST


def test_layout_publisher_dir_and_archive(tmp_path: Path) -> None:
    layout, desc = make_index(tmp_path / "src")
    out = LayoutPublisher(tmp_path / "out", "v1").publish(layout, desc)
    assert out == [f"oci-layout://{tmp_path / 'out'}:v1@{desc.digest}"]
    assert Layout.open(tmp_path / "out").resolve("v1").digest == desc.digest
    archive = tmp_path / "img.tar"
    assert LayoutPublisher(archive, "v1").publish(layout, desc) == [str(archive)]
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci-archive:{archive}:v1"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert raw == layout.read_blob(desc.digest)
    assert not list(tmp_path.glob("*.partial"))


def test_docker_archive_one_platform(tmp_path: Path) -> None:
    layout, desc = make_index(tmp_path / "src", ("linux/arm64",), docker=True)
    archive = tmp_path / "docker.tar"
    tags = [Reference.parse("demo:1"), Reference.parse("localhost:5000/x/y")]
    DockerArchivePublisher(archive, tags).publish(layout, desc)
    with tarfile.open(archive) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        repos = json.load(tf.extractfile("repositories"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["demo:1", "localhost:5000/x/y:latest"]
    assert set(repos) == {"demo", "localhost:5000/x/y"}
    info = subprocess.run(
        ["skopeo", "inspect", f"docker-archive:{archive}"], capture_output=True, check=True
    )
    assert json.loads(info.stdout)["Architecture"] == "arm64"


def test_docker_archive_refuses_several_platforms(tmp_path: Path) -> None:
    layout, desc = make_index(tmp_path / "src")
    with pytest.raises(UsageError, match="one platform"):
        DockerArchivePublisher(tmp_path / "d.tar").publish(layout, desc)
    assert not (tmp_path / "d.tar").exists()


def test_metadata_file_like_buildx(tmp_path: Path) -> None:
    layout, desc = make_index(tmp_path / "src")
    path = tmp_path / "meta.json"
    write_metadata(path, desc, ["r/x:1", "r/x:2"])
    meta = json.loads(path.read_text())
    assert meta["containerimage.digest"] == str(desc.digest)
    assert meta["containerimage.descriptor"] == {
        "mediaType": mt.OCI_INDEX, "digest": str(desc.digest), "size": desc.size,
    }  # fmt: skip
    assert meta["image.name"] == "r/x:1,r/x:2"
    assert set(meta) == {"containerimage.digest", "containerimage.descriptor", "image.name"}
    # a platform manifest: the descriptor written is plain (no platform), the config named
    child = Index.parse(layout.read_document(desc)).manifests[0]
    assert child.platform is not None
    config = Manifest.parse(layout.read_document(child)).config.digest
    write_metadata(path, child, [], config)
    meta = json.loads(path.read_text())
    assert meta == {
        "containerimage.descriptor": {
            "mediaType": mt.OCI_MANIFEST, "digest": str(child.digest), "size": child.size,
        },
        "containerimage.digest": str(child.digest),
        "containerimage.config.digest": str(config),
    }  # fmt: skip
