"""``--cache-to/--cache-from type=registry,ref=REF``: the build cache in a registry.

The cache travels as one OCI artifact manifest: its config (media type
:data:`CONFIG_MEDIA_TYPE`) lists the entries (key -> layer descriptor and
diff_id) and its layers are the entries' layer blobs, so the registry keeps
them alive and pushes mount what the registry already has. Importing reads
the manifest and the config only; a layer comes down when its entry is hit.
It is manyarch's own format: buildx cannot read it, nor manyarch buildx's.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from manyarch.errors import InvalidDocument, NotFound, RegistryError
from manyarch.images import LayoutSource, Source, open_sink, open_source
from manyarch.layout import Layout
from manyarch.oci import mediatypes as mt
from manyarch.oci.document import Document
from manyarch.oci.manifest import Descriptor, Manifest
from manyarch.oci.reference import parse_any
from manyarch.store import work_dir

if TYPE_CHECKING:
    from manyarch.registry import RegistryClient

CONFIG_MEDIA_TYPE = "application/vnd.manyarch.buildcache.v1+json"
_KEY = re.compile(r"[0-9a-f]{64}")
TAG = "buildcache"


def push(
    blobs: Path,
    entries: Sequence[Mapping[str, Any]],
    ref: str,
    client: RegistryClient,
) -> Descriptor:
    """Push ``entries`` (their layers' blobs in the OCI layout ``blobs``) to ``ref``."""
    from manyarch.images import copy

    layout = Layout.open(blobs)
    layers: dict[str, Descriptor] = {}
    for entry in entries:
        if entry.get("layer"):
            d = Descriptor.from_json(entry["layer"])
            layers.setdefault(str(d.digest), Descriptor(d.media_type, d.digest, d.size))
    ordered = sorted(entries, key=lambda e: str(e["key"]))
    config = Document(
        json.dumps({"entries": ordered}, sort_keys=True, separators=(",", ":")).encode(),
        CONFIG_MEDIA_TYPE,
    )
    layout.put_document(config)
    manifest = Manifest(
        Descriptor.of(config),
        tuple(layers[k] for k in sorted(layers)),
        mt.OCI_MANIFEST,
        artifact_type=CONFIG_MEDIA_TYPE,
    ).to_document()
    desc = layout.put_document(manifest)
    layout.tag(TAG, desc)
    sink, tag = open_sink(parse_any(ref), client)
    return copy(LayoutSource(layout, TAG), sink, tag=tag)


def pull(ref: str, client: RegistryClient) -> tuple[list[dict[str, Any]], Source] | None:
    """The entries of the cache at ``ref`` (keys checked), and the source of its blobs.

    None when there is no cache there yet (the first build of a pipeline).
    """
    source = open_source(parse_any(ref), client)
    try:
        root = source.root()
    except NotFound:
        return None
    except RegistryError as e:
        if e.status == 404:  # MANIFEST_UNKNOWN, NAME_UNKNOWN
            return None
        raise
    manifest = Manifest.parse(root)
    if manifest.config.media_type != CONFIG_MEDIA_TYPE:
        raise InvalidDocument(
            f"{ref} is not a manyarch build cache (config {manifest.config.media_type})",
            "import a cache that a registry export wrote",
        )
    entries = list(json.loads(source.document(manifest.config).data).get("entries", []))
    for entry in entries:
        key = str(entry.get("key"))
        if not _KEY.fullmatch(key):  # a key names a file of the local cache
            raise InvalidDocument(f"{ref}: a cache entry has an invalid key {key[:80]!r}")
    return entries, source


def temp_dir() -> Path:
    """A directory for one registry cache's entries or export."""
    return Path(tempfile.mkdtemp(prefix="manyarch-cache-", dir=work_dir()))
