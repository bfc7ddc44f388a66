"""Independent peers read what Layout writes (skopeo, umoci), and Layout reads skopeo's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from layout_image import Image

from manyarch.layout import Layout, walk
from manyarch.oci import mediatypes

pytestmark = pytest.mark.integration


def run(*argv: str) -> bytes:
    proc = subprocess.run(argv, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


@pytest.fixture
def tagged(image: Image) -> Image:
    image.layout.tag("multi", image.index)
    image.layout.tag("amd64", image.platforms["amd64"].manifest)
    image.layout.tag("arm64", image.platforms["arm64"].manifest)
    return image


def test_skopeo_raw_returns_our_index_bytes(tagged: Image) -> None:
    assert run("skopeo", "inspect", "--raw", f"oci:{tagged.layout.path}:multi") == (
        tagged.index_bytes
    )


@pytest.mark.parametrize(
    ("tag", "arch"), [("amd64", "amd64"), ("arm64", "arm64"), ("multi", "arm64")]
)
def test_skopeo_inspect_finds_our_digests(tagged: Image, tag: str, arch: str) -> None:
    out = json.loads(
        run(
            "skopeo",
            "--override-os",
            "linux",
            "--override-arch",
            arch,
            "inspect",
            f"oci:{tagged.layout.path}:{tag}",
        )
    )
    want = tagged.platforms[arch]
    assert out["Architecture"] == arch
    assert out["Os"] == "linux"
    assert out["Layers"] == [str(want.layer.digest)]
    # skopeo reports the digest of what the tag names (the index for "multi").
    named = tagged.index if tag == "multi" else want.manifest
    assert out["Digest"] == str(named.digest)


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_umoci_unpacks_our_manifest(tagged: Image, tmp_path: Path, arch: str) -> None:
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--rootless", "--image", f"{tagged.layout.path}:{arch}", str(bundle))
    hello = bundle / "rootfs" / "etc" / "hello.txt"
    assert hello.read_bytes() == tagged.platforms[arch].content
    runtime = json.loads((bundle / "config.json").read_bytes())
    assert runtime["process"]["args"] == ["/bin/sh"]


def test_we_read_a_layout_skopeo_wrote(tagged: Image, tmp_path: Path) -> None:
    dest = tmp_path / "from-skopeo"
    run(
        "skopeo",
        "copy",
        "--all",
        "--quiet",
        f"oci:{tagged.layout.path}:multi",
        f"oci:{dest}:copied",
    )
    copy = Layout.open(dest)
    assert copy.verify() == []
    desc = copy.resolve("copied")
    assert desc.digest == tagged.index.digest
    assert copy.read_document(desc).data == tagged.index_bytes
    assert {d.digest for d in walk(copy, desc)} == {
        d.digest for d in walk(tagged.layout, tagged.index)
    }
    # We can add to skopeo's layout and it keeps reading it.
    copy.tag("again", tagged.platforms["arm64"].manifest)
    assert copy.verify() == []
    assert copy.gc() == []
    raw = json.loads(run("skopeo", "inspect", "--raw", f"oci:{dest}:again"))
    assert raw["mediaType"] == mediatypes.OCI_MANIFEST
    assert json.loads((dest / "index.json").read_bytes())["mediaType"] == mediatypes.OCI_INDEX
