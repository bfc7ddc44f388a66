"""Provenance as BuildKit shapes it (v0.2 and v1, min and max), purls, statements held to
in-toto's bindings, and buildx's --attest/--sbom/--provenance."""

from __future__ import annotations

from pathlib import Path

import pytest

from manyarch.attest.facts import go_time, invocation_id
from manyarch.attest.intoto import docker_purl, statement, subjects
from manyarch.attest.options import AttestSpec, attestations
from manyarch.attest.provenance import (
    BuildFacts,
    Material,
    ProvenanceOptions,
    Step,
    predicate,
    record_provenance,
)
from manyarch.errors import InvalidArgument
from manyarch.oci.platform import Platform
from tests.attest.intoto_check import check_slsa_v1, check_statement

FACTS = BuildFacts(
    entry_point="Dockerfile.fastapi",
    args={
        "build-arg:PYTHON_IMAGE": "localhost:5000/python:3.11",
        "label:team": "x",
        "target": "app",
    },
    builder_platform="linux/amd64",
    started="2023-11-14T22:13:20Z",
    finished="2023-11-14T22:13:20Z",
    invocation_id="abc",
    materials=(Material("pkg:docker/python@3.11?platform=linux%2Farm64", {"sha256": "1" * 64}),),
    dockerfile=b"FROM x\n",
    steps=(
        Step(
            "COPY . /app # buildkit",
            ({"mediaType": "m", "digest": "sha256:" + "2" * 64, "size": 3},),
        ),
    ),
    vcs={"source": "https://github.com/o/r", "revision": "deadbeef"},
)


def test_v02_max_is_buildkits_shape() -> None:
    p = predicate(FACTS, ProvenanceOptions(mode="max"))
    assert list(p) == ["builder", "buildType", "materials", "invocation", "buildConfig", "metadata"]
    assert p["buildType"] == "https://mobyproject.org/buildkit@v1"
    assert p["invocation"]["configSource"] == {"entryPoint": "Dockerfile.fastapi"}
    params = p["invocation"]["parameters"]
    assert params["frontend"] == "dockerfile.v0"
    assert params["args"]["build-arg:PYTHON_IMAGE"] == "localhost:5000/python:3.11"
    assert params["locals"] == [{"name": "context"}, {"name": "dockerfile"}]
    assert p["invocation"]["environment"] == {"platform": "linux/amd64"}
    meta = p["metadata"]
    assert meta["completeness"] == {"parameters": True, "environment": True, "materials": False}
    bk = meta["https://mobyproject.org/buildkit@v1#metadata"]
    assert bk["vcs"] == {"source": "https://github.com/o/r", "revision": "deadbeef"}
    assert bk["source"]["infos"][0]["data"] == "RlJPTSB4Cg=="
    assert bk["layers"]["step0:0"][0][0]["size"] == 3
    assert p["buildConfig"]["llbDefinition"][0]["id"] == "step0"


def test_min_leaves_build_args_and_labels_out_and_says_so() -> None:
    p = predicate(FACTS, ProvenanceOptions(mode="min"))
    assert p["invocation"]["parameters"]["args"] == {"target": "app"}
    assert p["metadata"]["completeness"]["parameters"] is False
    assert "buildConfig" not in p
    assert "source" not in p["metadata"]["https://mobyproject.org/buildkit@v1#metadata"]
    record = record_provenance(p)
    assert "metadata" not in record and record["materials"] == p["materials"]


def test_v1_is_slsa_v1() -> None:
    p = predicate(FACTS, ProvenanceOptions(mode="max", version="v1", builder_id="https://ci/run/1"))
    check_slsa_v1(p)
    d = p["buildDefinition"]
    assert d["buildType"].endswith("docs/attestations/slsa-definitions.md")
    assert d["externalParameters"]["configSource"] == {"path": "Dockerfile.fastapi"}
    assert d["internalParameters"]["builderPlatform"] == "linux/amd64"
    assert d["resolvedDependencies"][0]["digest"] == {"sha256": "1" * 64}
    run = p["runDetails"]
    assert run["builder"] == {"id": "https://ci/run/1"}
    assert run["metadata"]["buildkit_completeness"] == {
        "request": True,
        "resolvedDependencies": False,
    }


@pytest.mark.parametrize(
    ("ref", "platform", "purl"),
    [
        ("alpine", "linux/amd64", "pkg:docker/alpine@latest?platform=linux%2Famd64"),
        ("ghcr.io/o/app", "linux/arm/v7",
         "pkg:docker/ghcr.io/o/app@latest?platform=linux%2Farm%2Fv7"),
        ("localhost:5000/foo:1.0", "linux/arm64",
         "pkg:docker/localhost%3A5000/foo@1.0?platform=linux%2Farm64"),
        ("user/app@sha256:" + "a" * 64, "linux/amd64",
         "pkg:docker/user/app?digest=sha256:" + "a" * 64 + "&platform=linux%2Famd64"),
        ("docker.io/library/python:3.12-slim", None, "pkg:docker/python@3.12-slim"),
    ],
)  # fmt: skip
def test_docker_purls_as_buildkit(ref: str, platform: str | None, purl: str) -> None:
    # the expected values are those of /tmp/research purl.py, BuildKit's RefToPURL
    assert docker_purl(ref, Platform.parse(platform) if platform else None) == purl


