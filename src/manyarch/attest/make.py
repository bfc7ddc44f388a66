"""The attestations of one platform's image: its SBOM and its provenance predicates."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from manyarch.attest.intoto import PREDICATE_SPDX, docker_purl
from manyarch.attest.options import Attestations
from manyarch.attest.provenance import BuildFacts, Material, Step, predicate
from manyarch.attest.scan import Contents, PythonDist, contents, read_files
from manyarch.attest.spdx import deb_purl, pypi_purl, spdx_document
from manyarch.errors import ManyarchError
from manyarch.layout import Layout
from manyarch.oci.digest import Digest
from manyarch.oci.manifest import BASE_DIGEST, Descriptor, ImageConfig, Manifest
from manyarch.oci.platform import Platform
from manyarch.oci.reference import LAYOUT_SCHEME, LayoutReference

_WHEEL = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(?:-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)


@dataclass(frozen=True)
class PlatformFacts:
    """What one platform's attestations need besides the image: the build's facts
    and the images it read (``(reference, platform resolved for, digest)``)."""

    facts: BuildFacts
    bases: Sequence[tuple[str, Platform, str]] = ()


def _tags(filename: str) -> tuple[str, str, frozenset[str]] | None:
    m = _WHEEL.match(filename)
    if m is None:
        return None
    tags = frozenset(
        f"{py}-{abi}-{plat}"
        for py in m.group("py").split(".")
        for abi in m.group("abi").split(".")
        for plat in m.group("plat").split(".")
    )
    name = re.sub(r"[-_.]+", "-", m.group("name")).lower()
    return name, m.group("version"), tags


def oci_purl(ref: str, platform: Platform) -> str:
    """``pkg:oci/NAME?platform=...&repository_url=oci-layout://DIR&tag=TAG`` for an image in
    an OCI layout (purl-spec's ``oci`` type; NAME is the directory's)."""
    parsed = LayoutReference.parse(ref)
    name = Path(parsed.path).name or "image"
    out = f"pkg:oci/{quote(name.lower(), safe='')}"
    quals = [f"platform={quote(str(platform), safe='')}"]
    quals.append(f"repository_url={quote(LAYOUT_SCHEME + parsed.path, safe='/:')}")
    if parsed.tag:
        quals.append(f"tag={quote(parsed.tag, safe='')}")
    return out + "?" + "&".join(quals)


def wheel_digests(dists: Sequence[PythonDist], wheels: Path | None) -> dict[str, str]:
    """dist-info path -> sha256 of the wheel it was installed from, when that wheel is in
    ``wheels`` (native pip's cache: ``SHA256/FILENAME.whl``)."""
    if wheels is None or not wheels.is_dir():
        return {}
    known: dict[tuple[str, str], list[tuple[frozenset[str], str]]] = {}
    for f in wheels.glob("*/*.whl"):
        parsed = _tags(f.name)
        if parsed is not None:
            known.setdefault((parsed[0], parsed[1]), []).append((parsed[2], f.parent.name))
    out = {}
    for d in dists:
        for tags, sha in known.get((d.normalized_name, d.version), []):
            if d.tags and frozenset(d.tags) == tags:
                out[d.path] = sha
                break
    return out


def image_contents(
    store: Layout, manifest: Manifest, base_layers: int
) -> tuple[Contents, Contents]:
    """What the image holds, and what its base's layers held (the first ``base_layers``)."""
    blobs = [(str(d.digest), store.blob_path(d.digest)) for d in manifest.layers]
    base = contents(read_files(blobs[:base_layers]))
    return base, contents(read_files(blobs))


def base_materials(bases: Sequence[tuple[str, Platform, str]]) -> list[Material]:
    """The images a build read, as provenance materials (purl, the digest it resolved to)."""
    out: list[Material] = []
    seen: set[str] = set()
    for ref, plat, digest in bases:
        uri = oci_purl(ref, plat) if ref.startswith(LAYOUT_SCHEME) else docker_purl(ref, plat)
        if uri not in seen:
            seen.add(uri)
            algorithm, _, hex_ = digest.partition(":")
            out.append(Material(uri, {algorithm: hex_}))
    return out


def _materials(
    pf: PlatformFacts, base: Contents, image: Contents, wheels: Mapping[str, str]
) -> list[Material]:
    out = base_materials(pf.bases)
    had_deb = {(p.name, p.version, p.architecture) for p in base.debian}
    for p in image.debian:
        if (p.name, p.version, p.architecture) not in had_deb:
            out.append(Material(deb_purl(p, image.distro)))
    had_py = {(d.path, d.version) for d in base.python}
    for d in image.python:
        if (d.path, d.version) not in had_py:
            sha = wheels.get(d.path)
            out.append(Material(pypi_purl(d), {"sha256": sha} if sha else {}))
    return out


def base_of(store: Layout, manifest: Manifest) -> tuple[int, int]:
    """How many layers and history entries of an image are its base's (0, 0 when the base
    is unknown: ``FROM scratch``, or a base no longer in the store)."""
    digest = manifest.annotations.get(BASE_DIGEST)
    if not digest:
        return 0, 0
    try:
        base = Manifest.parse(store.read_blob(Digest.parse(digest)))
        config = ImageConfig.parse(store.read_blob(base.config.digest))
    except (ManyarchError, OSError):
        return 0, 0
    layers = len(base.layers)
    if [d.digest for d in manifest.layers[:layers]] != [d.digest for d in base.layers]:
        return 0, 0
    return layers, len(config.history)


def history_steps(manifest: Manifest, config: ImageConfig, base: tuple[int, int]) -> list[Step]:
    """The steps the build added to its base, from the config's history, each with its layer."""
    steps: list[Step] = []
    layer = base[0]
    for h in config.history[base[1] :]:
        chain: tuple[dict[str, Any], ...] = ()
        if not h.empty_layer and layer < len(manifest.layers):
            d = manifest.layers[layer]
            chain = ({"mediaType": d.media_type, "digest": str(d.digest), "size": d.size},)
            layer += 1
        steps.append(Step(h.created_by or "", chain))
    return steps


def predicates(
    store: Layout,
    image: Descriptor,
    platform: Platform,
    asked: Attestations,
    pf: PlatformFacts,
    *,
    name: str,
    created: str,
    wheels: Path | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """``(predicate type, predicate)`` of every attestation asked, for one platform's image."""
    manifest = Manifest.parse(store.read_document(image))
    below = base_of(store, manifest)
    base, held = image_contents(store, manifest, below[0])
    digests = wheel_digests(held.python, wheels)
    out: list[tuple[str, dict[str, Any]]] = []
    if asked.sbom is not None:
        out.append((PREDICATE_SPDX, spdx_document(held, name, created, digests)))
    if asked.provenance is not None:
        config = ImageConfig.parse(store.read_document(manifest.config))
        facts = replace(
            pf.facts,
            materials=_materials(pf, base, held, digests),
            steps=history_steps(manifest, config, below),
        )
        out.append((asked.provenance.predicate_type, predicate(facts, asked.provenance)))
    return out
