import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manyarch.errors import DigestMismatch, InvalidDigest
from manyarch.oci.digest import Digest, Hasher

EMPTY256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_of_empty() -> None:
    assert str(Digest.of(b"")) == EMPTY256


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_streaming_equals_one_shot(algorithm: str) -> None:
    data = [b"a" * 1000, b"", b"xyz" * 7]
    h = Hasher(algorithm)
    for c in data:
        h.update(c)
    assert h.digest() == Digest.of(b"".join(data), algorithm)
    assert h.size == sum(map(len, data))
    assert (
        Digest.of_chunks(data, algorithm).hex == hashlib.new(algorithm, b"".join(data)).hexdigest()
    )


@pytest.mark.parametrize(
    "text",
    [
        "sha256",
        "sha256:",
        "md5:" + "a" * 32,
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha512:" + "a" * 64,
        "sha256:" + "g" * 64,
    ],
)
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidDigest):
        Digest.parse(text)


def test_verify() -> None:
    d = Digest.of(b"hello")
    d.verify(b"hello")
    with pytest.raises(DigestMismatch) as e:
        d.verify(b"hellO")
    assert str(d) in str(e.value)


@given(st.binary(), st.sampled_from(["sha256", "sha512"]))
def test_round_trip(data: bytes, algorithm: str) -> None:
    d = Digest.of(data, algorithm)
    assert Digest.parse(str(d)) == d
