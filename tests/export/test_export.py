"""BuildKit's image exporter on a build: annotations where buildx puts them, media types
switched where BuildKit switches them, compression honoured, the inline cache, attestation
manifests in BuildKit's form; digests reproducible throughout."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

import manyarch
from manyarch.errors import InvalidArgument
from manyarch.export.annotations import parse_annotation
from manyarch.imagebuild.options import BuildResult
from manyarch.oci import mediatypes as mt
from manyarch.oci.manifest import ImageConfig, Index, Manifest
from manyarch.oci.platform import Platform
from tests.attest.intoto_check import check_statement
from tests.helpers.tiny_base import TinyBase, tiny_base
from tests.imagebuild.build_helpers import make_context

__all__ = ["tiny_base"]

DOCKERFILE = 'ARG BASE\nFROM $BASE\nCOPY hello.txt /srv/hello.txt\nCMD ["cat", "/srv/hello.txt"]\n'
BOTH = ["linux/amd64", "linux/arm64"]


@pytest.fixture
def ctx(isolated_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    return make_context(tmp_path, DOCKERFILE, {"hello.txt": "hello\n"})


def build(ctx: Path, base: TinyBase, **kw: Any) -> BuildResult:
    with manyarch.Session() as s:
        return s.build(ctx, **{"platforms": BOTH, "build_args": {"BASE": base.ref}, **kw})


def doc(r: BuildResult, desc: Any = None) -> dict[str, Any]:
    got: dict[str, Any] = json.loads(r.store.read_document(desc or r.descriptor).data)
    return got


@pytest.mark.parametrize(
    ("text", "kind", "key", "platform"),
    [
        ("k=v", "", "k", None),
        ("index:k=v", "index", "k", None),
        ("manifest[linux/arm64]:org.x=v=w", "manifest", "org.x", "linux/arm64"),
        ("manifest-descriptor[linux/arm/v7]:k=v", "manifest-descriptor", "k", "linux/arm/v7"),
    ],
)
def test_annotation_syntax(text: str, kind: str, key: str, platform: str | None) -> None:
    (a,) = parse_annotation(text)
    assert (a.kind, a.key, a.platform) == (
        kind,
        key,
        Platform.parse(platform) if platform else None,
    )
    assert [x.kind for x in parse_annotation("index,manifest:k=v")] == ["index", "manifest"]
    with pytest.raises(InvalidArgument, match="unknown annotation type"):
        parse_annotation("indexx:k=v")


@pytest.mark.slow
def test_annotations_where_buildx_puts_them(ctx: Path, tiny_base: TinyBase) -> None:
    notes = [
        "org.all=1",
        "manifest[linux/arm64]:org.arm=2",
        "index:org.index=3",
        "manifest-descriptor:org.entry=4",
        "manifest-descriptor[linux/amd64]:org.entry=5",
        "index-descriptor:org.returned=6",
    ]
    r = build(ctx, tiny_base, annotations=notes, media_types="docker")
    assert r.warnings == ("forcibly turning on oci-mediatype mode for annotations",)
    assert r.media_types == "oci" and r.descriptor.annotations == {"org.returned": "6"}
    index = doc(r)
    assert index["mediaType"] == mt.OCI_INDEX and index["annotations"] == {"org.index": "3"}
    amd, arm = index["manifests"]
    assert (amd["annotations"], arm["annotations"]) == ({"org.entry": "5"}, {"org.entry": "4"})
    assert doc(r, r.manifests[0])["annotations"]["org.all"] == "1"
    assert "org.arm" not in doc(r, r.manifests[0])["annotations"]
    assert doc(r, r.manifests[1])["annotations"]["org.arm"] == "2"
    # manifest annotations alone keep Docker media types: BuildKit writes them in the manifests
    r = build(ctx, tiny_base, annotations=["org.all=1"], media_types="docker")
    assert (r.media_types, r.warnings) == ("docker", ())
    assert doc(r)["mediaType"] == mt.DOCKER_MANIFEST_LIST
    assert doc(r, r.manifests[0])["annotations"] == {"org.all": "1"}


def test_annotation_refusals(ctx: Path, tiny_base: TinyBase) -> None:
    with pytest.raises(InvalidArgument, match="no platform linux/riscv64 found in source"):
        build(ctx, tiny_base, annotations=["manifest[linux/riscv64]:k=v"])
    with pytest.raises(
        InvalidArgument, match="index annotations not supported for single platform"
    ):
        build(ctx, tiny_base, platforms=["linux/amd64"], annotations=["index:k=v"])


@pytest.mark.slow
def test_compression(ctx: Path, tiny_base: TinyBase) -> None:
    plain = build(ctx, tiny_base, media_types="docker")
    base_layer, app_layer = Manifest.parse(plain.store.read_document(plain.manifests[0])).layers
    zstd = build(ctx, tiny_base, compression="zstd")
    layers = Manifest.parse(zstd.store.read_document(zstd.manifests[0])).layers
    # the base's layer keeps its compression; the build's own is zstd
    assert [d.media_type for d in layers] == [mt.OCI_LAYER_GZIP, mt.OCI_LAYER_ZSTD]
    assert layers[0].digest == base_layer.digest and layers[1].digest != app_layer.digest
    assert build(ctx, tiny_base, compression="zstd").descriptor == zstd.descriptor
    forced = build(ctx, tiny_base, compression="zstd", force_compression=True, media_types="docker")
    man = doc(forced, forced.manifests[0])
    assert [d["mediaType"] for d in man["layers"]] == [mt.DOCKER_LAYER_ZSTD] * 2
    raw = build(ctx, tiny_base, compression="uncompressed", platforms=["linux/arm64"])
    man = doc(raw)
    assert man["layers"][1]["mediaType"] == mt.OCI_LAYER
    config = ImageConfig.parse(raw.store.read_blob(raw.config))  # type: ignore[arg-type]
    assert man["layers"][1]["digest"] == str(config.diff_ids[1])  # a plain tar is its diff_id
    best = build(ctx, tiny_base, compression_level=9, platforms=["linux/arm64"])
    assert doc(best)["layers"][1]["digest"] != str(app_layer.digest)
    with pytest.raises(InvalidArgument, match="out of range"):
        build(ctx, tiny_base, compression="zstd", compression_level=40)


@pytest.mark.slow
def test_inline_cache(ctx: Path, tiny_base: TinyBase) -> None:
    r = build(ctx, tiny_base, build_args={"BASE": tiny_base.ref, "BUILDKIT_INLINE_CACHE": "1"},
              media_types="docker")  # fmt: skip
    assert r.media_types == "docker"
    for m in r.manifests:
        config = json.loads(
            r.store.read_blob(Manifest.parse(r.store.read_document(m)).config.digest)
        )
        records = json.loads(base64.b64decode(config["moby.buildkit.cache.v0"]))
        assert [list(rec) for rec in records] == [
            ["layers", "digest"],
            ["layers", "digest", "inputs"],
        ]
        assert records[0]["layers"] == [{"layer": 0, "createdAt": "2023-11-14T22:13:20Z"}]
        assert records[1]["layers"][0]["layer"] == 1 and records[1]["inputs"] == [[{"link": 0}]]
    again = build(ctx, tiny_base, cache_to="type=inline", media_types="docker")
    assert again.descriptor == r.descriptor  # reproducible, and the same whichever way asked


@pytest.mark.slow
def test_attestations_in_buildkits_form(ctx: Path, tiny_base: TinyBase) -> None:
    names = ["localhost:5000/app:1"]
    r = build(ctx, tiny_base, sbom="true", provenance="mode=max", names=names, media_types="docker")
    assert r.media_types == "oci"
    assert r.warnings == ("forcibly turning on oci-mediatype mode for attestations",)
    index = Index.parse(r.store.read_document(r.descriptor))
    images, atts = index.manifests[:2], index.manifests[2:]
    assert [str(d.platform) for d in images] == BOTH and [d.is_attestation for d in atts] == [
        True
    ] * 2
    for image, att in zip(images, atts, strict=True):
        assert att.annotations == {
            "vnd.docker.reference.digest": str(image.digest),
            "vnd.docker.reference.type": "attestation-manifest",
        }
        assert att.platform == Platform("unknown", "unknown") and att.artifact_type is None
        manifest = Manifest.parse(r.store.read_document(att))
        kinds = [d.annotations["in-toto.io/predicate-type"] for d in manifest.layers]
        assert kinds == ["https://spdx.dev/Document", "https://slsa.dev/provenance/v0.2"]
        config = json.loads(r.store.read_blob(manifest.config.digest))
        assert config["rootfs"]["diff_ids"] == [str(d.digest) for d in manifest.layers]
        for layer in manifest.layers:
            stmt = check_statement(r.store.read_blob(layer.digest))
            assert stmt["subject"][0]["digest"] == {"sha256": image.digest.hex}
            assert stmt["subject"][0]["name"].endswith(
                f"platform={str(image.platform).replace('/', '%2F')}"
            )
    # SOURCE_DATE_EPOCH set: the statements' times come from it, and the digest is the same again
    again = build(ctx, tiny_base, sbom="true", provenance="mode=max", names=names)
    assert again.descriptor.digest == r.descriptor.digest
    one = build(ctx, tiny_base, platforms=["linux/arm64"], provenance="true")
    entries = Index.parse(one.store.read_document(one.descriptor)).manifests
    assert [d.is_attestation for d in entries] == [False, True]
