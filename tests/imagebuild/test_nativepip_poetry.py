"""``poetry install`` done by the image's poetry on the host lands what the emulated one does.

The shape of bench/corpus/09-poetry (poetry from pip, no virtualenv, the
main group only, ``--no-root``), built natively and under QEMU for
linux/arm64 and compared file by file (the emulated build cached by its
inputs, see :mod:`tests.imagebuild.emulated`); then the locks and command
lines that stay emulated, and why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from manyarch.imagebuild.nativepip.command import NativePipUnavailable
from manyarch.imagebuild.nativepip.interceptor import NativePipInterceptor
from manyarch.imagebuild.nativepip.poetry import check_args, check_lock
from manyarch.oci.platform import Platform
from tests.helpers.base_fixture import PythonBase
from tests.imagebuild.build_helpers import Built
from tests.imagebuild.emulated import native_and_emulated
from tests.imagebuild.layer_compare import assert_last_layers_equal

ARM64 = (Platform.parse("linux/arm64"),)
PROJECT = Path(__file__).resolve().parents[2] / "bench/corpus/09-poetry"

DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_CACHE_DIR=1 POETRY_VIRTUALENVS_CREATE=false \\
    POETRY_NO_INTERACTION=1
RUN pip install poetry==2.2.1
WORKDIR /code
COPY pyproject.toml poetry.lock /code/
# attrs installed, idna (3.20 with poetry) downgraded to the lock's 3.11 by pip uninstall;
# the downloads kept in poetry's cache
RUN poetry install --no-root --only main
"""
FILES = {n: (PROJECT / n).read_text() for n in ("pyproject.toml", "poetry.lock")}


#: every test here builds in a store and work dir of its own (see conftest)
pytestmark = pytest.mark.usefixtures("isolated_build")


@pytest.fixture(scope="module")
def poetry_builds(
    python_base: PythonBase, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Built, Built, NativePipInterceptor]:
    """DOCKERFILE built natively and under QEMU for linux/arm64."""
    return native_and_emulated(tmp_path_factory.mktemp("poetry"), python_base, DOCKERFILE, FILES)


@pytest.mark.slow
@pytest.mark.timeout(900)  # builds the module's fixture
def test_poetry_install_is_native_and_equals_the_emulated_one(
    poetry_builds: tuple[Built, Built, NativePipInterceptor],
) -> None:
    native, emulated, native_pip = poetry_builds
    assert (native_pip.native, native_pip.emulated) == (2, 0), native_pip.fallbacks
    out = native.output("linux/arm64")
    assert any(line.startswith("native: poetry install for linux/arm64") for line in out)
    # the pip line, WORKDIR, COPY and poetry's: bytes, modes, owners, whiteouts; the pycs
    # an import in poetry's run writes name the source's mtime of that run
    assert_last_layers_equal(native, emulated, 4, pyc_any_mtime=True)
    layer = native.layer("linux/arm64", -1)
    site = "usr/local/lib/python3.11/dist-packages/"
    assert layer[site + "attrs-25.4.0.dist-info/INSTALLER"][1] == b"Poetry 2.2.1"
    assert site + ".wh.idna-3.20.dist-info" in layer
    assert any(k.startswith("root/.cache/pypoetry/artifacts/") for k in layer)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--no-root", "--only", "main", "-n"], None),
        (["--no-root", "--only=main,docs", "--without", "dev"], None),
        (["--only", "main"], "installs the project too"),
        (["--no-root", "--sync"], "--sync is not done natively"),
        (["--no-root", "--compile"], "--compile is not done natively"),
    ],
)
def test_poetry_options(args: list[str], reason: str | None) -> None:
    if reason is None:
        check_args(args)
    else:
        with pytest.raises(NativePipUnavailable, match=reason):
            check_args(args)


def _lock(tmp_path: Path, package: str) -> Path:
    (tmp_path / "pyproject.toml").write_text("[tool.poetry]\nname = 'x'\n")
    (tmp_path / "poetry.lock").write_text(f"[[package]]\n{package}\n[metadata]\n")
    return tmp_path


@pytest.mark.parametrize(
    ("package", "reason"),
    [
        ('name = "a"\nversion = "1"\nfiles = [{file = "a-1-py3-none-any.whl", hash = "x"}]', None),
        (
            'name = "b"\nversion = "1"\nfiles = [{file = "b-1-cp311-cp311-manylinux_2_17_aarch64'
            '.whl", hash = "x"}, {file = "b-1.tar.gz", hash = "y"}]',
            "by platform",
        ),
        ('name = "c"\nversion = "1"\nfiles = [{file = "c-1.tar.gz", hash = "y"}]', "no wheel"),
        (
            'name = "d"\nversion = "1"\nfiles = []\n[package.source]\ntype = "git"\nurl = "u"',
            "not from PyPI",
        ),
        (
            'name = "e"\nversion = "1"\nmarkers = "platform_machine == \\"x86_64\\""\n'
            'files = [{file = "e-1-py3-none-any.whl", hash = "x"}]',
            "marker on the machine",
        ),
    ],
)
def test_locks_poetry_could_choose_differently_on_the_host(
    tmp_path: Path, package: str, reason: str | None
) -> None:
    project = _lock(tmp_path, package)
    if reason is None:
        check_lock(project)
    else:
        with pytest.raises(NativePipUnavailable, match=reason):
            check_lock(project)
