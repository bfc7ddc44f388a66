"""An ``oci-layout://`` path the user may not read is an error, not a traceback.

The tests run as root, to whom no mode is closed: manyarch runs here without
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (``setpriv``), as an ordinary user would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from manyarch.layout import Layout
from tests.layout.layout_image import write_image

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)


def _as_user(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    return subprocess.run(
        [*cmd, sys.executable, "-m", "manyarch", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[Layout]:
    lay = Layout.open(tmp_path / "oci", create=True)
    image = write_image(lay, tmp_path)
    lay.tag("v1", image.index)
    yield lay
    for p in [lay.path, *lay.path.rglob("*")]:
        os.chmod(p, 0o755, follow_symlinks=False)


def _close(layout: Layout, what: str) -> None:
    if what == "directory":
        os.chmod(layout.path, 0)
    elif what == "index.json":
        os.chmod(layout.path / "index.json", 0)
    elif what == "oci-layout":
        os.chmod(layout.path / "oci-layout", 0)
    else:
        for blob in (layout.path / "blobs" / "sha256").iterdir():
            os.chmod(blob, 0)


@pytest.mark.parametrize("what", ["directory", "oci-layout", "index.json", "blobs"])
def test_inspect_of_an_unreadable_layout(layout: Layout, what: str) -> None:
    _close(layout, what)
    r = _as_user(dict(os.environ), "imagetools", "inspect", f"oci-layout://{layout.path}:v1")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: ") and "ermission denied" in r.stderr, r.stderr


@pytest.mark.parametrize("what", ["directory", "blobs"])
def test_build_from_an_unreadable_layout(
    layout: Layout, tmp_path: Path, isolated_build: Path, what: str
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM oci-layout://{layout.path}:v1\nRUN true\n")
    _close(layout, what)
    r = _as_user(dict(os.environ), "build", "--platform", "linux/amd64", str(ctx))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert "ermission denied" in r.stderr, r.stderr
