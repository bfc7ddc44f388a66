"""The flags CI passes (build-push-action, the docs' multi-runner workflow), from the command
line: push-by-digest and the merge, buildx's metadata file and iidfile, imagetools inspect's
attestation templates, skopeo copying the merged index whole."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from manyarch.cli.main import main
from manyarch.oci import mediatypes as mt
from tests.cli.test_build import skopeo_raw, tags
from tests.helpers.registry_server import RegistryServer
from tests.helpers.tiny_base import TinyBase, tiny_base
from tests.imagebuild.build_helpers import make_context

__all__ = ["tiny_base"]

DOCKERFILE = 'ARG BASE\nFROM $BASE\nCOPY hello.txt /srv/hello.txt\nCMD ["cat", "/srv/hello.txt"]\n'


@pytest.fixture
def isolated(isolated_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.chdir(tmp_path)
    return isolated_build


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_push_by_digest_on_each_runner_then_merge(
    tmp_path: Path,
    isolated: Path,
    tiny_base: TinyBase,
    registry: RegistryServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = make_context(tmp_path, DOCKERFILE, {"hello.txt": "hello\n"})
    name = f"{registry.host}/by-digest"
    digests = []
    for platform in ("linux/amd64", "linux/arm64"):
        meta, iid = tmp_path / "metadata.json", tmp_path / "iid"
        code, _, err = run(
            capsys, "build", "--platform", platform,
            "--output", f"type=image,name={name},push-by-digest=true,name-canonical=true,push=true",
            "--metadata-file", str(meta), "--iidfile", str(iid),
            "--provenance=mode=max", "--sbom=true",
            "--build-arg", f"BASE={tiny_base.ref}", "--insecure-registry", registry.host,
            "--progress", "quiet", str(ctx),
        )  # fmt: skip
        assert code == 0, err
        m = json.loads(meta.read_text())
        assert not meta.read_text().endswith("\n") and list(m) == sorted(m)
        assert m["image.name"] == name  # as given: never NAME@DIGEST
        assert re.fullmatch(r"default/default/[a-z0-9]{25}", m["buildx.build.ref"])
        assert m["containerimage.descriptor"]["mediaType"] == mt.OCI_INDEX  # attestations
        assert m["containerimage.descriptor"]["digest"] == m["containerimage.digest"]
        assert m["buildx.build.provenance"]["buildType"] == "https://mobyproject.org/buildkit@v1"
        assert "metadata" not in m["buildx.build.provenance"]  # buildx's min record
        assert iid.read_text() == m["containerimage.digest"]
        digests.append(m["containerimage.digest"])
    assert tags(registry, "by-digest") == []  # pushed by digest only

    # the merge job: REF@sha256:... sources, as the docs' printf spells them
    code, _, err = run(
        capsys, "imagetools", "create", "-t", f"{name}:latest", *[f"{name}@{d}" for d in digests],
        "--insecure-registry", registry.host,
    )  # fmt: skip
    assert code == 0, err
    index = skopeo_raw(f"docker://{name}:latest")
    assert index["mediaType"] == mt.OCI_INDEX
    entries = index["manifests"]
    assert isinstance(entries, list)
    ref_type = "vnd.docker.reference.type"
    kinds = [
        (m["platform"]["architecture"], m.get("annotations", {}).get(ref_type)) for m in entries
    ]
    assert kinds == [("amd64", None), ("unknown", "attestation-manifest"),
                     ("arm64", None), ("unknown", "attestation-manifest")]  # fmt: skip
    # bare sha256:... sources, found in the target's repository (buildx's example)
    code, _, err = run(
        capsys, "imagetools", "create", "-t", f"{name}:bare", *digests,
        "--insecure-registry", registry.host, "--metadata-file", str(tmp_path / "merged.json"),
    )  # fmt: skip
    assert code == 0, err
    assert skopeo_raw(f"docker://{name}:bare") == index
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert merged["image.name"] == name and merged["containerimage.descriptor"]["size"] > 0

    # skopeo copies the merged index whole: images, attestation manifests, statements
    dest = tmp_path / "copied"
    subprocess.run(
        ["skopeo", "copy", "--all", "--src-tls-verify=false",
         f"docker://{name}:latest", f"oci:{dest}:x"],
        check=True, capture_output=True,
    )  # fmt: skip
    have = {p.name for p in (dest / "blobs" / "sha256").iterdir()}
    for m in entries:
        assert m["digest"].split(":")[1] in have
        manifest = json.loads((dest / "blobs" / "sha256" / m["digest"].split(":")[1]).read_text())
        assert {layer["digest"].split(":")[1] for layer in manifest["layers"]} <= have

    # imagetools inspect: per platform, as buildx's loader gives them
    ref = f"{name}:latest"
    flags = ("--insecure-registry", registry.host)
    _, out, _ = run(capsys, "imagetools", "inspect", ref, "--format", "{{json .SBOM}}", *flags)
    sbom = json.loads(out)
    assert sorted(sbom) == ["linux/amd64", "linux/arm64"]
    assert sbom["linux/arm64"]["SPDX"]["spdxVersion"] == "SPDX-2.3"
    _, out, _ = run(
        capsys, "imagetools", "inspect", ref, "--format", "{{json .Provenance}}", *flags
    )
    assert (
        json.loads(out)["linux/amd64"]["SLSA"]["buildType"] == "https://mobyproject.org/buildkit@v1"
    )
    fmt = '{{json (index .Provenance "linux/arm64").SLSA.invocation.environment}}'
    _, out, _ = run(capsys, "imagetools", "inspect", ref, "--format", fmt, *flags)
    assert json.loads(out) == {"platform": "linux/amd64"}  # the builder's platform, as BuildKit
    _, out, _ = run(capsys, "imagetools", "inspect", ref, "--format", "{{json .}}", *flags)
    whole = json.loads(out)
    assert list(whole) == ["name", "manifest", "image"] and whole["name"] == ref
    assert sorted(whole["image"]) == ["linux/amd64", "linux/arm64"]
    _, text, _ = run(capsys, "imagetools", "inspect", ref, "--format", "{{.Manifest}}", *flags)
    _, default, _ = run(capsys, "imagetools", "inspect", ref, *flags)
    assert text == default and "Platform:    unknown/unknown" in text
    # pull (and so run) skip the attestation manifests: the image of the platform asked
    code, out, err = run(capsys, "pull", "--platform", "linux/arm64", ref)
    assert code == 0 and "Status: Downloaded newer image" in out + err, out + err
    # one platform alone: the object itself, no map
    _, out, _ = run(capsys, "imagetools", "inspect", f"{name}@{digests[1]}", "--format",
                    "{{json .SBOM.SPDX.spdxVersion}}", *flags)  # fmt: skip
    assert json.loads(out) == "SPDX-2.3"


def test_imagetools_create_refusals(
    tmp_path: Path, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = "sha256:" + "a" * 64
    code, _, err = run(
        capsys, "imagetools", "create", "-t", "r.example/a:1", "r.example/b:1", digest
    )
    assert code == 2 and "multiple repositories specified, cannot infer repository" in err
    code, _, err = run(capsys, "imagetools", "create", "-t", "r.example/a:1", "--annotation",
                       "k=v", "r.example/a@" + digest)  # fmt: skip
    assert code == 2 and '"" annotations are not supported yet' in err


CHECKED = """\
FROM scratch as base
COPY hello.txt /x
CMD cat /x
"""


def test_check_and_call(tmp_path: Path, isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = make_context(tmp_path, CHECKED, {"hello.txt": "hi\n"})
    code, out, _ = run(capsys, "build", "--check", str(ctx))
    assert code == 1
    assert out.startswith("Check complete, 2 warnings have been found!\n")
    assert (
        "\nWARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n"
        "'as' and 'FROM' keywords' casing do not match\n" in out
    )
    assert ">>> CMD cat /x" in out
    code, out, _ = run(capsys, "build", "--call", "check,format=json,ignorestatus=true", str(ctx))
    assert code == 0
    assert [w["ruleName"] for w in json.loads(out)["warnings"]] == [
        "FromAsCasing",
        "JSONArgsRecommended",
    ]
    (ctx / "Dockerfile").write_text("FROM scratch AS base\nCOPY hello.txt /x\n")
    code, out, _ = run(capsys, "build", "--check", str(ctx))
    assert (code, out) == (0, "Check complete, no warnings found.\n")
    code, out, _ = run(capsys, "build", "--call", "targets", str(ctx))
    assert (code, out) == (0, "TARGET         DESCRIPTION\nbase (default) \n")
    code, out, _ = run(capsys, "build", "--call", "outline,format=json", str(ctx))
    assert json.loads(out) == {"name": "base"}


RUNS = """\
ARG BASE
FROM $BASE AS probe
RUN cat /etc/hosts > /hosts && df -k /dev/shm | tail -1 > /shm && ulimit -n > /nofile
FROM $BASE
COPY --from=probe /hosts /shm /nofile /out/
"""


@pytest.mark.slow
def test_run_steps_see_add_host_shm_size_and_ulimit(
    tmp_path: Path, isolated: Path, tiny_base: TinyBase, capsys: pytest.CaptureFixture[str]
) -> None:
    from manyarch.layout import Layout
    from manyarch.oci.manifest import Manifest
    from tests.imagebuild.build_helpers import read_layer

    ctx = make_context(tmp_path, RUNS)
    code, _, err = run(
        capsys, "build", "--platform", "linux/amd64", "--build-arg", f"BASE={tiny_base.ref}",
        "--add-host", "db.internal:10.1.2.3", "--add-host", "gw=host-gateway",
        "--shm-size", "96m", "--ulimit", "nofile=1234:2048",
        "-o", f"type=oci,dest={tmp_path / 'out'}", "--progress", "quiet", str(ctx),
    )  # fmt: skip
    assert code == 0, err
    layout = Layout.open(tmp_path / "out")
    manifest = Manifest.parse(layout.read_document(layout.resolve("latest")))
    files = read_layer(layout, manifest.layers[-1])
    hosts = files["out/hosts"][1]
    assert hosts is not None and b"10.1.2.3\tdb.internal\n" in hosts and b"127.0.0.1\tgw\n" in hosts
    assert hosts.startswith(b"127.0.0.1\tlocalhost buildkitsandbox\n")
    assert (files["out/shm"][1] or b"").split()[1] == b"98304"  # 96 MiB in 1K blocks
    assert files["out/nofile"][1] == b"1234\n"


CACHED = """\
ARG BASE
FROM $BASE AS deps
RUN echo deps > /deps
FROM $BASE
COPY --from=deps /deps /deps
RUN echo app > /app
"""


@pytest.mark.slow
def test_no_cache_filter_runs_that_stage_again(
    tmp_path: Path, isolated: Path, tiny_base: TinyBase, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = make_context(tmp_path, CACHED)
    argv = ["build", "--platform", "linux/amd64", "--build-arg", f"BASE={tiny_base.ref}",
            "--progress", "plain", str(ctx)]  # fmt: skip
    assert run(capsys, *argv)[0] == 0
    code, _, err = run(capsys, *argv[:-1], "--no-cache-filter", "deps", str(ctx))
    assert code == 0, err
    steps = {line.split("] ", 1)[1]: n for line in err.splitlines() if line.startswith("#")
             and "] RUN" in line for n in [line.split()[0]]}  # fmt: skip
    assert f"{steps['RUN echo deps > /deps']} CACHED" not in err  # the filtered stage ran
    assert f"{steps['RUN echo app > /app']} CACHED" in err  # the other read its cache


@pytest.mark.slow
def test_inline_cache_read_back_from_the_image(
    tmp_path: Path,
    isolated: Path,
    tiny_base: TinyBase,
    registry: RegistryServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = make_context(tmp_path, CACHED)
    ref = f"{registry.host}/inline:1"
    common = ["--platform", "linux/amd64,linux/arm64", "--build-arg", f"BASE={tiny_base.ref}",
              "--insecure-registry", registry.host]  # fmt: skip
    code, first, err = run(capsys, "build", *common, "--build-arg", "BUILDKIT_INLINE_CACHE=1",
                           "-t", ref, "--push", "--progress", "quiet", str(ctx))  # fmt: skip
    assert code == 0, err
    config = json.loads(subprocess.run(
        ["skopeo", "inspect", "--config", "--raw", "--tls-verify=false", "--override-arch",
         "arm64", f"docker://{ref}"], check=True, capture_output=True, text=True,
    ).stdout)  # fmt: skip
    assert "moby.buildkit.cache.v0" in config
    # another machine: an empty build cache; the image's own records make the steps hits
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache2"))
    code, _, err = run(capsys, "build", *common, "--build-arg", "BUILDKIT_INLINE_CACHE=1",
                       "--cache-from", f"type=registry,ref={ref}", "--progress", "plain",
                       "-t", f"{ref}-again", "--push", str(ctx))  # fmt: skip
    assert code == 0, err
    assert err.count("CACHED") == 4, err  # the COPY and the RUN, on both platforms
    assert f"built {first.strip()}" in err  # and the same digest


@pytest.mark.slow
def test_gha_cache_through_the_cache_service(
    tmp_path: Path,
    isolated: Path,
    tiny_base: TinyBase,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.helpers.gha_cache import gha_cache_service

    ctx = make_context(tmp_path, CACHED)
    argv = ["build", "--platform", "linux/arm64", "--build-arg", f"BASE={tiny_base.ref}",
            "--progress", "plain"]  # fmt: skip
    code, _, err = run(capsys, *argv, "--cache-to", "type=gha,mode=max", str(ctx))
    assert code == 2 and "ACTIONS_RUNTIME_TOKEN and ACTIONS_RESULTS_URL not set" in err
    with gha_cache_service() as service:
        monkeypatch.setenv("ACTIONS_RUNTIME_TOKEN", service.token)
        monkeypatch.setenv("ACTIONS_RESULTS_URL", service.url)
        monkeypatch.setenv("ACTIONS_CACHE_SERVICE_V2", "True")
        code, _, err = run(capsys, *argv, "--cache-to", "type=gha,scope=ci", str(ctx))
        assert code == 0, err
        assert any(k.startswith("manyarch-index-ci-") for k in service.entries)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache2"))
        code, _, err = run(capsys, *argv, "--cache-from", "type=gha,scope=ci", str(ctx))
        assert code == 0, err
        assert err.count("CACHED") == 2, err
        assert service.unauthorized == 0


@pytest.mark.slow
def test_zstd_layers_pushed_copied_and_pulled(
    tmp_path: Path,
    isolated: Path,
    tiny_base: TinyBase,
    registry: RegistryServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = make_context(tmp_path, DOCKERFILE, {"hello.txt": "hello\n"})
    ref = f"{registry.host}/zstd:1"
    code, _, err = run(
        capsys, "build", "--platform", "linux/amd64,linux/arm64", "-t", ref,
        "-o", "type=registry,compression=zstd,compression-level=9,force-compression=true",
        "--annotation", "index-descriptor:org.example.kept=locally",
        "--build-arg", f"BASE={tiny_base.ref}", "--insecure-registry", registry.host,
        "--output", f"type=oci,dest={tmp_path / 'layout'}", "--progress", "quiet", str(ctx),
    )  # fmt: skip
    assert code == 0, err
    index = skopeo_raw(f"docker://{ref}")
    assert index["mediaType"] == mt.OCI_INDEX  # descriptor annotations need OCI types
    entries = index["manifests"]
    assert isinstance(entries, list)
    manifest = skopeo_raw(f"docker://{ref.split(':1')[0]}@{entries[0]['digest']}")
    assert {layer["mediaType"] for layer in manifest["layers"]} == {mt.OCI_LAYER_ZSTD}  # type: ignore[index]
    # index-descriptor annotations: the returned descriptor (an OCI layout's index.json)
    listed = json.loads((tmp_path / "layout" / "index.json").read_text())["manifests"]
    assert listed[0]["annotations"]["org.example.kept"] == "locally"
    subprocess.run(
        ["skopeo", "copy", "--all", "--src-tls-verify=false",
         f"docker://{ref}", f"oci:{tmp_path / 'c'}:x"],
        check=True, capture_output=True,
    )  # fmt: skip
    code, out, err = run(capsys, "pull", "--platform", "linux/arm64", ref)
    assert code == 0, out + err


MOUNTS = """\
ARG BASE
FROM $BASE
COPY --from=extra f /f
RUN --mount=type=secret,id=tok test "$(wc -c < /run/secrets/tok)" = 6 && echo ok > /ok
"""


def test_secret_and_build_context_flags(
    tmp_path: Path, isolated: Path, tiny_base: TinyBase, capsys: pytest.CaptureFixture[str]
) -> None:
    # buildx's --secret and --build-context reach RUN --mount and COPY --from; bad ones are
    # usage errors before anything runs
    ctx = make_context(tmp_path, MOUNTS)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "f").write_text("extra\n")
    (tmp_path / "tok").write_text("s3cr3t")
    common = ["build", "--platform", "linux/amd64", "--build-arg", f"BASE={tiny_base.ref}",
              "--progress", "plain"]  # fmt: skip
    code, _, err = run(
        capsys, *common, "--secret", f"id=tok,src={tmp_path / 'tok'}",
        "--build-context", f"extra={extra}", "-o", f"type=oci,dest={tmp_path / 'out'}", str(ctx),
    )  # fmt: skip
    assert code == 0, err
    assert "s3cr3t" not in err
    for bad in (["--secret", "id=tok,bogus=1"], ["--ssh", f"x={tmp_path / 'tok'}"]):
        code, _, err = run(capsys, *common, *bad, str(ctx))
        assert code == 2, err