def test_statements_pass_in_totos_bindings() -> None:
    names = ["localhost:5000/app:1", "localhost:5000/app:latest"]
    subject = subjects(names, Platform.parse("linux/arm64"), "sha256:" + "c" * 64)
    data = statement(
        "https://slsa.dev/provenance/v0.2", predicate(FACTS, ProvenanceOptions()), subject
    )
    obj = check_statement(data)
    assert obj["_type"] == "https://in-toto.io/Statement/v1"
    assert [s["name"] for s in obj["subject"]] == [
        "pkg:docker/localhost%3A5000/app@1?platform=linux%2Farm64",
        "pkg:docker/localhost%3A5000/app@latest?platform=linux%2Farm64",
    ]


@pytest.mark.parametrize(
    ("attest", "sbom", "provenance", "env", "want"),
    [
        ([], None, None, {}, (None, None)),  # off unless asked (not buildx's default)
        ([], None, None, {"BUILDX_NO_DEFAULT_ATTESTATIONS": "0"}, (None, ("min", "v0.2"))),
        ([], None, None, {"BUILDX_NO_DEFAULT_ATTESTATIONS": "1"}, (None, None)),
        ([], "true", "true", {}, (True, ("max", "v0.2"))),  # --provenance=true is mode=max
        ([], None, "mode=min,version=v1", {}, (None, ("min", "v1"))),
        (["type=provenance,mode=max"], None, "false", {}, (None, None)),  # later wins
        (["type=sbom", "type=sbom,disabled=true"], None, None, {}, (None, None)),
        (["type=provenance,mode=full"], "false", None, {}, (None, ("max", "v0.2"))),
    ],
)
def test_attest_flags_as_buildx_reads_them(
    attest: list[str], sbom: str | None, provenance: str | None, env: dict[str, str], want: tuple
) -> None:
    got = attestations(attest, sbom=sbom, provenance=provenance, env=env)
    p = (got.provenance.mode, got.provenance.version) if got.provenance else None
    assert (got.sbom is not None or None, p) == want


@pytest.mark.parametrize(
    ("attest", "words"),
    [
        (["mode=max"], "attestation type not specified"),
        (["type=vex"], "unknown attestation type"),
        (["type=provenance,mode=medium"], "invalid mode"),
        (["type=provenance,version=v3"], "unsupported provenance version"),
        (["type=provenance,colour=red"], "unknown provenance attribute"),
        (["type=sbom,generator=example/scanner"], "not supported"),
        (["type=sbom,disabled=maybe"], "not a boolean"),
    ],
)
def test_attest_refusals(attest: list[str], words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        attestations(attest, env={})
    assert AttestSpec.canonical("sbom", "") is None


def test_times_and_ids() -> None:
    assert go_time(1700000000) == "2023-11-14T22:13:20Z"
    assert go_time(1700000000.25) == "2023-11-14T22:13:20.25Z"
    assert invocation_id(b"x") == invocation_id(b"x") != invocation_id(b"y")
    assert len(invocation_id()) == 25


def test_materials_name_what_the_build_added(tmp_path: Path) -> None:
    from manyarch.attest.make import PlatformFacts, _materials, wheel_digests
    from manyarch.attest.scan import Contents, PythonDist
    from manyarch.debian.deb import Package

    curl = Package("curl", "7.88.1-10+deb12u5", "arm64")
    libc = Package("libc6", "2.36-9", "arm64")
    pip = PythonDist("pip", "23.0.1", "/usr/lib/python3/dist-packages/pip-23.0.1.dist-info")
    site = "/usr/local/lib/python3.11/dist-packages"
    fastapi = PythonDist("fastapi", "0.110.0", f"{site}/fastapi-0.110.0.dist-info",
                         tags=("py3-none-any",))  # fmt: skip
    pydantic_core = PythonDist(
        "pydantic_core", "2.16.3", f"{site}/pydantic_core-2.16.3.dist-info",
        tags=("cp311-cp311-manylinux_2_17_aarch64", "cp311-cp311-manylinux2014_aarch64"),
    )  # fmt: skip
    wheels = tmp_path / "wheels"
    core = "pydantic_core-2.16.3-cp311-cp311-manylinux_2_17_{0}.manylinux2014_{0}.whl"
    for sha, name in [
        ("a" * 64, "fastapi-0.110.0-py3-none-any.whl"),
        ("b" * 64, core.format("x86_64")),
        ("c" * 64, core.format("aarch64")),
    ]:
        (wheels / sha).mkdir(parents=True)
        (wheels / sha / name).write_bytes(b"")
    base = Contents((libc,), (pip,), {})
    image = Contents(
        (curl, libc), (pip, fastapi, pydantic_core), {"ID": "debian", "VERSION_ID": "12"}
    )
    digests = wheel_digests(image.python, wheels)
    assert digests == {fastapi.path: "a" * 64, pydantic_core.path: "c" * 64}  # the arm64 wheel
    bases = [("python:3.11", Platform.parse("linux/arm64"), "sha256:" + "d" * 64)]
    got = [m.to_json() for m in _materials(PlatformFacts(FACTS, bases), base, image, digests)]
    assert got == [
        {"uri": "pkg:docker/python@3.11?platform=linux%2Farm64", "digest": {"sha256": "d" * 64}},
        {"uri": "pkg:deb/debian/curl@7.88.1-10%2Bdeb12u5?arch=arm64&distro=debian-12"},
        {"uri": "pkg:pypi/fastapi@0.110.0", "digest": {"sha256": "a" * 64}},
        {"uri": "pkg:pypi/pydantic-core@2.16.3", "digest": {"sha256": "c" * 64}},
    ]
