"""``pip wheel`` done on the host fills the wheelhouse the emulated pip fills, file by file.

A small Dockerfile (a wheel-only closure with a compiled aarch64 wheel, a
pure-Python sdist built on the host, a line that must fall back, then the
wheelhouse installed with ``--no-index``) built natively and under QEMU for
linux/arm64 (the emulated build cached by its inputs, see
:mod:`tests.imagebuild.emulated`).
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from manyarch.imagebuild.nativepip.interceptor import NativePipInterceptor
from manyarch.imagebuild.nativepip.wheeldir import Save, WheelJob, link_filename
from manyarch.oci.platform import Platform
from tests.helpers.base_fixture import PythonBase
from tests.imagebuild.build_helpers import Built
from tests.imagebuild.emulated import native_and_emulated
from tests.imagebuild.layer_compare import layer_differences, layer_entries

ARM64 = (Platform.parse("linux/arm64"),)

DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_BREAK_SYSTEM_PACKAGES=1
WORKDIR /src
COPY requirements.txt .
# a wheel-only closure: jinja2 (pure) and MarkupSafe (cp311 aarch64), into a new directory
RUN pip wheel --no-cache-dir --wheel-dir=/src/wheels -r requirements.txt
# a pure-Python sdist built on the host (pip's legacy setup.py build); an option's prefix
# (the image's pip reads the line) and -w's short form relative to WORKDIR
RUN pip wheel --no-cache --no-deps -wout docopt==0.6.2
# --no-binary: pip builds from source, so the line stays emulated and says why
RUN pip wheel --no-cache-dir --no-binary=:all: --no-deps -w /src/src-wheels docopt==0.6.2
# the wheelhouses installed without an index (the second stage of a wheelhouse build), one
# of them filled earlier in the same line
RUN pip wheel --no-cache-dir -w /src/more idna==3.10 && \
    pip install --no-cache-dir --no-index --find-links=/src/wheels -f /src/more \
        -r requirements.txt idna
"""
FILES = {"requirements.txt": "jinja2==3.1.4\nMarkupSafe==3.0.2\n"}
#: the RUN lines above, and the one emulated among them
RUNS, EMULATED = 4, 1


@pytest.fixture(scope="module")
def wheelhouse(
    python_base: PythonBase, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Built, Built, NativePipInterceptor]:
    """DOCKERFILE built natively and under QEMU for linux/arm64."""
    return native_and_emulated(tmp_path_factory.mktemp("wheeldir"), python_base, DOCKERFILE, FILES)


