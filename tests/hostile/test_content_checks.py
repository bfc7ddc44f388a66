"""Content that is not what it claims is refused: a manifest whose size differs from its
descriptor (OCI image spec, descriptor.md: such content must not be trusted), and layers
whose uncompressed digests differ from the config's ``rootfs.diff_ids``."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import uuid
from pathlib import Path

import pytest

from manyarch import rootfs
from manyarch.errors import DigestMismatch
from manyarch.images import RegistrySource, resolve_image
from manyarch.layers import unpack
from manyarch.layout import Layout
from manyarch.oci import Descriptor, Digest, Index, Manifest, Platform, Reference
from manyarch.oci import mediatypes as mt
from manyarch.registry import RegistryClient, RegistryOptions
from tests.helpers.registry_server import RegistryServer
from tests.layout.layout_image import write_image


def _tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.integration
def test_a_manifest_larger_than_its_descriptor_is_refused(registry: RegistryServer) -> None:
    ref = Reference.parse(f"{registry.host}/hostile/{uuid.uuid4().hex[:8]}:v1")
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()  # fmt: skip
    cdesc = Descriptor(mt.OCI_CONFIG, Digest.of(config), len(config))
    with RegistryClient(RegistryOptions(retries=0)) as client:
        client.push_blob(ref, cdesc, lambda: io.BytesIO(config))
        doc = Manifest(cdesc).to_document()
        client.put_manifest(ref.with_digest(doc.digest), doc)
        lying = Descriptor(
            doc.media_type, doc.digest, doc.size - 7, platform=Platform.parse("linux/amd64")
        )
        index = Index((lying,), mt.OCI_INDEX).to_document()
        client.put_manifest(ref, index)
        with pytest.raises(DigestMismatch) as caught:
            resolve_image(RegistrySource(client, ref), Platform.parse("linux/amd64"))
    assert f"{doc.size - 7}" in caught.value.message and f"{doc.size}" in caught.value.message


def test_unpack_checks_diff_ids(tmp_path: Path) -> None:
    raw = _tar("etc/hello", b"hi\n")
    blob = tmp_path / "layer.gz"
    blob.write_bytes(gzip.compress(raw))
    unpack(tmp_path / "ok", [("l1", blob, mt.OCI_LAYER_GZIP)], diff_ids=[Digest.of(raw)])
    assert (tmp_path / "ok/etc/hello").read_bytes() == b"hi\n"
    with pytest.raises(DigestMismatch, match="diff_id"):
        unpack(tmp_path / "bad", [("l1", blob, mt.OCI_LAYER_GZIP)], diff_ids=[Digest.of(b"x")])


def test_trailing_bytes_after_the_tar_count_in_the_diff_id(tmp_path: Path) -> None:
    raw = _tar("a", b"a") + b"\0" * 10240 + b"hidden after the end of the archive"
    blob = tmp_path / "layer"
    blob.write_bytes(raw)
    unpack(tmp_path / "r", [("l1", blob, mt.OCI_LAYER)], diff_ids=[Digest.of(raw)])
    with pytest.raises(DigestMismatch):
        unpack(tmp_path / "r2", [("l1", blob, mt.OCI_LAYER)], diff_ids=[Digest.of(raw[:-3])])


def _swap_layer(store: Layout, tmp_path: Path, diff_ids_count: int = 1) -> Descriptor:
    """An image whose layer is not the one its config's diff_ids names."""
    image = write_image(store, tmp_path)
    amd = image.platforms["amd64"]
    evil = gzip.compress(_tar("etc/evil", b"swapped\n"))
    layer = Descriptor(mt.OCI_LAYER_GZIP, store.put_blob(evil), len(evil))
    config_doc = store.read_document(amd.config)
    obj = json.loads(config_doc.data)
    obj["rootfs"]["diff_ids"] = obj["rootfs"]["diff_ids"] * diff_ids_count
    data = json.dumps(obj).encode()
    config = Descriptor(mt.OCI_CONFIG, store.put_blob(data), len(data))
    return store.put_document(Manifest(config, (layer,)).to_document())


@pytest.mark.parametrize("count", [1, 2], ids=["other-layer", "count-differs"])
def test_an_image_whose_layers_are_not_its_diff_ids_is_not_unpacked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    store = Layout.open(tmp_path / "store", create=True)
    desc = _swap_layer(store, tmp_path, count)
    manifest = Manifest.parse(store.read_document(desc))
    with pytest.raises(DigestMismatch, match="diff_id"):
        rootfs.unpacked(store, desc.digest, manifest)
    assert not rootfs.cached_path(desc.digest).exists()
    assert [p.name for p in rootfs.cache_dir().iterdir() if not p.name.endswith(".lock")] == []
