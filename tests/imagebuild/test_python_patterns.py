"""Real Python Dockerfile patterns that use the BuildKit features manyarch now has, built
for both platforms on the python base, pip reaching PyPI through the host's CAs."""

from __future__ import annotations

from pathlib import Path

import pytest

from manyarch.imagebuild.cachemounts import cachemounts_dir
from manyarch.imagebuild.nativepip.interceptor import NativePipInterceptor
from manyarch.imagebuild.secrets import SecretSource
from tests.helpers.base_fixture import PythonBase
from tests.imagebuild.build_helpers import BOTH, make_context, run_build

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(autouse=True)
def isolated(isolated_build: Path) -> Path:
    """Every test here builds in a store and work dir of its own (see conftest)."""
    return isolated_build


def test_pip_cache_mount_and_requirements_in_tmp(tmp_path: Path, python_base: PythonBase) -> None:
    # Docker's documented pip cache pattern (RUN --mount=type=cache,target=/root/.cache/pip)
    # and the requirements copied to /tmp, installed by the next RUN (BuildKit keeps /tmp);
    # the line installs natively (the cache is a tool's: left out), or in the sandbox
    df = """\
ARG BASE
FROM ${BASE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1
COPY requirements.txt /tmp/
RUN --mount=type=cache,target=/root/.cache/pip pip install -r /tmp/requirements.txt
RUN python3 -c "import six; print('six', six.__version__)"
"""
    ctx = make_context(tmp_path, df, {"requirements.txt": "six==1.16.0\n"})
    native = NativePipInterceptor(tmp_path / "wheels")
    built = run_build(ctx, python_base.ref, BOTH, interceptors=[native], epoch=0)
    for plat in ("linux/amd64", "linux/arm64"):
        assert built.output(plat)[-1] == "six 1.16.0"
        names = [n for i in range(len(built.manifest(plat).layers)) for n in built.layer(plat, i)]
        assert not [n for n in names if n.startswith("root/.cache")]
    assert native.native == 2, native.fallbacks  # both pip lines, on the host
    # without native installs, pip runs in the sandbox over the cache mount
    # (what pip caches depends on the index's answers: this machine's proxy makes none)
    again = run_build(ctx, python_base.ref, BOTH[:1], epoch=0)
    assert again.output("linux/amd64")[-1] == "six 1.16.0"
    assert [p.name for p in cachemounts_dir().iterdir()]  # made, kept for the next build
    assert any(n.endswith("/six.py") for n in again.layer("linux/amd64", 2))
    assert not [n for n in again.layer("linux/amd64", 2) if n.startswith("root/.cache")]


def test_private_index_from_a_secret(
    tmp_path: Path, python_base: PythonBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the documented "private index" pattern: the index URL (with its token) from a
    # secret, in the environment of the one RUN; never in the image or its history
    monkeypatch.setenv("MANYARCH_TEST_INDEX", "https://pypi.org/simple")
    df = """\
ARG BASE
FROM ${BASE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1
RUN --mount=type=secret,id=index,env=PIP_INDEX_URL,required \\
    pip install --no-cache-dir --no-compile six==1.16.0 && test -n "$PIP_INDEX_URL"
"""
    secrets = {"index": SecretSource.parse("id=index,env=MANYARCH_TEST_INDEX")}
    built = run_build(make_context(tmp_path, df), python_base.ref, BOTH, secrets=secrets, epoch=0)
    for plat in ("linux/amd64", "linux/arm64"):
        top = built.layer(plat, -1)
        assert any(n.endswith("six.py") for n in top)
        blob = b"".join(d for _, d in top.values() if d)
        assert b"pypi.org/simple" not in blob
        assert "pypi.org" not in built.config(plat).to_document().data.decode()


UV_PROJECT = Path(__file__).resolve().parents[2] / "bench" / "corpus" / "04-uv-project"


def test_uv_documented_pattern_with_cache_and_bind_mounts(
    tmp_path: Path, python_base: PythonBase
) -> None:
    # uv's docs, "Using uv in Docker" (astral-sh/uv-docker-example): uv sync with a cache
    # mount and pyproject.toml / uv.lock bind-mounted from the context, relative to WORKDIR
    df = """\
ARG BASE
FROM ${BASE}
ENV PIP_BREAK_SYSTEM_PACKAGES=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
RUN --mount=type=cache,target=/root/.cache/uv \\
    --mount=type=bind,source=uv.lock,target=uv.lock \\
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \\
    uv sync --locked --no-install-project --no-dev
RUN /app/.venv/bin/python -c "import httpx, rich; print('deps', httpx.__version__)"
"""
    files = {
        p.name: p.read_bytes() for p in (UV_PROJECT / "pyproject.toml", UV_PROJECT / "uv.lock")
    }
    ctx = make_context(tmp_path, df, files)
    built = run_build(ctx, python_base.ref, BOTH[:1], epoch=0)
    assert built.output("linux/amd64")[-1] == "deps 0.28.1"
    sync = built.layer("linux/amd64", -1)  # the last RUN only reads: no layer
    assert "app/uv.lock" not in sync and "app/pyproject.toml" not in sync  # the bind mounts'
    assert not [n for n in sync if n.startswith("root/.cache")]
    # uv filled its cache, kept for the next build (a lock and id are manyarch's own)
    assert any(p.is_file() for p in cachemounts_dir().glob("*/0/**/*"))
