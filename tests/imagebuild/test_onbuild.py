"""ONBUILD as BuildKit runs it (frontend/dockerfile/dockerfile_onbuild_test.go)."""

from __future__ import annotations

from pathlib import Path

import pytest

from manyarch.dockerfile import parse
from manyarch.errors import DockerfileError
from manyarch.oci.platform import Platform
from manyarch.publish import parse_destination, publish
from tests.helpers.tiny_base import TinyBase, tiny_base
from tests.imagebuild.build_helpers import make_context, run_build

__all__ = ["tiny_base"]

AMD64 = (Platform.parse("linux/amd64"),)


#: every test here builds in a store and work dir of its own (see conftest)
pytestmark = pytest.mark.usefixtures("isolated_build")


def test_onbuild_triggers_run_in_the_child_stage(tmp_path: Path, tiny_base: TinyBase) -> None:
    # testOnBuildInheritedStageRun (a stage FROM a stage with triggers runs them first),
    # testOnBuildCleared (the child's image keeps none; the parent's keeps its own)
    df = """\
ARG BASE
FROM $BASE AS base
ONBUILD RUN mkdir -p /out && echo 11 >> /out/foo
ONBUILD COPY hello /out/
FROM base AS mid
RUN cat /out/foo /out/hello
"""
    ctx = make_context(tmp_path, df, {"hello": "hi\n"})
    built = run_build(ctx, tiny_base.ref, AMD64)
    assert built.output("linux/amd64") == ["11", "hi"]
    config = built.config("linux/amd64")
    assert not config.config.on_build
    assert [h.created_by for h in config.history[-3:]] == [
        "RUN /bin/sh -c mkdir -p /out && echo 11 >> /out/foo # buildkit",
        "COPY hello /out/ # buildkit", "RUN /bin/sh -c cat /out/foo /out/hello",
    ]  # fmt: skip
    parent = run_build(ctx, tiny_base.ref, AMD64, target="base")
    assert parent.config("linux/amd64").config.on_build == (
        "RUN mkdir -p /out && echo 11 >> /out/foo", "COPY hello /out/",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("ONBUILD ONBUILD RUN true", "Chaining ONBUILD"),
        ("ONBUILD FROM alpine", "FROM isn't allowed"),
        ("ONBUILD RUN --foo true", "unknown flag --foo"),
    ],
)
def test_onbuild_refuses_what_buildkit_refuses(line: str, fragment: str) -> None:
    # BuildKit's instructions/parse.go parseOnBuild
    with pytest.raises(DockerfileError, match=fragment) as exc:
        parse(f"FROM a\n{line}\n")
    assert exc.value.line == 2


def test_onbuild_triggers_of_a_base_image(tmp_path: Path, tiny_base: TinyBase) -> None:
    # testOnBuildCleared: an image with triggers, pushed, then built FROM: they run there
    ctx = make_context(tmp_path, "ARG BASE\nFROM $BASE\nONBUILD RUN echo triggered > /t\n")
    parent = run_build(ctx, tiny_base.ref, AMD64)
    layout = tmp_path / "parent-layout"
    publish(parent.store, parent.result.descriptor, parse_destination(f"oci-layout://{layout}:p"))
    (ctx / "Dockerfile").write_text("ARG BASE\nFROM $BASE\nRUN cat /t\n")
    child = run_build(ctx, f"oci-layout://{layout}:p", AMD64)
    assert child.output("linux/amd64") == ["triggered"]
    assert not child.config("linux/amd64").config.on_build
