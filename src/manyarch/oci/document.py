"""Documents as stored bytes: the digest of a manifest, index or config is the
digest of exactly the bytes stored or pushed, never of a re-serialisation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from manyarch.errors import InvalidDocument
from manyarch.oci.digest import Digest


def canonical_json(obj: Any) -> bytes:
    """The bytes manyarch writes for a JSON document: compact, UTF-8, keys as given."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Document:
    """Bytes with their media type; the digest is computed from these bytes."""

    data: bytes
    media_type: str
    digest: Digest = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", Digest.of(self.data))

    @property
    def size(self) -> int:
        """Length of the bytes."""
        return len(self.data)

    def json(self) -> dict[str, Any]:
        """The bytes parsed as a JSON object."""
        return load_json_object(self.data, self.media_type)


def load_json_object(data: bytes, what: str = "document") -> dict[str, Any]:
    """Parse bytes as a JSON object, or raise :class:`InvalidDocument`."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidDocument(f"{what} is not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise InvalidDocument(f"{what} is not a JSON object")
    return obj