@pytest.mark.slow
@pytest.mark.timeout(900)  # builds the module's fixture
def test_pip_wheel_lines_are_native_and_say_so(
    wheelhouse: tuple[Built, Built, NativePipInterceptor],
) -> None:
    native, _, native_pip = wheelhouse
    assert native_pip.native == RUNS - EMULATED, native_pip.fallbacks
    assert native_pip.emulated == EMULATED
    assert native_pip.fallbacks == ["--no-binary: pip builds from source"]
    out = native.output("linux/arm64")
    assert any("native: 2 wheels for linux/arm64" in line and "/src/wheels" in line for line in out)
    assert any("native: 1 wheels for linux/arm64" in line and "/src/out" in line for line in out)
    assert "emulated (QEMU): --no-binary: pip builds from source" in out
    assert any(
        "native: 3 distributions for linux/arm64" in line
        and "1 wheels for linux/arm64 saved into /src/more" in line
        for line in out
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pip_wheel_saves_what_the_emulated_pip_saves(
    wheelhouse: tuple[Built, Built, NativePipInterceptor],
) -> None:
    native, emulated, _ = wheelhouse
    n_layers = len(emulated.manifest("linux/arm64").layers)
    assert len(native.manifest("linux/arm64").layers) == n_layers
    for i in range(n_layers - RUNS, n_layers):
        n = layer_entries(native, "linux/arm64", i)
        e = layer_entries(emulated, "linux/arm64", i)
        diffs = layer_differences(n, e)
        # a wheel pip built has its build's timestamps (in either build): its names and
        # modes are compared above, its members and their bytes here
        built = [d for d in diffs if d.endswith(".whl: contents differ")]
        assert [d for d in diffs if d not in built] == [], (i, diffs)
        for d in built:
            name = d.removesuffix(": contents differ")
            assert name.startswith(("src/out/", "src/src-wheels/")), d
            assert _members(n[name][1]) == _members(e[name][1])
    first = layer_entries(native, "linux/arm64", n_layers - RUNS)
    # downloaded wheels: pip's file names, the bytes as published, 0644 in a 0755 directory
    wheels = sorted(k for k in first if k.startswith("src/wheels/"))
    assert wheels == [
        "src/wheels/MarkupSafe-3.0.2-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "src/wheels/jinja2-3.1.4-py3-none-any.whl",
    ]
    assert first["src/wheels"][0].mode == 0o755
    assert {first[w][0].mode for w in wheels} == {0o644}
    second = layer_entries(native, "linux/arm64", n_layers - RUNS + 1)
    assert [k for k in second if k.endswith(".whl")] == [
        "src/out/docopt-0.6.2-py2.py3-none-any.whl"
    ]


def _members(data: bytes | None) -> dict[str, bytes]:
    assert data is not None
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://f/p/a/idna-3.10-py3-none-any.whl#sha256=ab", "idna-3.10-py3-none-any.whl"),
        ("https://h/torch-2.1.0%2Bcpu-cp311-none-any.whl", "torch-2.1.0+cpu-cp311-none-any.whl"),
        ("file:///wheels/demo_tool-1.0-py3-none-any.whl", "demo_tool-1.0-py3-none-any.whl"),
    ],
)
def test_link_filename_is_pips(url: str, name: str) -> None:
    assert link_filename(url) == name


def test_wheel_job_saves_as_pip_does(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "srv").mkdir(parents=True)
    os.chmod(root / "srv", 0o700)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a-1-py3-none-any.whl", "b-1-py3-none-any.whl", "c-1-py3-none-any.whl"):
        (src / name).write_bytes(name.encode())
    job = WheelJob(
        "/srv/deep/wh",
        [
            Save(src / "a-1-py3-none-any.whl", "a-1-py3-none-any.whl", 0o644, built=False),
            Save(src / "b-1-py3-none-any.whl", "b-1-py3-none-any.whl", 0o755, built=False),
            Save(src / "c-1-py3-none-any.whl", "c-1-py3-none-any.whl", 0o644, built=True),
        ],
        ["a==1", "b==1", "c==1"],
    )
    wh = root / "srv/deep/wh"
    assert job.run(root, tmp_path / "cache") == ["a==1", "b==1", "c==1"]
    # os.makedirs under umask 022: the missing parents too; an existing one is left alone
    assert stat.S_IMODE((root / "srv").stat().st_mode) == 0o700
    assert {stat.S_IMODE(d.stat().st_mode) for d in (root / "srv/deep", wh)} == {0o755}
    assert stat.S_IMODE((wh / "b-1-py3-none-any.whl").stat().st_mode) == 0o755
    assert (wh / "b-1-py3-none-any.whl").read_bytes() == b"b-1-py3-none-any.whl"
    # a download pip finds in the directory is used as it is; a built wheel is copied over
    (wh / "a-1-py3-none-any.whl").write_bytes(b"there before")
    (wh / "c-1-py3-none-any.whl").write_bytes(b"there before")
    job.run(root, tmp_path / "cache")
    assert (wh / "a-1-py3-none-any.whl").read_bytes() == b"there before"
    assert (wh / "c-1-py3-none-any.whl").read_bytes() == b"c-1-py3-none-any.whl"
    assert stat.S_IMODE((wh / "c-1-py3-none-any.whl").stat().st_mode) == 0o644
