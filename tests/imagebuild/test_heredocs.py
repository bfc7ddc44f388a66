"""Heredocs in COPY and RUN as BuildKit runs them (frontend/dockerfile/
dockerfile_heredoc_test.go; each test names the one it follows)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from manyarch.imagebuild.cache import build_hooks
from manyarch.oci.platform import Platform
from manyarch.store import open_store
from tests.helpers.tiny_base import TinyBase, tiny_base
from tests.imagebuild.build_helpers import BOTH, make_context, run_build

__all__ = ["tiny_base"]

AMD64 = (Platform.parse("linux/amd64"),)


#: every test here builds in a store and work dir of its own (see conftest)
pytestmark = pytest.mark.usefixtures("isolated_build")


def test_copy_heredocs(tmp_path: Path, tiny_base: TinyBase) -> None:
    # testCopyHeredoc (one, two into a directory, --chmod, --chown) and
    # testHeredocVarSubstitution (expanded unless the marker is quoted; quotes kept)
    df = """\
ARG BASE
FROM $BASE
ARG name=world
COPY <<EOF /single
single file
EOF
COPY <<EOF <<EOF2 /double/
first
EOF
second
EOF2
COPY --chmod=751 --chown=app:app <<EOF /perm
p
EOF
COPY <<EOF /dest/c1
Hello ${name}!
EOF
COPY <<'EOF' /dest/c2
Hello ${name}!
EOF
COPY <<EOF /dest/q1
Hello '${name}'!
EOF
COPY <<"EOF" /dest/qdouble2
Hello "${name}"!
EOF
"""
    built = run_build(make_context(tmp_path, df), tiny_base.ref, AMD64)
    files = {}
    for i in range(1, len(built.manifest("linux/amd64").layers)):
        files.update(built.layer("linux/amd64", i))
    assert files["single"][1] == b"single file\n"
    assert (files["double/EOF"][1], files["double/EOF2"][1]) == (b"first\n", b"second\n")
    info = files["perm"][0]
    assert (stat.S_IMODE(info.mode), info.uid, info.gid) == (0o751, 1000, 1000)
    assert stat.S_IMODE(files["single"][0].mode) == 0o644
    assert {k: v[1] for k, v in files.items() if k.startswith("dest/")} == {
        "dest/c1": b"Hello world!\n",
        "dest/c2": b"Hello ${name}!\n",
        "dest/q1": b"Hello 'world'!\n",
        "dest/qdouble2": b'Hello "${name}"!\n',
    }


def test_run_heredoc_with_a_shebang_runs_as_a_file(tmp_path: Path, tiny_base: TinyBase) -> None:
    # testRunShebangHeredoc (#!/bin/... run as its interpreter), testRunBasicHeredoc,
    # testRunComplexHeredoc (several heredocs, one command); both platforms: the script
    # runs under the target's interpreter
    df = """\
ARG BASE
FROM $BASE
RUN <<EOF
#!/bin/cat
shown by cat
EOF
RUN <<EOF
echo plain "$(uname -m)"
EOF
RUN cat /dev/stdin <<EOF1 - <<EOF2 > /out
one
EOF1
two
EOF2
"""
    built = run_build(make_context(tmp_path, df), tiny_base.ref, BOTH)
    for plat, machine in (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")):
        out = built.output(plat)
        assert out[:3] == ["#!/bin/cat", "shown by cat", f"plain {machine}"]
        layers = built.manifest(plat).layers
        assert built.layer(plat, -1)["out"][1] in (b"one\n", b"two\n", b"one\ntwo\n")
        assert not [n for i in range(1, len(layers)) for n in built.layer(plat, i) if "dev" in n]


def test_copy_heredoc_through_the_build_cache(tmp_path: Path, tiny_base: TinyBase) -> None:
    # the build cache keys a COPY on its heredocs: an edited document is copied again
    df = "ARG BASE\nFROM $BASE\nCOPY <<EOF /f\none\nEOF\n"
    ctx = make_context(tmp_path, df)
    for expected in ("one", "two", "two"):
        (ctx / "Dockerfile").write_text(df.replace("one", expected))
        hooks = build_hooks(open_store(), native_pip=False)
        built = run_build(ctx, tiny_base.ref, AMD64, interceptors=hooks.interceptors,
                          observers=hooks.observers, epoch=0)  # fmt: skip
        hooks.finish()
        assert built.layer("linux/amd64", -1)["f"][1] == f"{expected}\n".encode()
    assert hooks.cache is not None and hooks.cache.hits == 1
