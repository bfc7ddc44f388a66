"""The seed's demo image (Dockerfile.fastapi, amd64 + arm64) in the session registry.

``demo_image`` builds it once with ``manyarch build`` from the ``python_base``
fixture (the arm64 ``pip install`` runs under QEMU: ~70 s cold) into an OCI
layout cached under the test cache (keyed on every input: the base's digest,
the Dockerfile, requirements.txt, app/ and the executor's code), then pushes it
to the session ``registry`` as ``fastapi-multiarch:latest``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from manyarch.images import LayoutSource, RegistrySink, copy
from manyarch.layout import Layout
from manyarch.oci.reference import Reference
from manyarch.registry import RegistryClient, RegistryOptions
from tests.helpers.base_fixture import PythonBase, base_cache_dir
from tests.helpers.registry_server import RegistryServer

ROOT = Path(__file__).resolve().parents[2]
DEMO_TAG = "latest"
DEMO_REPO = "fastapi-multiarch"


class DemoImage(NamedTuple):
    """The pushed demo image: ``ref`` (host:port/fastapi-multiarch:latest) and its index digest."""

    ref: str
    digest: str
    layout: Path


def _inputs_key(base: PythonBase) -> str:
    h = hashlib.sha256()
    h.update(Layout.open(base.layout).resolve(base.tag).digest.hex.encode())
    files = [ROOT / "Dockerfile.fastapi", ROOT / "requirements.txt"]
    files += sorted((ROOT / "app").rglob("*.py"))
    files += sorted((ROOT / "src" / "manyarch" / "build").rglob("*.py"))
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def build_demo(base: PythonBase, dest: Path, store: Path) -> None:
    """``manyarch build`` the demo for both platforms into the OCI layout ``dest``."""
    env = dict(os.environ, MANYARCH_STORE=str(store), SOURCE_DATE_EPOCH="1700000000")
    env["XDG_DATA_HOME"] = f"{store}-data"  # the build's unpacked base trees
    cmd = [
        sys.executable,
        "-m",
        "manyarch",
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "-f",
        str(ROOT / "Dockerfile.fastapi"),
        "--build-arg",
        f"PYTHON_IMAGE={base.ref}",
        "--progress",
        "plain",
        "--output",
        f"type=oci,dest={dest}",
        "-t",
        f"{DEMO_REPO}:{DEMO_TAG}",
        str(ROOT),
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"demo build failed ({r.returncode}):\n{r.stderr[-4000:]}")


@pytest.fixture(scope="session")
def demo_layout(python_base: PythonBase, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo image in an OCI layout (tag ``latest``), built once and cached."""
    cache = base_cache_dir().parent / "demo" / _inputs_key(python_base)
    layout = cache / "layout"
    if not (layout / "index.json").exists():
        tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        build_demo(python_base, tmp / "layout", tmp_path_factory.mktemp("demo-store"))
        shutil.rmtree(cache, ignore_errors=True)
        tmp.rename(cache)
    return layout


@pytest.fixture(scope="session")
def demo_image(demo_layout: Path, registry: RegistryServer) -> DemoImage:
    """The two-platform demo image pushed to the session registry."""
    ref = Reference.parse(f"{registry.host}/{DEMO_REPO}:{DEMO_TAG}")
    source = LayoutSource(Layout.open(demo_layout), DEMO_TAG)
    with RegistryClient(RegistryOptions(insecure=frozenset({registry.host}))) as client:
        desc = copy(source, RegistrySink(client, ref), tag=DEMO_TAG)
    return DemoImage(str(ref), str(desc.digest), demo_layout)
