"""Pull into the local store, list, remove, save and load (tiny real images, no registry)."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from manyarch.errors import NotFound, PlatformNotFound
from manyarch.images import TransferEvent
from manyarch.layout import Layout
from manyarch.oci.platform import Platform
from manyarch.oci.reference import LayoutReference, Reference
from manyarch.run import local
from manyarch.store import open_store
from tests.helpers.images import make_index


def _pull(
    src: Path, platform: str | None, events: list[TransferEvent] | None = None
) -> local.PullResult:
    return local.pull(
        LayoutReference(str(src), "latest"),
        None,  # a layout source needs no registry client
        platform=Platform.parse(platform) if platform else None,
        store=open_store(),
        progress=events.append if events is not None else None,
    )


def _blobs(events: list[TransferEvent]) -> list[str]:
    return [e.status for e in events if e.digest is not None and e.status in ("exists", "copied")]


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("localhost:5000/app", "localhost:5000/app:latest"),
        (
            "host.docker.internal:5000/fastapi-multiarch:v1",
            "host.docker.internal:5000/fastapi-multiarch:v1",
        ),
        ("python", "docker.io/library/python:latest"),
        ("oci-layout:///var/tmp/x_y:py", "oci-layout/var/tmp/x_y:py"),
    ],
)
def test_store_names_are_full_references(ref: str, name: str) -> None:
    assert local.store_name(local.parse_image_ref(ref)) == name


@pytest.mark.parametrize(
    ("name", "repo", "tag"),
    [
        ("localhost:5000/app:latest", "localhost:5000/app", "latest"),
        ("localhost:5000/app@sha256:" + "a" * 64, "localhost:5000/app", ""),
        ("docker.io/library/python:3.12", "docker.io/library/python", "3.12"),
    ],
)
def test_split_name(name: str, repo: str, tag: str) -> None:
    assert local.split_name(name) == (repo, tag)


def test_pull_takes_the_host_platform_and_tags_the_manifest(tmp_path: Path) -> None:
    _, index = make_index(tmp_path / "src")
    result = _pull(tmp_path / "src", None)
    assert result.resolved == index.digest
    assert result.image.platform.architecture == "amd64"
    store = open_store()
    [(name, desc)] = store.tags()
    assert name == local.store_name(LayoutReference(str(tmp_path / "src"), "latest"))
    assert desc.platform is not None and desc.platform.architecture == "amd64"
    assert desc.annotations[local.REPO_DIGEST] == str(index.digest)
    assert store.verify() == []


def test_pull_fetches_only_missing_blobs_and_moves_the_tag(tmp_path: Path) -> None:
    make_index(tmp_path / "src")
    first: list[TransferEvent] = []
    _pull(tmp_path / "src", "linux/amd64", first)
    assert _blobs(first) and all(status == "copied" for status in _blobs(first))
    assert first[0].status == "pulling" and first[-1].status == "pulled"
    again: list[TransferEvent] = []
    result = _pull(tmp_path / "src", "linux/amd64", again)
    assert result.up_to_date and result.fetched == 0 and again[-1].status == "up-to-date"
    events: list[TransferEvent] = []
    arm = _pull(tmp_path / "src", "linux/arm64", events)
    # the shared layer is already there, the arm64 one is fetched
    assert sorted(_blobs(events)) == ["copied", "exists"]
    assert arm.fetched == 1 and not arm.up_to_date
    [img] = local.list_images(open_store())
    assert str(img.platform) == "linux/arm64"


def test_pull_of_a_missing_platform_lists_those_there_are(tmp_path: Path) -> None:
    make_index(tmp_path / "src")
    with pytest.raises(PlatformNotFound) as e:
        _pull(tmp_path / "src", "linux/s390x")
    assert e.value.hint == "platforms available: linux/amd64, linux/arm64"


def test_find_local_respects_a_forced_platform(tmp_path: Path) -> None:
    make_index(tmp_path / "src")
    _pull(tmp_path / "src", "linux/arm64")
    name = local.store_name(LayoutReference(str(tmp_path / "src"), "latest"))
    store = open_store()
    assert local.find_local(store, name, None) is not None  # whatever was pulled, as docker
    assert local.find_local(store, name, Platform.parse("linux/amd64")) is None
    hit = local.find_local(store, name, Platform.parse("linux/arm64/v8"))
    assert hit is not None and hit.platform.architecture == "arm64"


def test_rmi_untags_by_name_or_id(tmp_path: Path) -> None:
    make_index(tmp_path / "src")
    img = _pull(tmp_path / "src", None).image
    store = open_store()
    assert [i.name for i in local.remove(store, img.id.short)] == [img.name]
    assert local.list_images(store) == []
    with pytest.raises(NotFound):
        local.remove(store, img.name)
    assert local.prune(store)  # the blobs went with the last tag


def test_save_and_load_round_trip_and_skopeo_reads_it(tmp_path: Path) -> None:
    make_index(tmp_path / "src")
    img = _pull(tmp_path / "src", None).image
    archive = tmp_path / "img.tar"
    assert local.save(open_store(), [img.name], archive) == [img.name]
    r = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci-archive:{archive}:{img.name}"],
        capture_output=True,
        check=True,
    )
    assert json.loads(r.stdout)["config"]["digest"] == str(img.id)
    local.remove(open_store(), img.name)
    assert local.load(open_store(), archive) == [img.name]
    [back] = local.list_images(open_store())
    assert back.descriptor.digest == img.descriptor.digest


def test_docker_archive_has_manifest_json(tmp_path: Path) -> None:
    make_index(tmp_path / "src")
    img = _pull(tmp_path / "src", None).image
    archive = tmp_path / "docker.tar"
    local.save(open_store(), [img.name], archive, docker=True)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = tar.extractfile("manifest.json")
        assert manifest is not None
        [entry] = json.loads(manifest.read())
    assert entry["Config"] == f"blobs/sha256/{img.id.hex}"
    assert len(entry["Layers"]) == len(img.manifest.layers)
    assert all(layer in names for layer in entry["Layers"])
    assert "index.json" in names


def test_registry_reference_name_is_kept_in_layouts(tmp_path: Path) -> None:
    # a name with a port and a path is a valid ref.name in an OCI layout
    store = Layout.open(tmp_path / "l", create=True)
    _, desc = make_index(tmp_path / "src")
    src = Layout.open(tmp_path / "src")
    name = str(Reference.parse("localhost:5000/team/app:1.0"))
    store.put_blob(src.read_blob(desc.digest))
    store.tag(name, desc)
    assert store.tags()[0][0] == name
