"""``docker save``'s archive (Docker 25+): an OCI archive plus ``manifest.json`` and
``repositories``, which ``docker load`` (and skopeo's ``docker-archive:``) read.

``manifest.json`` lists, per image (one platform each), its config and layer
blobs by path (``blobs/sha256/<hex>``) and its ``RepoTags``; the layer blobs
stay gzip-compressed, which ``docker load`` reads as it reads plain tars.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from manyarch.layout.archive import export_tar
from manyarch.layout.layout import Layout
from manyarch.oci.manifest import Descriptor, Manifest
from manyarch.oci.reference import Reference

#: Annotation docker (25+) and containerd put on ``docker save``'s index.json entries.
CONTAINERD_NAME = "io.containerd.image.name"
#: One image of the archive: its manifest (in the layout) and the names it is loaded as.
DockerImage = tuple[Descriptor, Sequence[Reference]]


def repo_tag(ref: Reference) -> str:
    """``name:tag`` as docker prints it (``demo:1``, ``host:5000/app:latest``)."""
    return Reference(ref.registry, ref.repository, ref.tag or "latest").familiar


def export_docker_archive(
    layout: Layout, dest: Path | BinaryIO, images: Sequence[DockerImage]
) -> None:
    """Write ``layout`` as a tar with the ``manifest.json`` and ``repositories`` of ``images``."""
    entries = []
    repositories: dict[str, dict[str, str]] = {}
    for desc, names in images:
        manifest = Manifest.parse(layout.read_document(desc))
        entries.append(
            {
                "Config": _blob_path(manifest.config),
                "RepoTags": [repo_tag(n) for n in names],
                "Layers": [_blob_path(d) for d in manifest.layers],
            }
        )
        if manifest.layers:
            for n in names:
                repo = Reference(n.registry, n.repository).familiar
                repositories.setdefault(repo, {})[n.tag or "latest"] = manifest.layers[
                    -1
                ].digest.hex
    extra = {
        "manifest.json": json.dumps(entries, separators=(",", ":")).encode() + b"\n",
        "repositories": json.dumps(repositories, separators=(",", ":")).encode() + b"\n",
    }
    export_tar(layout, dest, extra=extra)


def _blob_path(d: Descriptor) -> str:
    return f"blobs/{d.digest.algorithm}/{d.digest.hex}"
