"""Layout: opening, blobs, documents, tags, walk, gc and verify."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from layout_image import Image

from manyarch.errors import DigestMismatch, InvalidReference, LayoutError, NotFound
from manyarch.layout import Layout, walk
from manyarch.oci import Descriptor, Digest, Document, Index, mediatypes
from manyarch.oci.manifest import REF_NAME


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def blob_files(layout: Layout) -> list[str]:
    return [f for f in files_under(layout.path / "blobs")]


# -- opening ----------------------------------------------------------------


def test_create_writes_the_spec_files(tmp_path: Path) -> None:
    layout = Layout.open(tmp_path / "new" / "oci", create=True)
    assert json.loads((layout.path / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout.path / "index.json").read_bytes())
    assert index == {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [],
    }
    assert (layout.path / "blobs" / "sha256").is_dir()
    assert Layout.open(layout.path).index() == Index()
    assert layout.verify() == []


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no oci-layout"),
        (lambda p: (p / "oci-layout").write_text("{not json"), "not JSON"),
        (lambda p: (p / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}'), "2.0.0"),
        (lambda p: (p / "oci-layout").write_text("[]"), "unsupported"),
        (lambda p: (p / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}'), "index.json"),
    ],
)
def test_open_refuses_a_bad_layout(
    tmp_path: Path, setup: Callable[[Path], object], message: str
) -> None:
    setup(tmp_path)
    with pytest.raises(LayoutError, match=message) as e:
        Layout.open(tmp_path)
    assert str(tmp_path) in e.value.message


def test_bad_index_json_is_a_layout_error(layout: Layout) -> None:
    (layout.path / "index.json").write_text('{"schemaVersion": 2, "manifests": [{"size": 1}]}')
    with pytest.raises(LayoutError, match=r"index\.json is not a valid image index"):
        layout.index()
    assert any("index.json" in p for p in layout.verify())


def test_create_refuses_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(LayoutError, match=r"not empty .*notes\.txt"):
        Layout.open(tmp_path, create=True)
    assert os.listdir(tmp_path) == ["notes.txt"]


# -- blobs --------------------------------------------------------------------


@given(data=st.binary(max_size=3000))
@settings(max_examples=30, deadline=None)
def test_put_then_read_round_trips(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    layout = Layout.open(tmp_path_factory.mktemp("l"), create=True)
    digest = layout.put_blob(data)
    assert digest == Digest.of(data)
    assert layout.has_blob(digest)
    assert layout.blob_path(digest) == layout.path / "blobs" / "sha256" / digest.hex
    assert layout.read_blob(digest) == data
    with layout.open_blob(digest) as f:
        assert f.read() == data
    assert layout.put_stream([data[:7], data[7:]], digest, len(data)) == (digest, len(data))
    assert layout.verify() == []


def _chunks(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), 5):
        yield data[i : i + 5]


def _put_file(layout: Layout, data: bytes, expected: Digest) -> object:
    src = layout.path.parent / "incoming.bin"
    src.write_bytes(data)
    return layout.put_file(src, expected)


def _put_writer(layout: Layout, data: bytes, expected: Digest) -> object:
    with layout.writer() as w:
        w.write(data)
        return w.commit(expected)


PUTS: list[Callable[[Layout, bytes, Digest], object]] = [
    lambda la, data, d: la.put_blob(data, d),
    lambda la, data, d: la.put_stream(_chunks(data), d),
    lambda la, data, d: la.put_stream(io.BytesIO(data), d, len(data)),
    _put_file,
    _put_writer,
]


@pytest.mark.parametrize("put", PUTS, ids=["bytes", "chunks", "fileobj", "file", "writer"])
def test_a_mismatch_stores_nothing(layout: Layout, put: Callable[..., object]) -> None:
    data = b"the real content" * 100
    wrong = Digest.of(b"something else")
    before = blob_files(layout)
    with pytest.raises(DigestMismatch) as e:
        put(layout, data, wrong)
    assert str(wrong) in e.value.message and str(Digest.of(data)) in e.value.message
    assert blob_files(layout) == before  # no blob, no temp file left
    assert not layout.has_blob(Digest.of(data)) and not layout.has_blob(wrong)


@pytest.mark.parametrize("put", PUTS, ids=["bytes", "chunks", "fileobj", "file", "writer"])
def test_every_put_stores_the_blob(layout: Layout, put: Callable[..., object]) -> None:
    data = os.urandom(5000)
    put(layout, data, Digest.of(data))
    assert layout.read_blob(Digest.of(data)) == data
    assert blob_files(layout) == [f"sha256/{Digest.of(data).hex}"]


def test_put_stream_checks_the_size_and_stops_reading(layout: Layout) -> None:
    def endless() -> Iterator[bytes]:
        while True:
            yield b"x" * 1024

    with pytest.raises(DigestMismatch, match="expected 4096"):
        layout.put_stream(endless(), size=4096)
    with pytest.raises(DigestMismatch, match="3 bytes, expected 4"):
        layout.put_stream([b"abc"], Digest.of(b"abc"), size=4)
    assert blob_files(layout) == []


def test_put_stream_sha512(layout: Layout) -> None:
    data = b"sha512 content"
    digest = Digest.of(data, "sha512")
    assert layout.put_stream([data], digest) == (digest, len(data))
    assert layout.blob_path(digest).parent.name == "sha512"
    assert layout.read_blob(digest) == data
    assert layout.verify() == []


def test_writer_discards_on_exception_and_without_commit(layout: Layout) -> None:
    with pytest.raises(RuntimeError), layout.writer() as w:
        w.write(b"half")
        assert w.temp_path.exists()
        raise RuntimeError("boom")
    with layout.writer() as w:
        w.write(b"never committed")
    assert blob_files(layout) == []


def test_put_file_hands_the_file_over(layout: Layout, tmp_path: Path) -> None:
    src = tmp_path / "layer.tar.gz"
    src.write_bytes(b"layer bytes")
    digest = layout.put_file(src)
    assert digest == Digest.of(b"layer bytes")
    assert not src.exists()
    assert layout.read_blob(digest) == b"layer bytes"
    assert oct(layout.blob_path(digest).stat().st_mode & 0o777) == oct(0o644)


def test_reading_a_missing_or_corrupt_blob(layout: Layout) -> None:
    missing = Digest.of(b"absent")
    with pytest.raises(NotFound, match=str(missing)):
        layout.read_blob(missing)
    with pytest.raises(NotFound):
        layout.open_blob(missing)
    digest = layout.put_blob(b"good")
    layout.blob_path(digest).write_bytes(b"evil")
    with pytest.raises(DigestMismatch, match=str(Digest.of(b"evil"))):
        layout.read_blob(digest)


def test_read_document_checks_the_size(layout: Layout) -> None:
    doc = Document(b'{"schemaVersion":2}', mediatypes.OCI_INDEX)
    desc = layout.put_document(doc)
    assert desc == Descriptor(mediatypes.OCI_INDEX, doc.digest, doc.size)
    assert layout.read_document(desc) == doc
    with pytest.raises(DigestMismatch, match="is 19 bytes, expected 20"):
        layout.read_document(Descriptor(mediatypes.OCI_INDEX, doc.digest, 20))


# -- tags ---------------------------------------------------------------------


def test_tag_resolve_list_untag(image: Image) -> None:
    layout = image.layout
    amd64 = image.platforms["amd64"].manifest
    layout.tag("multi", image.index)
    layout.tag("amd64", amd64)
    assert layout.tags() == [("multi", image.index), ("amd64", amd64)]
    assert layout.resolve("multi") == image.index
    assert layout.resolve(str(image.index.digest)) == image.index
    # A digest inside an index resolves with its platform.
    arm64 = image.platforms["arm64"].manifest
    assert layout.resolve(str(arm64.digest)) == arm64
    raw = json.loads((layout.path / "index.json").read_bytes())
    assert raw["mediaType"] == mediatypes.OCI_INDEX
    assert [m["annotations"][REF_NAME] for m in raw["manifests"]] == ["multi", "amd64"]

    # Re-tagging replaces the entry in place.
    layout.tag("multi", arm64)
    assert layout.tags() == [("multi", arm64), ("amd64", amd64)]
    assert len(layout.index().manifests) == 2

    layout.untag("multi")
    assert layout.tags() == [("amd64", amd64)]
    assert layout.resolve(None) == amd64
    with pytest.raises(NotFound, match="'multi'") as e:
        layout.untag("multi")
    assert e.value.hint == "tags available: amd64"


def test_resolve_errors_name_what_exists(image: Image) -> None:
    layout = image.layout
    with pytest.raises(NotFound, match="holds no image") as empty:
        layout.resolve(None)
    assert f"oci-layout://{layout.path}:TAG" in (empty.value.hint or "")
    layout.tag("a", image.index)
    layout.tag("b", image.platforms["amd64"].manifest)
    with pytest.raises(NotFound, match="holds 2 images") as e:
        layout.resolve(None)
    assert e.value.hint == "tags available: a, b"
    with pytest.raises(NotFound, match="'c'") as e:
        layout.resolve("c")
    assert e.value.hint == "tags available: a, b"
    with pytest.raises(NotFound, match="not in the layout"):
        layout.resolve(str(Digest.of(b"nope")))


def test_tag_needs_the_content(layout: Layout) -> None:
    ghost = Descriptor(mediatypes.OCI_MANIFEST, Digest.of(b"ghost"), 5)
    with pytest.raises(NotFound, match="manifest"):
        layout.tag("ghost", ghost)
    assert layout.tags() == []


@pytest.mark.parametrize(
    "name", ["", "with space", "-lead", "trail-", "a//b", "a/", "ü", "a\nb", "a---b"]
)
def test_invalid_tag_names(image: Image, name: str) -> None:
    with pytest.raises(InvalidReference):
        image.layout.tag(name, image.index)


@pytest.mark.parametrize(
    "name", ["latest", "v1.2.3", "a--b", "docker.io/library/python:3.12", "x@y+z_w"]
)
def test_valid_tag_names(image: Image, name: str) -> None:
    image.layout.tag(name, image.index)
    assert image.layout.resolve(name) == image.index


def test_tag_keeps_a_foreign_index_json_usable(image: Image) -> None:
    # skopeo and older tools write index.json without mediaType.
    entry = image.index.to_json()
    (image.layout.path / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "manifests": [entry]})
    )
    image.layout.tag("t", image.platforms["arm64"].manifest)
    raw = json.loads((image.layout.path / "index.json").read_bytes())
    assert raw["mediaType"] == mediatypes.OCI_INDEX
    assert raw["manifests"][0] == entry


def _tag_many(path: str, prefix: str, desc_json: dict[str, object]) -> None:
    layout = Layout.open(path)
    desc = Descriptor.from_json(desc_json)
    for i in range(50):
        layout.tag(f"{prefix}{i}", desc)


def test_two_processes_tagging_at_once_lose_nothing(image: Image) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_tag_many, args=(str(image.layout.path), prefix, image.index.to_json()))
        for prefix in ("a", "b")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    names = sorted(name for name, _ in image.layout.tags())
    assert names == sorted(f"{p}{i}" for p in "ab" for i in range(50))
    assert image.layout.verify() == []


# -- walk -----------------------------------------------------------------------


def test_walk_orders_and_dedupes(image: Image) -> None:
    layout = image.layout
    amd64, arm64 = image.platforms["amd64"], image.platforms["arm64"]
    # The amd64 manifest twice (as buildx does for a platform and its alias): listed once.
    doubled = Index(manifests=(amd64.manifest, arm64.manifest, amd64.manifest.with_platform(None)))
    top = layout.put_document(doubled.to_document())
    pre = list(walk(layout, top))
    assert pre[0] == top
    assert [d.digest for d in pre] == [
        top.digest,
        amd64.manifest.digest,
        amd64.config.digest,
        amd64.layer.digest,
        arm64.manifest.digest,
        arm64.config.digest,
        arm64.layer.digest,
    ]
    assert pre[1].platform == amd64.platform
    post = [d.digest for d in walk(layout, top, children_first=True)]
    assert post == [
        amd64.config.digest,
        amd64.layer.digest,
        amd64.manifest.digest,
        arm64.config.digest,
        arm64.layer.digest,
        arm64.manifest.digest,
        top.digest,
    ]


def test_walk_of_a_sparse_index(image: Image) -> None:
    arm64 = image.platforms["arm64"].manifest
    image.layout.blob_path(arm64.digest).unlink()
    with pytest.raises(NotFound):
        list(walk(image.layout, image.index))
    found = [d.digest for d in walk(image.layout, image.index, missing_ok=True)]
    assert arm64.digest in found
    assert image.platforms["arm64"].config.digest not in found


# -- gc ---------------------------------------------------------------------------


def test_gc_keeps_reachable_and_removes_orphans(image: Image) -> None:
    layout = image.layout
    layout.tag("multi", image.index)
    orphan = layout.put_blob(b"orphan")
    stale_temp = layout.path / "blobs" / "sha256" / ".tmp-crashed"
    stale_temp.write_bytes(b"partial")
    stale_index_temp = layout.path / ".tmp-index.json-crashed"
    stale_index_temp.write_bytes(b"{")
    reachable = {d.digest for d in walk(layout, image.index)}

    with layout.writer() as live:
        live.write(b"in progress")
        assert layout.gc() == [orphan]
        assert live.temp_path.exists()  # a live writer's temp file is kept
        live.commit()
    assert not stale_temp.exists() and not stale_index_temp.exists()
    assert all(layout.has_blob(d) for d in reachable)
    assert layout.verify() == []

    # Untagging makes everything collectable but the blob committed since.
    layout.untag("multi")
    removed = layout.gc()
    assert set(removed) == reachable | {Digest.of(b"in progress")}
    assert blob_files(layout) == []


LEASE_HOLDER = """
import sys
from manyarch.layout import Layout
layout = Layout.open(sys.argv[1])
with layout.lease():
    digest = layout.put_blob(b"not tagged yet")
    print("ready", flush=True)
    sys.stdin.readline()
