"""The registry client against the real distribution registry (and a fault-injecting proxy)."""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, urlparse

import pytest

from manyarch.errors import DigestMismatch, NotFound, RegistryError
from manyarch.oci import Descriptor, Digest, Document, Index, Manifest, Platform, Reference
from manyarch.oci import mediatypes as mt
from manyarch.registry import RegistryClient, RegistryOptions, run_parallel
from tests.helpers.faults import FaultProxy
from tests.helpers.registry_server import RegistryServer

pytestmark = pytest.mark.integration

FAST = RegistryOptions(backoff=0.01, backoff_max=0.05)


def repo(host: str, tag: str = "latest") -> Reference:
    """A fresh repository on ``host`` (tests never share one)."""
    return Reference.parse(f"{host}/test/{uuid.uuid4().hex[:10]}:{tag}")


def blob(data: bytes, media_type: str = mt.OCI_LAYER_GZIP) -> Descriptor:
    return Descriptor(media_type, Digest.of(data), len(data))


def opener(data: bytes) -> Callable[[], BinaryIO]:
    return lambda: io.BytesIO(data)


def push_image(client: RegistryClient, ref: Reference, seed: bytes) -> tuple[Document, list[bytes]]:
    """Push a config, two layers and a manifest; return the manifest and the blobs."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed.hex()}).encode()
    layers = [os.urandom(3000) + seed, os.urandom(5000) + seed]
    config_desc = blob(config, mt.OCI_CONFIG)
    descs = [blob(x) for x in layers]
    for desc, data in zip([config_desc, *descs], [config, *layers], strict=True):
        assert client.push_blob(ref, desc, opener(data)) is True
    doc = Manifest(config_desc, tuple(descs)).to_document()
    assert client.put_manifest(ref, doc) == doc.digest
    return doc, [config, *layers]


@pytest.fixture
def client() -> Iterator[RegistryClient]:
    with RegistryClient(FAST) as c:
        yield c


def test_ping(registry: RegistryServer, client: RegistryClient) -> None:
    client.ping(registry.host)


def test_push_and_pull_image_and_index(registry: RegistryServer, client: RegistryClient) -> None:
    ref = repo(registry.host)
    amd64, amd64_blobs = push_image(client, ref.with_tag("amd64"), b"amd64")
    arm64, _ = push_image(client, ref.with_tag("arm64"), b"arm64")
    # children before the index: the registry checks they exist
    index = Index(
        (
            Descriptor.of(amd64, platform=Platform.parse("linux/amd64")),
            Descriptor.of(arm64, platform=Platform.parse("linux/arm64")),
        )
    ).to_document()
    client.put_manifest(ref, index)

    got = client.get_manifest(ref)
    assert (got.data, got.media_type, got.digest) == (index.data, mt.OCI_INDEX, index.digest)
    by_digest = client.get_manifest(ref.with_digest(amd64.digest))
    assert by_digest.data == amd64.data and by_digest.media_type == mt.OCI_MANIFEST
    assert client.head_manifest(ref) == Descriptor.of(index)

    manifest = Manifest.parse(by_digest)
    assert client.open_blob_bytes(ref, manifest.config) == amd64_blobs[0]
    for desc, data in zip(manifest.layers, amd64_blobs[1:], strict=True):
        sink = io.BytesIO()
        client.fetch_blob(ref, desc, sink)
        assert sink.getvalue() == data


def test_docker_media_types_keep_their_bytes(
    registry: RegistryServer, client: RegistryClient
) -> None:
    ref = repo(registry.host)
    config = b'{"architecture":"arm64","os":"linux"}'
    desc = blob(config, mt.DOCKER_CONFIG)
    client.push_blob(ref, desc, opener(config))
    # pretty-printed on purpose: the digest is of these exact bytes
    doc = Document(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.DOCKER_MANIFEST,
                "config": desc.to_json(),
                "layers": [],
            },
            indent=3,
        ).encode(),
        mt.DOCKER_MANIFEST,
    )
    client.put_manifest(ref, doc)
    got = client.get_manifest(ref)
    assert got == doc and got.digest == doc.digest


def test_head_skips_existing_blobs(registry: RegistryServer) -> None:
    proxy = FaultProxy(registry.host)
    try:
        with RegistryClient(FAST) as client:
            ref = repo(proxy.host)
            data = os.urandom(1000)
            assert client.push_blob(ref, blob(data), opener(data)) is True
            before = len(proxy.seen)
            assert client.has_blob(ref, blob(data).digest)
            assert client.push_blob(ref, blob(data), opener(data)) is False
            assert [m for m, _ in proxy.seen[before:]] == ["HEAD", "HEAD"]
    finally:
        proxy.stop()


def test_missing_things(registry: RegistryServer, client: RegistryClient) -> None:
    ref = repo(registry.host)
    digest = Digest.of(b"nothing")
    assert not client.has_blob(ref, digest)
    assert client.head_manifest(ref) is None
    with pytest.raises(NotFound):
        client.get_manifest(ref)
    with pytest.raises(NotFound):
        client.open_blob_bytes(ref, Descriptor(mt.OCI_CONFIG, digest, 7))
    with pytest.raises(NotFound):
        client.list_tags(ref)


def test_cross_repository_mount(registry: RegistryServer) -> None:
    proxy = FaultProxy(registry.host)
    try:
        with RegistryClient(FAST) as client:
            source, target = repo(proxy.host), repo(proxy.host)
            data = os.urandom(2000)
            client.push_blob(source, blob(data), opener(data))
            before = len(proxy.seen)
            assert client.push_blob(target, blob(data), opener(data), mount_from=source) is False
            requests = proxy.seen[before:]
            assert [m for m, _ in requests] == ["HEAD", "POST"]
            query = parse_qs(urlparse(requests[1][1]).query)
            assert query == {"mount": [str(blob(data).digest)], "from": [source.repository]}
            assert client.open_blob_bytes(target, blob(data)) == data

            # a source without the blob: the registry refuses (202) and we upload
            other = repo(proxy.host)
            fresh = os.urandom(100)
            assert client.push_blob(other, blob(fresh), opener(fresh), mount_from=target)
            assert client.open_blob_bytes(other, blob(fresh)) == fresh
    finally:
        proxy.stop()


def test_chunked_upload_above_threshold(registry: RegistryServer) -> None:
    proxy = FaultProxy(registry.host)
    try:
        options = RegistryOptions(monolithic_max=4096, chunk_size=3000)
        with RegistryClient(options) as client:
            ref = repo(proxy.host)
            data = os.urandom(10_000)
            assert client.push_blob(ref, blob(data), opener(data))
            methods = proxy.methods("/blobs/")
            assert methods.count("PATCH") == 4 and methods[-1] == "PUT"
            small = os.urandom(4096)
            client.push_blob(ref, blob(small), opener(small))
            assert proxy.methods("/blobs/").count("PATCH") == 4  # monolithic: no PATCH
            assert client.open_blob_bytes(ref, blob(data)) == data
            assert client.open_blob_bytes(ref, blob(small)) == small
    finally:
        proxy.stop()


def test_wrong_size_from_opener_is_refused(
    registry: RegistryServer, client: RegistryClient
) -> None:
    ref = repo(registry.host)
    data = os.urandom(100)
    with pytest.raises(DigestMismatch):
        client.push_blob(ref, blob(data), opener(data + b"extra"))
    assert not client.has_blob(ref, blob(data).digest)


def test_tag_listing_with_pagination(registry: RegistryServer) -> None:
    proxy = FaultProxy(registry.host, paginate_tags=True)
    try:
        with RegistryClient(FAST) as client:
            ref = repo(proxy.host)
            doc, _ = push_image(client, ref.with_tag("t0"), b"tags")
            tags = ["t0", "t1", "t2", "t3", "t4"]
            for tag in tags[1:]:
                client.put_manifest(ref.with_tag(tag), doc)
            assert sorted(client.list_tags(ref)) == tags
            before = len(proxy.seen)
            assert client.list_tags(ref, page_size=2) == tags
            pages = [p for _, p in proxy.seen[before:] if "/tags/list" in p]
            assert len(pages) == 3 and "last=t1" in pages[1]
    finally:
        proxy.stop()


def test_delete_manifest(registry: RegistryServer, client: RegistryClient) -> None:
    ref = repo(registry.host)
    doc, _ = push_image(client, ref, b"delete")
    client.delete_manifest(ref, doc.digest)
    assert client.head_manifest(ref.with_digest(doc.digest)) is None
    with pytest.raises(NotFound):
        client.get_manifest(ref)
    with pytest.raises(NotFound):
        client.delete_manifest(ref, doc.digest)


def test_put_manifest_by_digest_checks_the_digest(
    registry: RegistryServer, client: RegistryClient
) -> None:
    ref = repo(registry.host)
    doc, _ = push_image(client, ref, b"bydigest")
    assert client.put_manifest(ref.with_digest(doc.digest), doc) == doc.digest
    with pytest.raises(DigestMismatch):
        client.put_manifest(ref.with_digest(Digest.of(b"other")), doc)


def test_manifest_with_missing_blob_is_refused(
    registry: RegistryServer, client: RegistryClient
) -> None:
    ref = repo(registry.host)
    doc = Manifest(blob(b"{}", mt.OCI_CONFIG)).to_document()
    with pytest.raises(RegistryError) as info:
        client.put_manifest(ref, doc)
    assert "MANIFEST_BLOB_UNKNOWN" in info.value.codes and not info.value.temporary


# -- faults -----------------------------------------------------------------------


def test_lying_proxy_leaves_nothing(faulty: FaultProxy, tmp_path: Path) -> None:
    with RegistryClient(FAST) as client:
        ref = repo(faulty.host)
        data = os.urandom(5000)
        client.push_blob(ref, blob(data), opener(data))
        faulty.inject("corrupt", method="GET", path="/blobs/sha256:")
        target = tmp_path / "blob"
        with pytest.raises(DigestMismatch):
            client.download_blob(ref, blob(data), target)
        assert list(tmp_path.iterdir()) == []
        client.download_blob(ref, blob(data), target)
        assert target.read_bytes() == data and len(list(tmp_path.iterdir())) == 1


def test_lying_proxy_on_manifest_by_digest(faulty: FaultProxy) -> None:
    with RegistryClient(FAST) as client:
        ref = repo(faulty.host)
        doc, _ = push_image(client, ref, b"manifest-lie")
        faulty.inject("corrupt", method="GET", path="/manifests/")
        with pytest.raises(DigestMismatch):
            client.get_manifest(ref.with_digest(doc.digest))


@pytest.mark.parametrize("fault", ["500", "503", "429", "drop"])
def test_faults_are_retried(faulty: FaultProxy, fault: str) -> None:
    with RegistryClient(FAST) as client:
        ref = repo(faulty.host)
        # every kind of request fails once (drop: cut in the middle of the body)
        for method in ("HEAD", "POST", "PUT", "GET"):
            faulty.inject(fault, method=method, path="/blobs/")
        faulty.inject(fault, method="PUT", path="/manifests/")
        faulty.inject(fault, method="GET", path="/manifests/")
        doc, blobs = push_image(client, ref, fault.encode())
        got = client.get_manifest(ref)
        assert got.digest == doc.digest
        for desc, data in zip(Manifest.parse(got).layers, blobs[1:], strict=True):
            sink = io.BytesIO()
            client.fetch_blob(ref, desc, sink)
            assert Digest.of(sink.getvalue()) == desc.digest and sink.getvalue() == data
    assert {a for a, _, _ in faulty.fired} == {fault}
    assert len(faulty.fired) >= 4


def test_dropped_blob_resumes_with_range(faulty: FaultProxy) -> None:
    with RegistryClient(FAST) as client:
        ref = repo(faulty.host)
        data = os.urandom(200_000)
        client.push_blob(ref, blob(data), opener(data))
        faulty.inject("drop", method="GET", path="/blobs/sha256:", times=2)
        sink = io.BytesIO()
        client.fetch_blob(ref, blob(data), sink)
        assert sink.getvalue() == data
        assert len(faulty.fired) == 2


def test_retries_are_bounded(faulty: FaultProxy) -> None:
    with RegistryClient(RegistryOptions(retries=2, backoff=0.01, backoff_max=0.02)) as client:
        ref = repo(faulty.host)
        client.ping(faulty.host)
        faulty.inject("503", path="/manifests/", times=10)
        with pytest.raises(RegistryError) as info:
            client.get_manifest(ref)
        assert info.value.status == 503 and info.value.temporary
        assert info.value.codes == ["UNAVAILABLE"]
        assert len(faulty.fired) == 3


def test_run_parallel_pushes_and_first_error_wins(
    registry: RegistryServer, client: RegistryClient
) -> None:
    ref = repo(registry.host)
    datas = [os.urandom(1000 + i) for i in range(8)]
    tasks: list[Callable[[], bool]] = [
        functools.partial(client.push_blob, ref, blob(d), opener(d)) for d in datas
    ]
    results = run_parallel(tasks, jobs=4)
    assert results == [True] * 8

    ran: list[int] = []

    def fail() -> bool:
        raise NotFound("boom")

    def slow(i: int) -> bool:
        ran.append(i)
        return True

    tasks = [fail] + [functools.partial(slow, i) for i in range(50)]
    with pytest.raises(NotFound, match="boom"):
        run_parallel(tasks, jobs=2)
    assert len(ran) < 50


# -- skopeo as a peer --------------------------------------------------------------

needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")


@needs_skopeo
def test_skopeo_reads_our_exact_bytes(registry: RegistryServer, client: RegistryClient) -> None:
    ref = repo(registry.host)
    doc, _ = push_image(client, ref, b"skopeo")
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert out == doc.data


@needs_skopeo
@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed")
def test_we_read_what_skopeo_pushes(
    registry: RegistryServer, client: RegistryClient, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    subprocess.run(["umoci", "init", "--layout", str(layout)], check=True, timeout=60)
    subprocess.run(["umoci", "new", "--image", f"{layout}:v1"], check=True, timeout=60)
    ref = repo(registry.host, "v1")
    subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{ref}"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    doc = client.get_manifest(ref)
    manifest = Manifest.parse(doc)
    config = json.loads(client.open_blob_bytes(ref, manifest.config))
    assert config["rootfs"]["type"] == "layers"
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert raw == doc.data
