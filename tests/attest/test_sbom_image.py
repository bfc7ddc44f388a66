"""An image on the demo (Debian packages, the demo's wheels) built with --sbom and
--provenance, pushed, its attestations pulled back from the registry: spdx-tools and in-toto's
bindings accept them, and the SBOM lists exactly what the image's file system holds, as dpkg
and importlib.metadata read it there."""

from __future__ import annotations

import json
import subprocess
from importlib.metadata import PathDistribution
from pathlib import Path

import pytest

import manyarch
from manyarch.layers import unpack
from manyarch.oci.manifest import Index, Manifest
from manyarch.oci.reference import Reference
from manyarch.registry import RegistryClient, RegistryOptions
from tests.attest.intoto_check import check_slsa_v1, check_statement
from tests.attest.test_spdx import validate
from tests.helpers.registry_server import RegistryServer


def dpkg_installed(root: Path) -> set[tuple[str, str, str]]:
    """dpkg's own reading of the image's database: installed packages."""
    out = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
         "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = (line.split("\t") for line in out.splitlines())
    return {(n, v, a) for s, n, v, a in rows if s.startswith("ii")}


def python_dists(root: Path) -> set[tuple[str, str]]:
    """Every distribution the file system holds, as importlib.metadata reads a dist-info."""
    out = set()
    for d in root.rglob("*.dist-info"):
        if d.is_dir() and (d / "METADATA").is_file():
            meta = PathDistribution(d).metadata
            out.add((meta["Name"], meta["Version"]))
    return out


@pytest.mark.slow
@pytest.mark.integration
def test_sbom_and_provenance_of_the_demo_pulled_back(
    tmp_path: Path,
    isolated_build: Path,
    demo_layout: Path,
    registry: RegistryServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    ref = f"{registry.host}/sbom-demo:1"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "notes.txt").write_text("built on the demo\n")
    (ctx / "Dockerfile").write_text(
        "ARG BASE\nFROM $BASE\nUSER root\nCOPY notes.txt /srv/notes.txt\nUSER 10001:10001\n"
    )
    with manyarch.Session() as s:
        result = s.build(
            ctx, platforms=["linux/arm64"], build_args={"BASE": f"oci-layout://{demo_layout}:latest"},
            sbom="true", provenance="mode=max,version=v1", names=[ref],
        )  # fmt: skip
        s.publish(result, ref)
    client = RegistryClient(RegistryOptions(insecure=frozenset({registry.host})))
    image = Reference.parse(ref)
    index = Index.parse(client.get_manifest(image))
    (entry,) = index.images()
    (att,) = [d for d in index.manifests if d.is_attestation]
    statements = {}
    for layer in Manifest.parse(client.get_manifest(image.with_digest(att.digest))).layers:
        stmt = check_statement(client.open_blob_bytes(image, layer))
        assert stmt["subject"][0]["digest"] == {"sha256": entry.digest.hex}
        statements[stmt["predicateType"]] = stmt["predicate"]
    sbom = statements["https://spdx.dev/Document"]
    assert validate(sbom) == []
    provenance = statements["https://slsa.dev/provenance/v1"]
    check_slsa_v1(provenance)
    (dep,) = provenance["buildDefinition"]["resolvedDependencies"]  # the base, nothing added
    assert dep["uri"].startswith("pkg:oci/layout?platform=linux%2Farm64") and dep["digest"]
    # the image's files, unpacked from the registry's blobs
    manifest = Manifest.parse(client.get_manifest(image.with_digest(entry.digest)))
    blobs = []
    for i, layer in enumerate(manifest.layers):
        path = tmp_path / f"layer{i}"
        with open(path, "wb") as f:
            client.fetch_blob(image, layer, f)
        blobs.append((str(layer.digest), path, layer.media_type))
    root = tmp_path / "rootfs"
    unpack(root, blobs)
    client.close()
    packages = sbom["packages"][1:]  # the first is the image itself
    purls = [p["externalRefs"][0]["referenceLocator"] for p in packages]
    debs = {(p["name"], p["versionInfo"], u.split("arch=")[1].split("&")[0])
            for p, u in zip(packages, purls, strict=True) if u.startswith("pkg:deb/")}  # fmt: skip
    pys = {(p["name"], p["versionInfo"]) for p, u in zip(packages, purls, strict=True)
           if u.startswith("pkg:pypi/")}  # fmt: skip
    assert len(debs) > 50 and debs == dpkg_installed(root)
    assert ("fastapi", next(v for n, v in pys if n == "fastapi")) in python_dists(root)
    assert pys == python_dists(root)
    assert len(debs) + len(pys) == len(packages)
    print(json.dumps({"debs": len(debs), "python": len(pys)}))
