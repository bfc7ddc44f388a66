import pytest
from hypothesis import given
from hypothesis import strategies as st

from manyarch.errors import InvalidReference
from manyarch.oci.digest import Digest
from manyarch.oci.reference import LayoutReference, Reference, parse_any

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        (
            "host.docker.internal:5000/fastapi-multiarch:latest",
            "host.docker.internal:5000",
            "fastapi-multiarch",
            "latest",
            None,
        ),
        (f"localhost:5000/x@{D}", "localhost:5000", "x", None, D),
        ("python:3.12-slim", "docker.io", "library/python", "3.12-slim", None),
        ("python", "docker.io", "library/python", None, None),
        ("user/app", "docker.io", "user/app", None, None),
        ("index.docker.io/library/busybox", "docker.io", "library/busybox", None, None),
        (f"ghcr.io/org/team/app:v1.2@{D}", "ghcr.io", "org/team/app", "v1.2", D),
        ("localhost/app", "localhost", "app", None, None),
        ("127.0.0.1:5000/a/b_c__d-e.f:t", "127.0.0.1:5000", "a/b_c__d-e.f", "t", None),
        ("[::1]:5000/app:1", "[::1]:5000", "app", "1", None),
    ],
)
def test_parse(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    r = Reference.parse(text)
    assert (r.registry, r.repository, r.tag) == (registry, repository, tag)
    assert (str(r.digest) if r.digest else None) == digest
    assert Reference.parse(str(r)) == r


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("Python:3", "lowercase"),
        ("localhost:5000/App", "lowercase"),
        ("app:-x", "invalid tag"),
        ("app:" + "t" * 129, "invalid tag"),
        ("app@sha256:123", "invalid digest"),
        ("http://localhost:5000/app", "scheme"),
        ("a//b", "invalid reference format"),
        ("-a/b", "invalid reference format"),
        ("oci-layout:///tmp/x", "OCI layout"),
        ("localhost:5000/" + "a" * 260, "longer than 255"),
    ],
)
def test_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReference) as e:
        Reference.parse(text)
    assert fragment in str(e.value)


def test_familiar_and_identifier() -> None:
    r = Reference.parse("python:3.12-slim")
    assert r.familiar == "python:3.12-slim"
    assert r.identifier == "3.12-slim"
    assert Reference.parse("python").identifier == "latest"
    assert Reference.parse("python").tagged_or_latest().tag == "latest"
    pinned = r.with_digest(Digest.parse(D))
    assert pinned.identifier == D
    assert str(pinned) == f"docker.io/library/python:3.12-slim@{D}"


@pytest.mark.parametrize(
    ("text", "path", "tag", "digest"),
    [
        ("oci-layout:///tmp/out:v1", "/tmp/out", "v1", None),
        ("oci-layout://out", "out", None, None),
        (f"oci-layout://./a/b@{D}", "./a/b", None, D),
        (f"oci-layout:///x:t@{D}", "/x", "t", D),
    ],
)
def test_layout_reference(text: str, path: str, tag: str | None, digest: str | None) -> None:
    r = parse_any(text)
    assert isinstance(r, LayoutReference)
    assert (r.path, r.tag, str(r.digest) if r.digest else None) == (path, tag, digest)
    assert LayoutReference.parse(str(r)) == r


_COMP = st.from_regex(r"[a-z0-9]{1,6}([._-][a-z0-9]{1,4})?", fullmatch=True)
_TAG = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@given(
    st.sampled_from(["docker.io", "localhost:5000", "ghcr.io", "reg.example.com:443"]),
    st.lists(_COMP, min_size=1, max_size=3),
    st.one_of(st.none(), _TAG),
    st.one_of(st.none(), st.binary().map(Digest.of)),
)
def test_round_trip(
    registry: str, parts: list[str], tag: str | None, digest: Digest | None
) -> None:
    repo = "/".join(parts)
    if registry == "docker.io" and "/" not in repo:
        repo = "library/" + repo
    r = Reference(registry, repo, tag, digest)
    assert Reference.parse(str(r)) == r
    assert Reference.parse(r.familiar) == r
