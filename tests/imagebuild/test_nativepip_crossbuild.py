"""A C extension for arm64, cross-compiled on the host, imports and works under QEMU."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from manyarch.imagebuild.nativepip.interceptor import NativePipInterceptor
from manyarch.oci.platform import Platform
from tests.helpers.base_fixture import PythonBase
from tests.imagebuild.build_helpers import make_context, run_build

ARM64 = (Platform.parse("linux/arm64"),)

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "democ"
version = "0.1.0"

[tool.setuptools]
ext-modules = [{name = "democ", sources = ["democ.c"]}]
packages = []
"""

SOURCE = """\
#include <Python.h>
static PyObject *add(PyObject *self, PyObject *args) {
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b)) return NULL;
    return PyLong_FromLong(a + b);
}
static PyMethodDef methods[] = {{"add", add, METH_VARARGS, "a + b"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "democ", NULL, -1, methods};
PyMODINIT_FUNC PyInit_democ(void) { return PyModule_Create(&module); }
"""

DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ENV PIP_BREAK_SYSTEM_PACKAGES=1
COPY democ/ /src/democ/
RUN pip install --no-cache-dir /src/democ
RUN python3 -c "import democ, platform as p; assert democ.add(2, 3) == 5; print('ok', p.machine())"
"""


def _cross_toolchain() -> bool:
    return (
        bool(shutil.which("aarch64-linux-gnu-gcc"))
        and Path("/usr/include/aarch64-linux-gnu/python3.11/pyconfig.h").is_file()
    )


#: every test here builds in a store and work dir of its own (see conftest)
pytestmark = pytest.mark.usefixtures("isolated_build")


@pytest.mark.slow
@pytest.mark.skipif(not _cross_toolchain(), reason="make deps installs the cross toolchain")
def test_c_extension_cross_built_runs_under_qemu(tmp_path: Path, python_base: PythonBase) -> None:
    ctx = make_context(
        tmp_path, DOCKERFILE, {"democ/pyproject.toml": PYPROJECT, "democ/democ.c": SOURCE}
    )
    native_pip = NativePipInterceptor(tmp_path / "cache" / "manyarch")
    built = run_build(ctx, python_base.ref, ARM64, interceptors=[native_pip], epoch=0)
    assert native_pip.native == 1, native_pip.fallbacks
    out = "\n".join(built.output("linux/arm64"))
    # the wheel tagged for the target, its module for aarch64, imported and called under QEMU
    assert "ok aarch64" in out
    assert "emulated (QEMU):" in out  # the smoke line itself is not an install
    layer = built.layer("linux/arm64", -1)  # the smoke line changes no file
    site = "usr/local/lib/python3.11/dist-packages/"
    so = [n for n in layer if n.startswith(site) and n.endswith("-aarch64-linux-gnu.so")]
    assert len(so) == 1
    data = layer[so[0]][1]
    assert data is not None and data[:4] == b"\x7fELF" and data[18:20] == b"\xb7\x00"  # EM_AARCH64
    assert any(n.endswith("democ-0.1.0.dist-info/WHEEL") for n in layer)