"""


def test_gc_waits_for_a_lease(layout: Layout) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", LEASE_HOLDER, str(layout.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline() == b"ready\n"
        removed: list[list[Digest]] = []
        gc = threading.Thread(target=lambda: removed.append(layout.gc()))
        gc.start()
        gc.join(0.3)
        assert gc.is_alive(), "gc ran while a lease was held"
        assert layout.has_blob(Digest.of(b"not tagged yet"))
        proc.stdin.write(b"done\n")
        proc.stdin.flush()
        gc.join(10)
        assert removed == [[Digest.of(b"not tagged yet")]]
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()


def test_gc_keeps_what_a_sparse_index_still_reaches(image: Image) -> None:
    layout = image.layout
    layout.tag("multi", image.index)
    layout.blob_path(image.platforms["arm64"].manifest.digest).unlink()
    removed = set(layout.gc())
    arm64 = image.platforms["arm64"]
    assert removed == {arm64.config.digest, arm64.layer.digest}
    assert layout.has_blob(image.platforms["amd64"].layer.digest)


def test_gc_refuses_when_a_manifest_is_corrupt(image: Image) -> None:
    layout = image.layout
    layout.tag("multi", image.index)
    orphan = layout.put_blob(b"orphan")
    layout.blob_path(image.platforms["amd64"].manifest.digest).write_bytes(b"garbage")
    before = blob_files(layout)
    with pytest.raises(LayoutError, match="cannot collect garbage") as e:
        layout.gc()
    assert "nothing was removed" in (e.value.hint or "")
    assert blob_files(layout) == before and layout.has_blob(orphan)


# -- verify -------------------------------------------------------------------------


def test_verify_finds_corrupt_missing_and_stray_files(image: Image) -> None:
    layout = image.layout
    layout.tag("multi", image.index)
    assert layout.verify() == []
    amd64, arm64 = image.platforms["amd64"], image.platforms["arm64"]
    layout.blob_path(amd64.layer.digest).write_bytes(b"corrupted layer")
    layout.blob_path(arm64.config.digest).unlink()
    (layout.path / "blobs" / "sha256" / "README").write_text("stray")
    (layout.path / "blobs" / "sha256" / ".tmp-writer").write_text("ignored")
    problems = layout.verify()
    assert len(problems) == 3, problems
    assert any(
        f"sha256/{amd64.layer.digest.hex} is corrupt" in p
        and str(Digest.of(b"corrupted layer")) in p
        for p in problems
    )
    assert any(
        f"config {arm64.config.digest} is missing" in p and str(arm64.manifest.digest) in p
        for p in problems
    )
    assert any("README is not named by a digest" in p for p in problems)


def test_verify_finds_a_size_lie_and_a_missing_tagged_manifest(image: Image) -> None:
    layout = image.layout
    amd64 = image.platforms["amd64"].manifest
    layout.tag("liar", Descriptor(amd64.media_type, amd64.digest, amd64.size + 1))
    layout.tag("gone", image.platforms["arm64"].manifest)
    layout.blob_path(image.platforms["arm64"].manifest.digest).unlink()
    problems = layout.verify()
    assert any("tag 'liar' says" in p for p in problems), problems
    assert any("missing (referenced by tag 'gone')" in p for p in problems), problems
    assert len(problems) == 2


def test_blob_writer_rewinds_for_a_download_that_starts_over(tmp_path: Path) -> None:
    layout = Layout.open(tmp_path / "lay", create=True)
    good = b"the real blob"
    with layout.writer() as w:
        w.write(b"half of a dropped dow")
        assert w.seek(w.size) == w.size  # staying put is allowed
        assert w.seek(0) == 0 and w.truncate() == 0
        w.write(good)
        digest, size = w.commit(Digest.of(good), len(good))
    assert layout.read_blob(digest) == good and size == len(good)
    with layout.writer() as w, pytest.raises(io.UnsupportedOperation):
        w.write(b"abc")
        w.seek(1)


def test_writer_verified_elsewhere_still_checks_the_size(tmp_path: Path) -> None:
    layout = Layout.open(tmp_path / "lay", create=True)
    data = b"checked by the registry client while it streamed"
    with layout.writer(verified_elsewhere=True) as w:
        w.write(data)
        with pytest.raises(ValueError):
            w.commit()
    with layout.writer(verified_elsewhere=True) as w:
        w.write(data)
        with pytest.raises(DigestMismatch):
            w.commit(Digest.of(data), len(data) + 1)
    assert not layout.has_blob(Digest.of(data))
    with layout.writer(verified_elsewhere=True) as w:
        w.write(data)
        w.commit(Digest.of(data), len(data))
    assert layout.read_blob(Digest.of(data)) == data
