"""A hostile build context: its Dockerfile, .dockerignore and file names.

No error prints a line of a file outside the context, nothing hangs, and
nothing ends in a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from manyarch.errors import StepFailed
from tests.helpers.cli import manyarch
from tests.helpers.tiny_base import TinyBase, tiny_base

__all__ = ["tiny_base"]

SECRET = "root:$6$SECRETHASH:19000:0:99999:7:::\n"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the context standing for the host's /etc/shadow."""
    p = tmp_path / "shadow"
    p.write_text(SECRET)
    return p


def _ctx(tmp_path: Path, dockerfile: str | None = "FROM scratch\nCOPY . /\n") -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    if dockerfile is not None:
        (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "a").write_text("a\n")
    return ctx


def _build(ctx: Path, *extra: str, timeout: float = 60) -> tuple[int, str]:
    r = manyarch(
        dict(os.environ), "build", "--platform", "linux/amd64", *extra, str(ctx), timeout=timeout
    )
    return r.returncode, r.stdout + r.stderr


def _refused(code: int, out: str, *words: str) -> None:
    assert code != 0, out
    assert "Traceback" not in out, out
    assert "SECRETHASH" not in out, "a line of a file outside the context was printed"
    for word in words:
        assert word in out, out


@pytest.mark.parametrize("extra", [(), ("--check",)], ids=["build", "check"])
def test_a_dockerfile_linked_out_of_the_context_is_refused(
    tmp_path: Path, secret: Path, isolated_build: Path, extra: tuple[str, ...]
) -> None:
    ctx = _ctx(tmp_path, None)
    os.symlink(secret, ctx / "Dockerfile")
    _refused(*_build(ctx, *extra), "Dockerfile", "leads out of the build context")


def test_a_relative_link_out_of_the_context_is_refused(
    tmp_path: Path, secret: Path, isolated_build: Path
) -> None:
    ctx = _ctx(tmp_path, None)
    os.symlink("../shadow", ctx / "Dockerfile")
    _refused(*_build(ctx), "leads out of the build context")


def test_a_dockerignore_linked_out_of_the_context_is_refused(
    tmp_path: Path, secret: Path, isolated_build: Path
) -> None:
    ctx = _ctx(tmp_path)
    os.symlink(secret, ctx / ".dockerignore")
    _refused(*_build(ctx), ".dockerignore", "leads out of the build context")


def test_a_dockerfile_named_outside_with_f_is_the_users_choice(
    tmp_path: Path, isolated_build: Path
) -> None:
    ctx = _ctx(tmp_path, None)
    outside = tmp_path / "elsewhere.Dockerfile"
    outside.write_text("FROM scratch\nCOPY a /a\n")
    code, out = _build(ctx, "-f", str(outside))
    assert code == 0, out


def test_a_dockerfile_that_is_a_fifo_does_not_hang(tmp_path: Path, isolated_build: Path) -> None:
    ctx = _ctx(tmp_path, None)
    os.mkfifo(ctx / "Dockerfile")
    _refused(*_build(ctx, timeout=30), "not a regular file")


@pytest.mark.parametrize("name", ["Dockerfile", ".dockerignore"])
def test_non_utf8_dockerfile_and_dockerignore(
    tmp_path: Path, isolated_build: Path, name: str
) -> None:
    ctx = _ctx(tmp_path)
    (ctx / name).write_bytes(
        b"FROM scratch\n# caf\xe9\nCOPY . /\n" if name == "Dockerfile" else b"caf\xe9\n"
    )
    _refused(*_build(ctx), name, "Dockerfile:2" if name == "Dockerfile" else "UTF-8")


def test_non_utf8_file_names_in_the_context(tmp_path: Path, isolated_build: Path) -> None:
    ctx = _ctx(tmp_path)
    (ctx / os.fsdecode(b"caf\xe9")).write_text("latin-1 name\n")
    (ctx / ".dockerignore").write_text("ignored\n")
    code, out = _build(ctx)
    assert "Traceback" not in out, out
    assert code == 0, out


def test_an_environment_linux_cannot_pass_is_one_clear_error(
    tmp_path: Path, isolated_build: Path, tiny_base: TinyBase
) -> None:
    # each ENV is below the instruction limit; together they pass Linux's ARG_MAX
    # (2 MiB under the usual 8 MiB stack limit): 20 values of 120 KB, made by
    # expansion (a Dockerfile of 3.6 MB of literal values takes ~40 s to parse)
    value = "v" * 60_000
    envs = f"ENV A={value}\n" + "".join(f"ENV A{i}=$A$A\n" for i in range(20))
    ctx = _ctx(tmp_path, f"FROM {tiny_base.ref}\n{envs}RUN true\n")
    code, out = _build(ctx)
    error = out[out.rindex("\nerror: ") + 1 :]
    assert code == 1, error[-2000:]
    assert "Traceback" not in out and "Errno" not in error, error[-2000:]
    assert "longer than Linux allows" in error, error[-2000:]


def test_a_failed_steps_error_shows_a_short_step() -> None:
    err = StepFailed("exit 1", file="Dockerfile", line=2, platform="linux/amd64",
                     step="RUN " + "x" * 100_000)  # fmt: skip
    assert len(err.message) < 400 and err.step.endswith("x" * 10)
