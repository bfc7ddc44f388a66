import json

import pytest

from manyarch.errors import InvalidDocument
from manyarch.oci import mediatypes as mt
from manyarch.oci.digest import Digest
from manyarch.oci.document import Document
from manyarch.oci.manifest import (
    ContainerConfig,
    Descriptor,
    History,
    ImageConfig,
    Index,
    Manifest,
    parse_manifest_or_index,
)
from manyarch.oci.platform import Platform

CFG = Descriptor(mt.OCI_CONFIG, Digest.of(b"{}"), 2)
LAYER = Descriptor(mt.OCI_LAYER_GZIP, Digest.of(b"layer"), 5)


def _index() -> Index:
    amd = Descriptor(mt.OCI_MANIFEST, Digest.of(b"a"), 1, platform=Platform.parse("linux/amd64"))
    arm = Descriptor(mt.OCI_MANIFEST, Digest.of(b"b"), 1, platform=Platform.parse("linux/arm64"))
    att = Descriptor(
        mt.OCI_MANIFEST,
        Digest.of(b"c"),
        1,
        platform=Platform("unknown", "unknown"),
        annotations={
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": str(Digest.of(b"a")),
        },
    )
    return Index((amd, arm, att))


def test_document_digest_is_of_the_bytes() -> None:
    raw = b'{ "schemaVersion": 2,\n "mediaType": "%s", "config": %s, "layers": [] }' % (
        mt.OCI_MANIFEST.encode(),
        json.dumps(CFG.to_json()).encode(),
    )
    doc = Document(raw, mt.OCI_MANIFEST)
    m = Manifest.parse(doc)
    assert doc.digest == Digest.of(raw)
    # re-serialising gives other bytes, hence another digest: never used for identity
    assert m.to_document().digest != doc.digest
    assert Manifest.parse(m.to_document()) == m


def test_manifest_round_trip_and_with_layer() -> None:
    m = Manifest(CFG, (LAYER,), annotations={"a": "b"})
    m2 = m.with_layer(LAYER)
    assert len(m.layers) == 1 and len(m2.layers) == 2
    assert Manifest.parse(m2.to_document()) == m2
    d = Manifest(CFG, (LAYER,), media_type=mt.DOCKER_MANIFEST)
    assert json.loads(d.to_document().data)["mediaType"] == mt.DOCKER_MANIFEST


def test_index_select_skips_attestations() -> None:
    idx = _index()
    assert Index.parse(idx.to_document()) == idx
    assert [str(p) for p in idx.platforms()] == ["linux/amd64", "linux/arm64"]
    host = Platform.parse("linux/amd64/v3")
    chosen = idx.select(host)
    assert chosen is not None and chosen.digest == Digest.of(b"a")
    assert idx.select(Platform.parse("linux/s390x")) is None
    assert idx.manifests[2].is_attestation


def test_parse_manifest_or_index() -> None:
    idx = _index()
    assert isinstance(parse_manifest_or_index(idx.to_document()), Index)
    m = Manifest(CFG, (LAYER,))
    assert isinstance(parse_manifest_or_index(m.to_document()), Manifest)
    # a document without mediaType, told apart by its content
    bare = {"schemaVersion": 2, "config": CFG.to_json(), "layers": []}
    assert isinstance(
        parse_manifest_or_index(Document(json.dumps(bare).encode(), "application/json")), Manifest
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"schemaVersion": 1}',
        b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}',
        b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:12", "size": 1}}',
        b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "'
        + str(Digest.of(b"")).encode()
        + b'", "size": -1}}',
    ],
)
def test_bad_manifests(raw: bytes) -> None:
    with pytest.raises(InvalidDocument):
        Manifest.parse(raw)


def test_image_config_round_trip() -> None:
    cc = ContainerConfig(
        user="65532",
        exposed_ports=("80/tcp",),
        env=("PATH=/usr/bin", "LANG=C.UTF-8"),
        entrypoint=None,
        cmd=("uvicorn", "app.main:app"),
        working_dir="/app",
        labels={"a": "b"},
        stop_signal="SIGTERM",
        healthcheck={"Test": ["CMD-SHELL", "true"], "Interval": 30_000_000_000},
        shell=("/bin/sh", "-c"),
        volumes=("/data",),
    )
    cfg = (
        ImageConfig("arm64", "linux", config=cc)
        .with_layer(Digest.of(b"x"), History(created_by="COPY . /app"))
        .with_history(History(created_by="CMD"))
    )
    back = ImageConfig.parse(cfg.to_document())
    assert back == cfg
    assert str(back.platform) == "linux/arm64"
    assert back.history[-1].empty_layer
    assert back.config.with_env(LANG="fr_FR.UTF-8").env_dict()["LANG"] == "fr_FR.UTF-8"
