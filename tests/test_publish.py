"""Publishing: destinations by name, registry (several tags), OCI layout and archive,
docker archive; the Docker form of an OCI image; buildx's metadata."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from manyarch.errors import InvalidArgument, InvalidReference
from manyarch.layout import Layout
from manyarch.oci import mediatypes as mt
from manyarch.oci.manifest import Index, Manifest
from manyarch.oci.reference import Reference
from manyarch.publish import (
    Destination,
    DockerArchive,
    LayoutDestination,
    OciArchive,
    RegistryDestination,
    default_media_types,
    in_media_types,
    media_types_for,
    parse_destination,
    publish,
    write_metadata,
)
from manyarch.registry import RegistryClient, RegistryOptions
from tests.helpers.images import make_index
from tests.helpers.registry_server import RegistryServer


@pytest.mark.parametrize(
    ("text", "dest"),
    [
        ("localhost:5000/app:1", RegistryDestination(Reference.parse("localhost:5000/app:1"))),
        ("oci-layout://out", LayoutDestination(Path("out"), "latest")),
        ("oci-layout:///tmp/out:v1", LayoutDestination(Path("/tmp/out"), "v1")),
        ("oci-archive://img.tar:v1", OciArchive(Path("img.tar"), "v1")),
        ("docker-archive://d.tar", DockerArchive(Path("d.tar"))),
        (
            "docker-archive://d.tar:localhost:5000/x/y:2",
            DockerArchive(Path("d.tar"), (Reference.parse("localhost:5000/x/y:2"),)),
        ),
    ],
)
def test_destinations_by_name(text: str, dest: Destination) -> None:
    assert parse_destination(text) == dest


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("docker-archive://", InvalidArgument),
        ("oci-layout://x@sha256:" + "a" * 64, InvalidArgument),
        ("Upper/Case:1", InvalidReference),
    ],
)
def test_bad_destinations(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_destination(text)


def test_media_types_by_destination() -> None:
    reg = RegistryDestination(Reference.parse("r/x"))
    lay = LayoutDestination(Path("out"))
    assert [default_media_types(d) for d in (reg, lay, OciArchive(Path("a.tar")))] == [
        "docker",
        "oci",
        "oci",
    ]
    assert default_media_types(DockerArchive(Path("d.tar"))) == "docker"
    assert media_types_for([lay]) == "oci" and media_types_for([]) == "oci"
    assert media_types_for([lay, reg]) == "docker"  # one build, one form: the registry's


def test_docker_form_is_what_docker_media_types_write(tmp_path: Path) -> None:
    # the same images written with Docker media types from the start, and converted
    oci_layout, oci = make_index(tmp_path / "oci")
    _, docker = make_index(tmp_path / "docker", docker=True)
    converted = in_media_types(oci_layout, oci, "docker")
    assert converted.digest == docker.digest and converted.media_type == mt.DOCKER_MANIFEST_LIST
    assert in_media_types(oci_layout, converted, "docker") == converted
    assert in_media_types(oci_layout, oci, "oci") == oci
    with pytest.raises(InvalidArgument, match="no OCI form"):
        in_media_types(oci_layout, converted, "oci")
    child = Index.parse(oci_layout.read_document(oci)).manifests[0]
    one = in_media_types(oci_layout, child, "docker")
    assert one.platform == child.platform
    assert Manifest.parse(oci_layout.read_document(one)).media_type == mt.DOCKER_MANIFEST


def test_registry_publish_every_tag(tmp_path: Path, registry: RegistryServer) -> None:
    layout, desc = make_index(tmp_path / "src", docker=True)
    refs = [Reference.parse(f"{registry.host}/pub/multi:{t}") for t in ("a", "b")]
    with RegistryClient(RegistryOptions(insecure=frozenset({registry.host}))) as client:
        names = [publish(layout, desc, RegistryDestination(r), client=client) for r in refs]
        assert names == [f"{r.name}:{r.tag}@{desc.digest}" for r in refs]
        for r in refs:
            doc = client.get_manifest(r)
            assert doc.digest == desc.digest and doc.media_type == mt.DOCKER_MANIFEST_LIST
    with pytest.raises(InvalidArgument, match="no registry client"):
        publish(layout, desc, RegistryDestination(refs[0]))


def test_layout_dir_and_archive(tmp_path: Path) -> None:
    layout, desc = make_index(tmp_path / "src")
    out = publish(layout, desc, LayoutDestination(tmp_path / "out", "v1"))
    assert out == f"oci-layout://{tmp_path / 'out'}:v1@{desc.digest}"
    assert Layout.open(tmp_path / "out").resolve("v1").digest == desc.digest
    archive = tmp_path / "img.tar"
    written = publish(layout, desc, OciArchive(archive, "v1"))
    assert written == f"oci-archive://{archive}:v1@{desc.digest}"
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci-archive:{archive}:v1"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert raw == layout.read_blob(desc.digest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.tar", "out", "src"]


def test_docker_archive_one_platform(tmp_path: Path) -> None:
    layout, desc = make_index(tmp_path / "src", ("linux/arm64",), docker=True)
    archive = tmp_path / "docker.tar"
    tags = (Reference.parse("demo:1"), Reference.parse("localhost:5000/x/y"))
    publish(layout, desc, DockerArchive(archive, tags))
    with tarfile.open(archive) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        repos = json.load(tf.extractfile("repositories"))  # type: ignore[arg-type]
        names = set(tf.getnames())
    assert manifest[0]["RepoTags"] == ["demo:1", "localhost:5000/x/y:latest"]
    assert set(repos) == {"demo", "localhost:5000/x/y"}
    assert {manifest[0]["Config"], *manifest[0]["Layers"], "index.json"} <= names
    info = subprocess.run(
        ["skopeo", "inspect", f"docker-archive:{archive}"], capture_output=True, check=True
    )
    assert json.loads(info.stdout)["Architecture"] == "arm64"


def test_docker_archive_refuses_several_platforms(tmp_path: Path) -> None:
    layout, desc = make_index(tmp_path / "src")
    with pytest.raises(InvalidArgument, match="one platform"):
        publish(layout, desc, DockerArchive(tmp_path / "d.tar"))
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
