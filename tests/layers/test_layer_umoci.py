"""umoci, an independent implementation, unpacks a stack of our layers (whiteouts included)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from layertrees import build_tree, tree_state

from manyarch.layers import LayerInfo, Snapshot, write_diff_layer, write_layer_from_dir
from manyarch.oci import mediatypes

pytestmark = pytest.mark.integration


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layout(layout: Path, layers: list[tuple[LayerInfo, bytes]]) -> None:
    """A minimal OCI image layout, written by hand to stay independent of manyarch.layout."""
    (layout / "blobs/sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [str(i.diff_id) for i, _ in layers]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {
            "mediaType": mediatypes.OCI_CONFIG,
            **_blob(layout, json.dumps(config).encode()),
        },
        "layers": [{"mediaType": i.media_type, **_blob(layout, data)} for i, data in layers],
    }
    desc = _blob(layout, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": mediatypes.OCI_MANIFEST,
                **desc,
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))


def test_umoci_unpacks_our_layers(tmp_path: Path) -> None:
    umoci = shutil.which("umoci")
    if umoci is None:
        pytest.skip("umoci is not installed")
    root = build_tree(tmp_path / "root")
    base = io.BytesIO()
    base_info = write_layer_from_dir(root, base, epoch=1_700_000_000)
    before = Snapshot.take(root)
    shutil.rmtree(root / "usr/share")
    (root / "etc/hostname").write_text("changed\n")
    (root / "new").write_text("new\n")
    diff = io.BytesIO()
    diff_info = write_diff_layer(root, before, diff)
    assert diff_info is not None
    layout = tmp_path / "layout"
    _layout(layout, [(base_info, base.getvalue()), (diff_info, diff.getvalue())])
    bundle = tmp_path / "bundle"
    subprocess.run(
        [umoci, "raw", "unpack", "--image", f"{layout}:latest", str(bundle)],
        check=True,
        capture_output=True,
    )
    assert tree_state(bundle, times=False) == tree_state(root, times=False)
