"""in-toto statements and BuildKit's attestation manifests
(moby/buildkit ``docs/attestations/attestation-storage.md``).

Per platform, one image manifest of ``unknown/unknown`` holds one layer per
statement (``application/vnd.in-toto+json``, annotated with its predicate
type); the index lists it after every platform's image, its descriptor
annotated ``vnd.docker.reference.type: attestation-manifest`` and
``vnd.docker.reference.digest: <the image manifest>``. This is the form
BuildKit v0.31 writes (in-toto Statement v1; attestation manifests became OCI
artifacts with a ``subject`` in v0.32): no ``artifactType``, a config listing
the statements as its diff_ids. Each statement's subjects are the image's
names as purls with the platform's manifest digest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, quote_plus

from manyarch.layout import Layout
from manyarch.oci import mediatypes as mt
from manyarch.oci.document import Document, canonical_json
from manyarch.oci.manifest import (
    ATTESTATION_MANIFEST,
    REFERENCE_DIGEST,
    REFERENCE_TYPE,
    Descriptor,
    Manifest,
)
from manyarch.oci.platform import Platform
from manyarch.oci.reference import Reference

#: BuildKit v0.31's statement type (``intoto.StatementInTotoV1``; v0.1 before)
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
PREDICATE_SPDX = "https://spdx.dev/Document"
PREDICATE_ANNOTATION = "in-toto.io/predicate-type"
UNKNOWN = Platform("unknown", "unknown")


def docker_purl(name: str, platform: Platform | None = None) -> str:
    """BuildKit's ``purl.RefToPURL("docker", name, platform)``.

    ``pkg:docker/NAMESPACE/NAME@TAG?platform=OS%2FARCH`` (``docker.io`` and
    ``library/`` left out; a digest reference gives ``?digest=`` and no version).
    """
    ref = Reference.parse(name)
    path = ref.name
    if ref.registry == "docker.io":
        path = ref.repository
        if path.startswith("library/") and path.count("/") == 1:
            path = path.removeprefix("library/")
    *namespace, last = path.split("/")
    out = "pkg:docker/" + "".join(quote_plus(n, safe="") + "/" for n in namespace)
    out += quote_plus(last, safe="")
    qualifiers = []
    if ref.digest is not None:
        qualifiers.append(f"digest={quote(str(ref.digest), safe='$&+:=@')}")
    else:
        out += "@" + quote(ref.tag or "latest", safe="$&+:=@")
    if platform is not None:
        p = platform.normalized()
        if p.architecture == "arm64" and p.variant == "v8":
            p = Platform(p.os, p.architecture)
        qualifiers.append(f"platform={quote(str(p), safe='$&+:=@')}")
    return out + ("?" + "&".join(qualifiers) if qualifiers else "")


def subjects(names: Sequence[str], platform: Platform, digest: str) -> list[dict[str, Any]]:
    """The statement's subjects: every name as a purl, the platform's manifest digest."""
    algorithm, _, hex_ = digest.partition(":")
    return [{"name": docker_purl(n, platform), "digest": {algorithm: hex_}} for n in names if n]


def statement(
    predicate_type: str, predicate: Mapping[str, Any], subject: Sequence[Mapping[str, Any]]
) -> bytes:
    """An in-toto statement as BuildKit marshals it (compact; ``_type`` first)."""
    return canonical_json(
        {
            "_type": STATEMENT_V1,
            "predicateType": predicate_type,
            "subject": list(subject),
            "predicate": predicate,
        }
    )


def write_attestation_manifest(
    store: Layout, image: Descriptor, statements: Sequence[tuple[str, bytes]]
) -> Descriptor:
    """The attestation manifest of ``image`` (``(predicate type, statement)`` s) in ``store``;
    returns its entry for the index."""
    layers = []
    for predicate_type, data in statements:
        d = store.put_document(Document(data, mt.IN_TOTO))
        layers.append(
            Descriptor(
                mt.IN_TOTO, d.digest, d.size, annotations={PREDICATE_ANNOTATION: predicate_type}
            )
        )
    config = {
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [str(d.digest) for d in layers]},
    }
    cdesc = store.put_document(Document(canonical_json(config), mt.OCI_CONFIG))
    manifest = Manifest(
        Descriptor(mt.OCI_CONFIG, cdesc.digest, cdesc.size), tuple(layers), mt.OCI_MANIFEST
    )
    desc = store.put_document(manifest.to_document())
    return Descriptor(
        mt.OCI_MANIFEST,
        desc.digest,
        desc.size,
        platform=UNKNOWN,
        annotations={
            REFERENCE_DIGEST: str(image.digest),
            REFERENCE_TYPE: ATTESTATION_MANIFEST,
        },
    )


def read_statements(docs: Sequence[bytes]) -> list[dict[str, Any]]:
    """Statements from their bytes (an attestation manifest's layers)."""
    return [json.loads(d) for d in docs]
