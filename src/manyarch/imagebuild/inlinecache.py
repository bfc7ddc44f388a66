"""BuildKit's inline cache: the build cache's records in the image config.

``--cache-to type=inline`` (or buildx's ``--build-arg BUILDKIT_INLINE_CACHE=1``)
puts, in each platform's config, ``moby.buildkit.cache.v0``: standard base64
of a JSON array of BuildKit's ``CacheRecord`` (moby/buildkit
``cache/remotecache/v1/types/spec.go``): a record per step that made a layer
of the image, its ``digest`` the step's cache key, ``layers`` the index of
that layer in the manifest (the layers below it are its chain), ``inputs``
the record of the step before. The keys are manyarch's (BuildKit cannot
compute them, so a BuildKit build finds no hit in them, nor manyarch in a
BuildKit image's); ``createdAt`` is the build's epoch, so digests stay
reproducible. ``--cache-from type=registry,ref=IMAGE`` reads them back.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from manyarch.images import Source
from manyarch.oci import mediatypes as mt
from manyarch.oci.manifest import Descriptor, ImageConfig, Index, Manifest, parse_manifest_or_index
from manyarch.oci.platform import Platform

KEY = "moby.buildkit.cache.v0"

#: (platform, digests of the layers up to and including a step's) -> (cache key, createdAt)
Chains = Mapping[tuple[str, tuple[str, ...]], tuple[str, str]]


def records(chains: Chains, platform: Platform, layers: Sequence[Descriptor]) -> bytes | None:
    """The inline cache of one platform's image (None when no layer has a key)."""
    digests = [str(d.digest) for d in layers]
    keyed = [chains.get((str(platform), tuple(digests[: i + 1]))) for i in range(len(digests))]
    first = next((i for i, k in enumerate(keyed) if k is not None), None)
    if first is None:
        return None
    created = keyed[first][1]  # type: ignore[index]
    out: list[dict[str, Any]] = []
    if first > 0:  # the base's layers, as one record the first step links to
        base = hashlib.sha256("\n".join(digests[:first]).encode()).hexdigest()
        out.append(
            {"layers": [{"layer": first - 1, "createdAt": created}], "digest": f"sha256:{base}"}
        )
    for i in range(first, len(keyed)):
        got = keyed[i]
        if got is None:
            break
        record: dict[str, Any] = {
            "layers": [{"layer": i, "createdAt": got[1]}],
            "digest": f"sha256:{got[0]}",
        }
        if out:
            record["inputs"] = [[{"link": len(out) - 1}]]
        out.append(record)
    return json.dumps(out, separators=(",", ":")).encode()


def _oci_layer(d: Descriptor) -> Descriptor:
    return Descriptor(mt.exported_layer_type(mt.compression(d.media_type), False), d.digest, d.size)


def entries_of_image(source: Source, root: Manifest | Index) -> list[dict[str, Any]]:
    """The build cache entries an image's inline cache names (build-cache entry files' form)."""
    manifests = (
        [root]
        if isinstance(root, Manifest)
        else [parse_manifest_or_index(source.document(d)) for d in root.images()]
    )
    out: list[dict[str, Any]] = []
    for man in manifests:
        if not isinstance(man, Manifest):
            continue
        cdoc = source.document(man.config)
        value = json.loads(cdoc.data).get(KEY)
        if not isinstance(value, str):
            continue
        config = ImageConfig.parse(cdoc)
        try:
            recs = json.loads(base64.b64decode(value))
        except ValueError:
            continue
        for rec in recs if isinstance(recs, list) else ():
            digest = str(rec.get("digest", ""))
            for res in rec.get("layers") or ():
                i = res.get("layer")
                if not digest.startswith("sha256:") or not isinstance(i, int):
                    continue
                if 0 <= i < len(man.layers) and i < len(config.diff_ids):
                    out.append(
                        {
                            "key": digest.removeprefix("sha256:"),
                            "layer": _oci_layer(man.layers[i]).to_json(),
                            "diff_id": str(config.diff_ids[i]),
                            "text": "inline cache",
                        }
                    )
    return out
