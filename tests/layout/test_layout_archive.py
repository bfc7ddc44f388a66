"""export_tar / import_tar: the ``oci-archive`` form of a layout."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from layout_image import Image

from manyarch.errors import DigestMismatch, LayoutError
from manyarch.layout import Layout, export_tar, import_archive


def _tree(layout: Layout) -> dict[str, bytes]:
    return {
        str(p.relative_to(layout.path)): p.read_bytes()
        for p in sorted(layout.path.rglob("*"))
        if p.is_file() and p.name not in (".lock", ".gc-lock")
    }


def test_round_trip(image: Image, tmp_path: Path) -> None:
    layout = image.layout
    layout.tag("multi", image.index)
    layout.tag("amd64", image.platforms["amd64"].manifest)
    archive = tmp_path / "image.tar"
    export_tar(layout, archive)

    copy = import_archive(archive, tmp_path / "copy")
    assert copy.tags() == layout.tags()
    assert _tree(copy) == _tree(layout)
    assert copy.verify() == []
    again = io.BytesIO()
    export_tar(copy, again)
    assert again.getvalue() == archive.read_bytes()

    # Importing into a layout that has other tags merges; same names are replaced.
    other = Layout.open(tmp_path / "other", create=True)
    kept = other.put_document(layout.read_document(image.platforms["arm64"].manifest))
    other.put_blob(layout.read_blob(image.platforms["arm64"].config.digest))
    other.put_blob(layout.read_blob(image.platforms["arm64"].layer.digest))
    other.tag("arm64", kept)
    other.tag("multi", kept)
    with open(archive, "rb") as f:
        import_archive(f, other.path)
    assert dict(other.tags()) == {
        "arm64": kept,
        "multi": image.index,
        "amd64": image.platforms["amd64"].manifest,
    }
    assert other.verify() == []


def test_export_is_deterministic_and_sorted(image: Image, tmp_path: Path) -> None:
    image.layout.tag("multi", image.index)
    (image.layout.path / "blobs" / "sha256" / ".tmp-partial").write_bytes(b"x")
    first = tmp_path / "a.tar"
    export_tar(image.layout, first)
    buf = io.BytesIO()
    export_tar(image.layout, buf)
    assert buf.getvalue() == first.read_bytes()
    with tarfile.open(first) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names[:2] == ["blobs", "blobs/sha256"]
    assert names[-2:] == ["index.json", "oci-layout"]
    assert not any(".tmp-" in n or "lock" in n for n in names)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert len(names) == 2 + 7 + 2  # dirs, 7 blobs, index.json, oci-layout


def test_export_refuses_a_corrupt_blob(image: Image, tmp_path: Path) -> None:
    image.layout.tag("multi", image.index)
    image.layout.blob_path(image.platforms["amd64"].layer.digest).write_bytes(b"rot")
    dest = tmp_path / "out.tar"
    with pytest.raises(DigestMismatch):
        export_tar(image.layout, dest)
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def _archive(entries: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


LAYOUT_MARKER = b'{"imageLayoutVersion":"1.0.0"}'
EMPTY_INDEX = b'{"schemaVersion":2,"manifests":[]}'


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"index.json": EMPTY_INDEX}, "not an OCI archive"),
        ({"oci-layout": LAYOUT_MARKER}, "no index.json"),
        ({"oci-layout": b'{"imageLayoutVersion":"9"}', "index.json": EMPTY_INDEX}, "'9'"),
        ({"oci-layout": LAYOUT_MARKER, "index.json": b"[]"}, "not a valid image index"),
        ({"../evil": b"x"}, "leaves the archive root"),
        ({"blobs/sha256/abc": b"x"}, "not named by a digest"),
        (
            {
                "oci-layout": LAYOUT_MARKER,
                "index.json": b'{"schemaVersion":2,"manifests":[{"mediaType":"'
                b"application/vnd.oci.image.manifest.v1+json"
                b'","digest":"sha256:' + b"a" * 64 + b'","size":3}]}',
            },
            "incomplete",
        ),
    ],
)
def test_import_refuses_a_bad_archive(
    tmp_path: Path, entries: dict[str, bytes], message: str
) -> None:
    with pytest.raises(LayoutError, match=message):
        import_archive(_archive(entries), tmp_path / "dest")
    assert Layout.open(tmp_path / "dest").tags() == []


def test_import_verifies_blobs_by_name(tmp_path: Path) -> None:
    wrong = "blobs/sha256/" + "0" * 64
    archive = _archive({"oci-layout": LAYOUT_MARKER, "index.json": EMPTY_INDEX, wrong: b"data"})
    with pytest.raises(DigestMismatch):
        import_archive(archive, tmp_path / "dest")
    assert list((tmp_path / "dest" / "blobs" / "sha256").iterdir()) == []


def test_skopeo_reads_our_archive(image: Image, tmp_path: Path) -> None:
    image.layout.tag("multi", image.index)
    archive = tmp_path / "image.tar"
    export_tar(image.layout, archive)
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci-archive:{archive}:multi"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    assert raw == image.index_bytes
    assert json.loads(raw)["manifests"][1]["platform"]["architecture"] == "arm64"
