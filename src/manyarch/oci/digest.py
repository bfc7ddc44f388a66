"""Content digests (OCI image spec, descriptor.md#digests): parse, compute, verify."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from manyarch.errors import DigestMismatch, InvalidDigest

#: Registered algorithms and the length of their lowercase hex encoding.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"^[a-f0-9]+$")


@dataclass(frozen=True, order=True)
class Digest:
    """An ``algorithm:hex`` content digest; ``str(d)`` parses back to ``d``."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        length = ALGORITHMS.get(self.algorithm)
        if length is None:
            raise InvalidDigest(
                f"unsupported digest algorithm {self.algorithm!r}",
                f"use one of: {', '.join(ALGORITHMS)}",
            )
        if len(self.hex) != length or not _HEX.match(self.hex):
            raise InvalidDigest(
                f"invalid {self.algorithm} digest {self.hex!r}",
                f"a {self.algorithm} digest is {length} lowercase hex characters",
            )

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``sha256:<64 hex>`` or ``sha512:<128 hex>``."""
        algorithm, sep, encoded = text.partition(":")
        if not sep:
            raise InvalidDigest(
                f"invalid digest {text!r}", "a digest looks like sha256:<64 hex characters>"
            )
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data``."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @classmethod
    def of_chunks(cls, chunks: Iterable[bytes], algorithm: str = "sha256") -> Digest:
        """The digest of the concatenation of ``chunks``, streamed."""
        h = Hasher(algorithm)
        for chunk in chunks:
            h.update(chunk)
        return h.digest()

    @property
    def short(self) -> str:
        """The first 12 hex characters, as docker shows image ids."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def verify(self, data: bytes) -> None:
        """Raise :class:`DigestMismatch` unless ``data`` hashes to this digest."""
        actual = Digest.of(data, self.algorithm)
        if actual != self:
            raise DigestMismatch(str(self), str(actual))


class Hasher:
    """A streaming digest that also counts the bytes it saw."""

    def __init__(self, algorithm: str = "sha256") -> None:
        if algorithm not in ALGORITHMS:
            raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}")
        self.algorithm = algorithm
        self._h = hashlib.new(algorithm)
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed more bytes."""
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        """The digest of everything fed so far."""
        return Digest(self.algorithm, self._h.hexdigest())
