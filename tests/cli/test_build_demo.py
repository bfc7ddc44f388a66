"""Acceptance: the seed's demo image, built by ``manyarch build`` for amd64 and arm64.

The expensive build (the arm64 ``pip install`` under QEMU) happens once per
session in the shared ``demo_image`` fixture; here it is inspected with skopeo
and each platform's rootfs serves ``GET /arch`` from a bubblewrap sandbox
(arm64 under emulation).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from manyarch.images import LayoutSource, resolve_image
from manyarch.layers import unpack
from manyarch.layout import Layout
from manyarch.oci import mediatypes as mt
from manyarch.oci.platform import Platform
from manyarch.sandbox.bwrap import SandboxSpec, popen
from tests.helpers.demo_image import DemoImage
from tests.helpers.registry_server import free_port


def _raw(ref: str) -> dict[str, object]:
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout)
    return result


def _serve_arch(rootfs: Path, env: dict[str, str], user: str, workdir: str) -> str:
    """Start uvicorn in the rootfs on a free port, GET /arch, stop it."""
    port = free_port()
    spec = SandboxSpec(
        rootfs=rootfs,
        argv=["uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=workdir,
        user=user,
        network="host",
    )
    proc = popen(spec, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/arch", timeout=5) as r:
                    return str(json.load(r)["architecture"])
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise AssertionError(f"uvicorn did not answer: {err[-2000:]}") from None
                time.sleep(0.3)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.integration
def test_demo_image_has_both_platforms_and_answers_arch(
    demo_image: DemoImage, tmp_path: Path
) -> None:
    index = _raw(demo_image.ref)
    assert index["mediaType"] in (mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST)
    manifests = index["manifests"]
    assert isinstance(manifests, list)
    assert [f"{m['platform']['os']}/{m['platform']['architecture']}" for m in manifests] == [
        "linux/amd64",
        "linux/arm64",
    ]
    source = LayoutSource(Layout.open(demo_image.layout), "latest")
    layout = Layout.open(demo_image.layout)
    for plat, machine in (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")):
        image = resolve_image(source, Platform.parse(plat))
        rootfs = tmp_path / plat.replace("/", "-")
        unpack(
            rootfs,
            [
                (str(d.digest), layout.blob_path(d.digest), d.media_type)
                for d in image.manifest.layers
            ],
        )
        cfg = image.config.config
        assert cfg.cmd is not None and cfg.cmd[0] == "uvicorn"
        assert _serve_arch(rootfs, cfg.env_dict(), cfg.user, cfg.working_dir or "/") == machine
