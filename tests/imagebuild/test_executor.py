"""The executor on a tiny two-platform Debian base: stages, RUN, COPY/ADD, layers, config."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest

from manyarch.errors import (
    BuildError,
    DockerfileError,
    EmulationError,
    ManyarchError,
    PlatformNotFound,
    StepFailed,
)
from manyarch.imagebuild.executor import build
from manyarch.imagebuild.options import RAN, BuildOptions, StepContext
from manyarch.layout import Layout
from manyarch.oci import mediatypes as mt
from manyarch.oci.manifest import BASE_DIGEST, BASE_NAME, CREATED, Index
from manyarch.oci.platform import Platform
from manyarch.sandbox import emulation
from tests.helpers.tiny_base import TinyBase, tiny_base
from tests.imagebuild.build_helpers import BOTH, index_of, make_context, run_build

__all__ = ["tiny_base"]

AMD64 = (Platform.parse("linux/amd64"),)


@pytest.fixture(autouse=True)
def isolated(isolated_build: Path) -> Path:
    """Every test here builds in a store and work dir of its own (see conftest)."""
    return isolated_build


# -- stages and platforms ----------------------------------------------------------

MULTISTAGE = """\
ARG BASE
FROM --platform=$BUILDPLATFORM ${BASE} AS gen
ARG TARGETARCH
RUN mkdir /out && echo "for $TARGETARCH built on $(uname -m)" > /out/$TARGETARCH
FROM ${BASE}
COPY --from=gen /out/ /gen/
RUN uname -m > /arch && cat /gen/*
"""


@pytest.mark.slow
def test_multistage_buildplatform_targetarch(tmp_path: Path, tiny_base: TinyBase) -> None:
    built = run_build(make_context(tmp_path, MULTISTAGE), tiny_base.ref)
    index = index_of(built)
    assert index.media_type == mt.OCI_INDEX  # the Docker form is made when published
    assert [str(p) for p in index.platforms()] == ["linux/amd64", "linux/arm64"]
    cases = (("linux/amd64", "amd64", "x86_64"), ("linux/arm64", "arm64", "aarch64"))
    for plat, arch, machine in cases:
        gen = built.layer(plat, -2)
        assert [k for k in gen if k.startswith("gen/")] == [f"gen/{arch}"]
        # the gen stage ran on the build platform, natively, for every target
        assert gen[f"gen/{arch}"][1] == f"for {arch} built on x86_64\n".encode()
        assert built.layer(plat, -1)["arch"][1] == f"{machine}\n".encode()
        assert built.config(plat).architecture == arch
        assert f"for {arch} built on x86_64" in built.output(plat)


def test_base_without_the_platform_lists_what_it_has(tmp_path: Path, tiny_base: TinyBase) -> None:
    only_amd = tmp_path / "amd-only"
    src = Layout.open(tiny_base.layout)
    index = Index.parse(src.read_document(src.resolve(tiny_base.tag)))
    layout = Layout.open(only_amd, create=True)
    amd = index.manifests[0]
    from manyarch.images import LayoutSink, LayoutSource, copy

    copy(LayoutSource(src, str(amd.digest)), LayoutSink(layout), tag="x")
    layout.tag("x", layout.put_document(Index((amd,)).to_document()))
    ctx = make_context(tmp_path, "ARG BASE\nFROM $BASE\nRUN true\n")
    with pytest.raises(PlatformNotFound) as e:
        run_build(ctx, f"oci-layout://{only_amd}:x")
    assert e.value.available == ["linux/amd64"]
    assert "linux/arm64" in e.value.message and "linux/amd64" in str(e.value.hint)


def test_no_emulation_handler_says_how_to_register_one(tmp_path: Path, tiny_base: TinyBase) -> None:
    plat = Platform.parse("linux/riscv64")
    if emulation.handler_for("riscv64") is not None:
        pytest.skip("a riscv64 handler is registered here")
    with pytest.raises(EmulationError) as e:
        run_build(make_context(tmp_path, "ARG BASE\nFROM $BASE\n"), tiny_base.ref, (plat,))
    assert "linux/riscv64" in e.value.message
    assert "manyarch emulation install riscv64" in str(e.value.hint)


# -- RUN ----------------------------------------------------------------------------


def test_run_sees_env_workdir_user_and_fresh_proc(tmp_path: Path, tiny_base: TinyBase) -> None:
    df = """\
ARG BASE
FROM $BASE
ENV GREETING=hello
WORKDIR /work/dir
USER app
RUN echo "$GREETING $(pwd) $(id -u):$(id -g) $HOME"; ls -A /tmp | wc -l; echo pid=$$
"""
    built = run_build(make_context(tmp_path, df), tiny_base.ref, AMD64)
    out = built.output("linux/amd64")
    assert out[0] == "hello /work/dir 1000:1000 /home/app"
    assert out[1] == "0"  # the image's /tmp, empty (tests/imagebuild/test_run_env.py)
    assert int(out[2].removeprefix("pid=")) < 10  # own pid namespace
    assert built.config("linux/amd64").config.user == "app"


def test_run_after_user_runs_as_that_user_on_disk(tmp_path: Path, tiny_base: TinyBase) -> None:
    # BuildKit's semantics: a RUN after USER is that user, for the kernel too.
    # It writes its own files (even in a 0700 directory it owns), its files are
    # recorded as its own, root's files stay root's and out of its reach, and
    # /etc/group's memberships are its supplementary groups.
    df = """\
ARG BASE
FROM $BASE
RUN mkdir /data && chown app:app /data && chmod 700 /data && echo 'staff:x:50:app' >> /etc/group
USER app
RUN touch /home/app/mine /data/x && mkdir -p /home/app/.local/lib && id -u && id -G && \\
    stat -c %u /etc/passwd && (touch /etc/nope 2>/dev/null && echo wrote || echo denied)
"""
    built = run_build(make_context(tmp_path, df), tiny_base.ref)
    for platform in ("linux/amd64", "linux/arm64"):
        assert built.output(platform)[-4:] == ["1000", "1000 50", "0", "denied"]
        top = built.layer(platform, -1)
        for path in ("home/app/mine", "data/x", "home/app/.local", "home/app/.local/lib"):
            info, _ = top[path]
            assert (info.uid, info.gid) == (1000, 1000), path
        assert "etc/nope" not in top


def test_run_network_none_and_resolv_conf(tmp_path: Path, tiny_base: TinyBase) -> None:
    df = """\
ARG BASE
FROM $BASE
RUN --network=none tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '
RUN tail -n +3 /proc/net/dev | wc -l; test -s /etc/resolv.conf && echo resolv
"""
    built = run_build(make_context(tmp_path, df), tiny_base.ref, AMD64)
    out = built.output("linux/amd64")
    assert out[0] == "lo"
    assert int(out[1]) >= 2  # the host's interfaces
    assert out[2] == "resolv"
    # the mount points made for the sandbox (/etc/resolv.conf, /proc) leave nothing:
    # these RUNs write no file, so they add no layer to the tiny base's one
    assert len(built.manifest("linux/amd64").layers) == 1
    assert [h.empty_layer for h in built.config("linux/amd64").history[-2:]] == [True, True]


def test_run_cannot_write_outside_the_rootfs(tmp_path: Path, tiny_base: TinyBase) -> None:
    marker = f"manyarch-escape-{os.getpid()}-{time.monotonic_ns()}"
    df = f"""\
ARG BASE
FROM $BASE
RUN echo x > /tmp/{marker}; echo y > /{marker}; (echo z > /etc/resolv.conf) 2>/dev/null || echo ro
"""
    built = run_build(make_context(tmp_path, df), tiny_base.ref, AMD64)
    assert built.output("linux/amd64") == ["ro"]
    assert not Path("/tmp", marker).exists() and not Path("/", marker).exists()
    names = set(built.layer("linux/amd64", -1))
    # /tmp is the image's (BuildKit mounts nothing there): what a RUN writes there is kept
    assert marker in names and f"tmp/{marker}" in names


def test_each_step_is_one_layer_with_whiteouts(tmp_path: Path, tiny_base: TinyBase) -> None:
    df = """\
ARG BASE
FROM $BASE
RUN mkdir -p /d/sub && echo 1 > /d/sub/f && echo 2 > /d/g
RUN rm -r /d/sub && echo 3 > /d/g
ENV A=1
"""
    built = run_build(make_context(tmp_path, df), tiny_base.ref, AMD64)
    m = built.manifest("linux/amd64")
    assert len(m.layers) == 3  # base + two RUNs; ENV adds none
    top = built.layer("linux/amd64", -1)
    assert "d/.wh.sub" in top and "d/sub/f" not in top and top["d/g"][1] == b"3\n"
    history = built.config("linux/amd64").history
    assert [h.created_by for h in history[-3:]] == [
        "RUN /bin/sh -c mkdir -p /d/sub && echo 1 > /d/sub/f && echo 2 > /d/g # buildkit",
        "RUN /bin/sh -c rm -r /d/sub && echo 3 > /d/g # buildkit",
        "ENV A=1",
    ]
    assert [h.empty_layer for h in history[-3:]] == [False, False, True]
    assert {h.comment for h in history[-3:]} == {"buildkit.dockerfile.v0"}


@pytest.mark.slow
def test_failure_on_one_platform_stops_the_other(
    tmp_path: Path, tiny_base: TinyBase, isolated: Path
) -> None:
    df = """\
ARG BASE
FROM $BASE
ARG TARGETARCH
RUN if [ "$TARGETARCH" = amd64 ]; then echo failing; exit 7; else sleep 60; fi
"""
    t0 = time.monotonic()
    with pytest.raises(BuildError) as e:
        run_build(make_context(tmp_path, df), tiny_base.ref)
    assert time.monotonic() - t0 < 20
    assert e.value.message.startswith(f"{tmp_path}/ctx/Dockerfile:4: RUN if")
    assert "exited with code 7" in e.value.message


# -- errors name the file and the line; nothing is left behind -----------------------


@pytest.mark.parametrize(
    ("dockerfile", "files", "error", "line", "words"),
    [
        ("ARG BASE\nFROM $BASE\nFOO bar\n", {}, DockerfileError, 3, "unknown instruction"),
        ("ARG BASE\nFROM $BASE\nRUN \n", {}, DockerfileError, 3, "RUN"),
        ("ARG BASE\nFROM $BASE\nCOPY missing.txt /x\n", {}, BuildError, 3, "not found"),
        ("ARG BASE\nFROM $BASE\nRUN true\nRUN exit 3\n", {}, BuildError, 4, "exited with code 3"),
        ("ARG BASE\nFROM $BASE\nCOPY ../etc/passwd /x\n", {}, BuildError, 3, "outside"),
        ("ARG BASE\nFROM $BASE\nUSER nobody-here\nRUN true\n", {}, ManyarchError, 4, "nobody"),
    ],
    ids=["unknown-instruction", "malformed", "missing-source", "run-fails", "dotdot", "no-user"],
)
def test_errors_name_file_and_line(
    tmp_path: Path,
    tiny_base: TinyBase,
    isolated: Path,
    dockerfile: str,
    files: dict[str, str],
    error: type[Exception],
    line: int,
    words: str,
) -> None:
    ctx = make_context(tmp_path, dockerfile, files)
    with pytest.raises(error) as e:
        run_build(ctx, tiny_base.ref)
    assert str(e.value).startswith(f"{ctx}/Dockerfile:{line}:")
    assert words.lower() in str(e.value).lower()


def test_a_failed_step_carries_its_context(
    tmp_path: Path, tiny_base: TinyBase, isolated: Path
) -> None:
    df = "ARG BASE\nFROM $BASE\nCOPY app/ /app/\nRUN echo one && echo two && exit 4\n"
    ctx = make_context(tmp_path, df, {"app/a": "a"})
    with pytest.raises(StepFailed) as e:
        run_build(ctx, tiny_base.ref, AMD64)
    failed = e.value
    assert (failed.file, failed.line, failed.platform) == (
        str(ctx / "Dockerfile"),
        4,
        "linux/amd64",
    )
    assert (failed.step, failed.exit_code) == ("RUN echo one && echo two && exit 4", 4)
    assert failed.output[-2:] == ("one", "two") and failed.reason == "exited with code 4"
    # a step that failed on an error of its own keeps it as the cause, message unchanged
    (ctx / "Dockerfile").write_text("ARG BASE\nFROM $BASE\nCOPY missing.txt /x\n")
    with pytest.raises(StepFailed) as e:
        run_build(ctx, tiny_base.ref, AMD64)
    cause = e.value.__cause__
    assert isinstance(cause, BuildError) and not isinstance(cause, StepFailed)
    assert e.value.exit_code is None and e.value.reason == cause.message
    assert cause.message == "COPY source 'missing.txt': not found in the build context"
    assert e.value.hint == cause.hint


# -- COPY and ADD --------------------------------------------------------------------


def test_copy_layers_identical_across_platforms(tmp_path: Path, tiny_base: TinyBase) -> None:
    df = """\
ARG BASE
FROM $BASE
WORKDIR /srv
COPY app/ app/
COPY app/ /app
RUN uname -m > /m
"""
    files = {"app/main.py": "print('hi')\n", "app/pkg/__init__.py": ""}
    built = run_build(make_context(tmp_path, df, files), tiny_base.ref)
    amd, arm = built.manifest("linux/amd64"), built.manifest("linux/arm64")
    assert amd.layers[0] != arm.layers[0]  # the bases differ
    assert amd.layers[1:4] == arm.layers[1:4]  # WORKDIR, COPY, COPY: one digest each
    assert amd.layers[4] != arm.layers[4]  # RUN uname -m
    entries = built.layer("linux/amd64", 3)
    assert entries["app/main.py"][1] == b"print('hi')\n"
    assert entries["app/main.py"][0].uid == 0


def test_symlink_in_a_tree_copied_as_symlink_and_escapes_refused(
    tmp_path: Path, tiny_base: TinyBase
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s3cret")
    ctx = make_context(tmp_path, "", {"dir/real.txt": "real\n"})
    (ctx / "dir/link").symlink_to("real.txt")
    (ctx / "dir/abs").symlink_to(outside / "secret")
    (ctx / "out").symlink_to(outside)
    ok = "ARG BASE\nFROM $BASE\nCOPY dir/ /d/\n"
    (ctx / "Dockerfile").write_text(ok)
    built = run_build(ctx, tiny_base.ref, AMD64)
    d = built.layer("linux/amd64", -1)
    assert d["d/link"][0].issym() and d["d/link"][0].linkname == "real.txt"
    assert d["d/abs"][0].issym()  # inside a copied tree: copied as a link, never followed
    assert b"s3cret" not in b"".join(v for _, v in d.values() if v)
    for bad in (
        "COPY dir/abs /abs",  # a source's own link is followed (BuildKit): it leads out
        "COPY out/secret /x",
        "COPY out/ /x/",
        "COPY out/* /x/",
        "ADD ../outside/secret /x",
    ):
        (ctx / "Dockerfile").write_text(f"ARG BASE\nFROM $BASE\n{bad}\n")
        with pytest.raises(BuildError, match=r"Dockerfile:3: .*(escapes|outside)"):
            run_build(ctx, tiny_base.ref, AMD64)


def test_dockerignore_is_honoured(tmp_path: Path, tiny_base: TinyBase) -> None:
    files = {
        ".dockerignore": "*.log\nsecrets/\n!keep.log\n",
        "a.txt": "a",
        "b.log": "b",
        "keep.log": "k",
        "secrets/key": "k",
        "sub/c.txt": "c",
    }
    ctx = make_context(tmp_path, "ARG BASE\nFROM $BASE\nCOPY . /ctx/\n", files)
    built = run_build(ctx, tiny_base.ref, AMD64)
    names = {n for n in built.layer("linux/amd64", -1) if n.startswith("ctx/")}
    assert names == {"ctx/.dockerignore", "ctx/Dockerfile", "ctx/a.txt", "ctx/keep.log",
                     "ctx/sub", "ctx/sub/c.txt"}  # fmt: skip
    (ctx / "Dockerfile").write_text("ARG BASE\nFROM $BASE\nCOPY secrets/key /k\n")
    with pytest.raises(BuildError, match="not found"):
        run_build(ctx, tiny_base.ref, AMD64)


def test_copy_flags_globs_and_add_tar(tmp_path: Path, tiny_base: TinyBase) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("inner/file.txt")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"inner"))
    files: dict[str, str | bytes] = {
        "x1.txt": "1",
        "x2.txt": "2",
        "y.txt": "y",
        "a.tar.gz": buf.getvalue(),
    }
    df = """\
ARG BASE
FROM $BASE
COPY --chown=app:app --chmod=600 x*.txt /g/
ADD a.tar.gz /unpacked/
COPY --link a.tar.gz /kept/
COPY --from=gen-image /etc/passwd /passwd-from-image
"""
    ctx = make_context(tmp_path, df.replace("gen-image", tiny_base.ref), files)
    built = run_build(ctx, tiny_base.ref, AMD64)
    g = built.layer("linux/amd64", 1)
    assert sorted(n for n in g if n.startswith("g/")) == ["g/x1.txt", "g/x2.txt"]
    assert (g["g/x1.txt"][0].uid, g["g/x1.txt"][0].gid) == (1000, 1000)
    assert stat.S_IMODE(g["g/x1.txt"][0].mode) == 0o600
    assert built.layer("linux/amd64", 2)["unpacked/inner/file.txt"][1] == b"inner"
    assert "kept/a.tar.gz" in built.layer("linux/amd64", 3)
    assert built.layer("linux/amd64", 4)["passwd-from-image"][1].startswith(b"root:")


# -- config, annotations, hooks ---------------------------------------------------------


def test_config_labels_and_oci_annotations(tmp_path: Path, tiny_base: TinyBase) -> None:
    # the user's --annotation s are the exporter's: tests/export/test_export.py
    df = """\
ARG BASE
FROM $BASE
LABEL from.dockerfile=yes
ENV A=1
WORKDIR /srv
USER app
EXPOSE 80
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hi"]
"""
    built = run_build(
        make_context(tmp_path, df),
        tiny_base.ref,
        labels={"from.flag": "1"},
        epoch=1700000000,
    )
    index = index_of(built)
    assert index.media_type == mt.OCI_INDEX
    assert index.annotations == {}
    c = built.config("linux/arm64")
    assert c.created == "2023-11-14T22:13:20Z"
    assert c.config.labels == {"from.dockerfile": "yes", "from.flag": "1"}
    assert c.config.env_dict()["A"] == "1"
    assert (c.config.working_dir, c.config.user) == ("/srv", "app")
    assert c.config.entrypoint == ("/bin/sh", "-c") and c.config.cmd == ("echo hi",)
    m = built.manifest("linux/arm64")
    assert m.media_type == mt.OCI_MANIFEST
    assert {mt.compression(d.media_type) for d in m.layers} == {"gzip"}
    assert m.annotations[CREATED] == "2023-11-14T22:13:20Z"
    assert m.annotations[BASE_NAME] == tiny_base.ref
    assert m.annotations[BASE_DIGEST].startswith("sha256:")


def test_interceptor_may_run_a_step_itself(tmp_path: Path, tiny_base: TinyBase) -> None:
    seen: list[StepContext] = []

    def native(ctx: StepContext) -> object:
        seen.append(ctx)
        if "pip install" in ctx.step.text:
            (ctx.rootfs / "installed-natively").write_text("yes")
            ctx.log("done natively")
            return RAN
        return None

    df = "ARG BASE\nFROM $BASE\nRUN pip install nothing\nRUN echo real > /real\n"
    built = run_build(make_context(tmp_path, df), tiny_base.ref, AMD64, interceptors=[native])
    assert [c.step.text for c in seen] == ["RUN pip install nothing", "RUN echo real > /real"]
    assert seen[0].sandbox is not None and seen[0].sandbox.argv[-1] == "pip install nothing"
    assert built.layer("linux/amd64", -2)["installed-natively"][1] == b"yes"
    assert built.layer("linux/amd64", -1)["real"][1] == b"real\n"
    assert "done natively" in built.output("linux/amd64")


def test_options_reject_conflicts(tmp_path: Path) -> None:
    with pytest.raises(BuildError):
        BuildOptions(tmp_path, tmp_path / "Dockerfile", [])
    with pytest.raises(BuildError):
        BuildOptions(tmp_path, tmp_path / "Dockerfile", BOTH, network="bridge")
    with pytest.raises(BuildError):
        BuildOptions(tmp_path, tmp_path / "Dockerfile", (*BOTH, BOTH[0]))
    with pytest.raises(DockerfileError, match="no such file"):
        build(BuildOptions(tmp_path, tmp_path / "nope", BOTH))
