"""Parsing: stages, directives, flags, heredocs, and errors that name file and line."""

from __future__ import annotations

import pytest

from manyarch.dockerfile import parse
from manyarch.errors import DockerfileError


def test_stages_and_global_args() -> None:
    df = parse(
        "# syntax=docker/dockerfile:1\n"
        "ARG GO=1.22\n"
        "FROM --platform=$BUILDPLATFORM golang:${GO} AS Build\n"
        "RUN go build\n"
        "from scratch\n"
        "copy --from=build /out /app\n",
        file="Dockerfile.go",
    )
    assert df.file == "Dockerfile.go"
    assert df.syntax == "docker/dockerfile:1"
    assert df.escape == "\\"
    assert [a.text for a in df.global_args] == ["ARG GO=1.22"]
    first, second = df.stages
    assert (first.index, first.name, first.base, first.platform, first.line) == (
        0, "build", "golang:${GO}", "$BUILDPLATFORM", 3,
    )  # fmt: skip
    assert [i.cmd for i in first.instructions] == ["RUN"]
    assert (second.name, second.base, second.platform) == (None, "scratch", None)
    (copy,) = second.instructions
    assert copy.cmd == "COPY" and copy.flag("from") == "build" and copy.args == ("/out", "/app")
    assert df.stage_named("BUILD") is first


def test_continuations_and_escape_directive() -> None:
    df = parse("# escape=`\nFROM a\nRUN echo a `\n  b\nCOPY c:\\x d\n")
    assert df.escape == "`"
    run, copy = df.stages[0].instructions
    assert (run.line, run.end_line) == (3, 4)
    assert run.args == ("echo a   b",)
    assert copy.args == ("c:\\x", "d")


@pytest.mark.parametrize(
    ("text", "flags"),
    [
        ("FROM a\nCOPY --link --chmod=755 a b\n", (("link", "true"), ("chmod", "755"))),
        ("FROM a\nCOPY --link=false a b\n", (("link", "false"),)),
        ("FROM a\nRUN --network=none true\n", (("network", "none"),)),
        ("FROM a\nHEALTHCHECK --retries=3 CMD true\n", (("retries", "3"),)),
    ],
)
def test_flags(text: str, flags: tuple[tuple[str, str], ...]) -> None:
    assert parse(text).stages[0].instructions[0].flags == flags


def test_heredoc_markers() -> None:
    df = parse('FROM a\nRUN <<-"EOF"\n\techo $x\n\tEOF\n')
    (run,) = df.stages[0].instructions
    (doc,) = run.heredocs
    assert (doc.name, doc.chomp, doc.expand) == ("EOF", True, False)
    assert doc.data == "echo $x\n"


# (text, line or None, a fragment of the message)
ERRORS = [
    ("", None, "empty"),
    ("\n  \n# just a comment\n", None, "no instructions"),
    ("ARG A=1\n", None, "no FROM"),
    ("RUN true\nFROM a\n", 1, "before the first FROM"),
    ("FROM a\nFOO bar\n", 2, "unknown instruction: FOO"),
    # RUN --mount's own errors come with the plan: tests/dockerfile/test_mounts.py
    ("FROM a\nRUN --foo true\n", 2, "unknown flag --foo for RUN"),
    ("FROM a\nRUN --device=x true\n", 2, "RUN --device is not supported"),
    ("FROM a\nCOPY --from a b\n", 2, "missing a value on flag --from"),
    ("FROM a\nCOPY --from=x --from=y a b\n", 2, "duplicate flag"),
    ("FROM a\nCOPY --link=maybe a b\n", 2, "expecting boolean"),
    ("FROM a\nENV --x=1 A=b\n", 2, "unknown flag --x for ENV"),
    ("ONBUILD RUN true\nFROM a\n", 1, "ONBUILD comes before the first FROM"),
    ("FROM a\nCOPY onlyone\n", 2, "requires at least two arguments"),
    ("FROM a\nEXPOSE\n", 2, "EXPOSE requires at least one argument"),
    ("FROM a\nSHELL /bin/bash -c\n", 2, "JSON form"),
    ("FROM a b\n", 1, "one or three arguments"),
    ("FROM a AS 1st\n", 1, "invalid name for build stage"),
    ("FROM a AS x\nFROM b AS X\n", 2, "duplicate stage name"),
    ("FROM a\n\n\nENV A\n", 4, "ENV must have two arguments"),
    ("FROM a\nLABEL a\n", 2, "LABEL must have two arguments"),
    ("FROM a\nRUN <<EOF\nno end\n", 2, "unterminated heredoc"),
    ("# escape=x\nFROM a\n", 1, "invalid escape token"),
    ("# syntax=example.com/my/frontend\nFROM a\n", 1, "cannot run"),
    # Only RUN, COPY and ADD take heredocs: the body of another is read as instructions.
    ("FROM a\nCMD <<EOF\nx\nEOF\n", 3, "unknown instruction: x"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "fragment"), ERRORS)
def test_errors_name_file_and_line(text: str, line: int | None, fragment: str) -> None:
    with pytest.raises(DockerfileError) as exc:
        parse(text, file="ctx/Dockerfile")
    err = exc.value
    assert err.file == "ctx/Dockerfile"
    assert err.line == line
    assert fragment in err.message
    where = f"ctx/Dockerfile:{line}: " if line is not None else "ctx/Dockerfile: "
    assert str(err).startswith(where)
