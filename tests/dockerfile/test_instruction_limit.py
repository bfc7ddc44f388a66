"""A huge instruction is refused at once, in one line (the Go parser is quadratic in
continuation lines, and Linux would refuse to run it anyway)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from manyarch import dockerfile as df
from manyarch.dockerfile.syntax import MAX_INSTRUCTION
from manyarch.errors import DockerfileError
from tests.helpers.cli import manyarch

PIECE = "A" * 50_000


def _continued(head: str, pieces: int, sep: str = " ") -> str:
    return f"FROM scratch\n{head}\\\n" + (PIECE + sep + "\\\n") * pieces + "end\n"


@pytest.mark.parametrize(
    "text",
    [
        _continued("RUN echo ", 200),
        _continued("ENV A=", 200, ""),
        _continued("COPY ", 200),
        _continued("LABEL a=", 200, ""),
    ],
    ids=["run", "env", "copy", "label"],
)
def test_a_10_mb_instruction_is_refused_quickly(text: str) -> None:
    start = time.monotonic()
    with pytest.raises(DockerfileError) as caught:
        df.parse(text)
    assert time.monotonic() - start < 2
    message = caught.value.message
    assert caught.value.line == 2
    assert "\n" not in message and len(message) < 200, message
    assert f"{MAX_INSTRUCTION // 1024} KiB" in message


def test_an_instruction_below_the_limit_parses() -> None:
    text = _continued("RUN echo ", (MAX_INSTRUCTION - 1000) // 50_002)
    [stage] = df.parse(text).stages
    assert stage.instructions[0].cmd == "RUN"


def test_the_limit_lets_every_accepted_run_be_run() -> None:
    # Linux's MAX_ARG_STRLEN (32 pages): the longest single argument of an exec,
    # and a shell-form RUN is one argument of `sh -c`
    assert 32 * os.sysconf("SC_PAGE_SIZE") >= MAX_INSTRUCTION


def test_the_cli_says_it_in_one_line(tmp_path: Path, isolated_build: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(_continued("RUN echo ", 200))
    start = time.monotonic()
    r = manyarch(dict(os.environ), "build", "--platform", "linux/amd64", str(ctx), timeout=60)
    assert time.monotonic() - start < 20
    assert r.returncode == 1
    assert len(r.stdout + r.stderr) < 1000, (r.stdout + r.stderr)[:500]
    assert "Errno" not in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and "Dockerfile:2:" in r.stderr


@pytest.mark.parametrize(
    "head, tail",
    [("COPY <<EOF /big", "EOF"), ("RUN <<-'END' sh", "\tEND"), ("RUN cat <<A > /a", "A")],
)
def test_a_10_mb_heredoc_counts_in_its_instruction(head: str, tail: str) -> None:
    text = f"FROM scratch\n{head}\n" + ("x" * 99 + "\n") * 100_000 + f"{tail}\n"
    start = time.monotonic()
    with pytest.raises(DockerfileError) as caught:
        df.parse(text)
    assert time.monotonic() - start < 2
    assert caught.value.line == 2


def test_a_heredoc_below_the_limit_and_what_follows_it_parse() -> None:
    body = ("y" * 99 + "\n") * ((MAX_INSTRUCTION - 2000) // 100)
    after = ("RUN echo " + "z" * 1000 + "\n") * 200  # 200 KB after the heredoc, in short steps
    text = f"FROM scratch\nCOPY <<EOF /f\n{body}EOF\n{after}"
    [stage] = df.parse(text).stages
    assert len(stage.instructions) == 201
