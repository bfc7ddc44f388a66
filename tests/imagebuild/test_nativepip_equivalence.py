"""Native installs give the layers the emulated tools give, file by file.

One Dockerfile holds every install form (pip's, a venv's, the project's, uv's,
and the demo's requirements last); it is built once natively and once under
QEMU for linux/arm64 (a module fixture: the emulated build is the expensive
part), and the tests compare the layers. Then a fallback that must say why.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import marshal
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from manyarch.errors import BuildError
from manyarch.imagebuild.nativepip.interceptor import NativePipInterceptor
from manyarch.oci.platform import Platform
from tests.helpers.base_fixture import PythonBase
from tests.imagebuild.build_helpers import Built, make_context, run_build
from tests.imagebuild.emulated import emulated_reference, own_dirs, reference_cache
from tests.imagebuild.layer_compare import assert_last_layers_equal

ARM64 = (Platform.parse("linux/arm64"),)
REPO = Path(__file__).resolve().parents[2]


#: every test here builds in a store and work dir of its own (see conftest)
pytestmark = pytest.mark.usefixtures("isolated_build")


def _is_bytecode(name: str) -> bool:
    return "__pycache__" in name or name.endswith((".pyc", ".pyo"))


def pip_layer(built: Built) -> dict[str, tarfile.TarInfo]:
    """The last layer's entries (without bytecode), by name."""
    desc = built.manifest("linux/arm64").layers[-1]
    import gzip

    data = gzip.decompress(built.store.read_blob(desc.digest))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name.rstrip("/"): m for m in tf.getmembers() if not _is_bytecode(m.name)}


def bytecode(built: Built) -> dict[str, bytes]:
    """The last layer's pycs, by name."""
    import gzip

    desc = built.manifest("linux/arm64").layers[-1]
    data = gzip.decompress(built.store.read_blob(desc.digest))
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            if m.isfile() and m.name.endswith(".pyc"):
                f = tf.extractfile(m)
                assert f is not None
                out[m.name] = f.read()
    return out


def records(built: Built, *, with_bytecode: bool = False) -> dict[str, set[str]]:
    """dist-info directory -> the files its RECORD lists (without bytecode unless asked)."""
    desc = built.manifest("linux/arm64").layers[-1]
    import gzip

    out: dict[str, set[str]] = {}
    data = gzip.decompress(built.store.read_blob(desc.digest))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            if m.name.endswith(".dist-info/RECORD"):
                f = tf.extractfile(m)
                assert f is not None
                rows = csv.reader(io.StringIO(f.read().decode()))
                out[m.name.rsplit("/", 2)[-2]] = {
                    r[0] for r in rows if r and (with_bytecode or not _is_bytecode(r[0]))
                }
    return out


@pytest.mark.slow
@pytest.mark.timeout(1800)  # builds the module's fixture: FORMS under QEMU
def test_native_equals_emulated_for_the_demo_requirements(forms: tuple[Built, Built]) -> None:
    native, emulated = forms
    assert any("native: 14 distributions" in line for line in native.output("linux/arm64"))
    # file by file: bytes, modes, RECORD rows (CRLF, sorted, pycs listed), scripts,
    # INSTALLER/REQUESTED, and every pyc's code object
    assert_last_layers_equal(native, emulated, 1)
    n = pip_layer(native)
    nr, er = records(native), records(emulated)
    assert len(er) == 14 and nr.keys() == er.keys()
    script = next(k for k in n if k.endswith("bin/uvicorn"))
    assert n[script].mode & 0o111
    head = _read(native, script).split(b"\n", 1)[0]
    assert head == b"#!/usr/bin/python3"
    for dist in er:
        assert f"usr/local/lib/python3.11/dist-packages/{dist}/INSTALLER" in n
    # the modules are byte-compiled as pip compiles them under emulation, and listed
    nb, eb = bytecode(native), bytecode(emulated)
    assert len(eb) > 100 and sorted(nb) == sorted(eb)
    assert records(native, with_bytecode=True) == records(emulated, with_bytecode=True)
    # hash-checked (PEP 552: flags 0b11), valid whatever the mtimes the layer keeps,
    # and naming the module's path in the image
    name = next(k for k in nb if k.endswith("fastapi/__pycache__/__init__.cpython-311.pyc"))
    pyc = nb[name]
    assert int.from_bytes(pyc[4:8], "little") == 0b11
    source = _read(native, name.replace("__pycache__/", "").replace(".cpython-311.pyc", ".py"))
    assert pyc[8:16] == importlib.util.source_hash(source)
    code = marshal.loads(pyc[16:])
    assert code.co_filename == "/" + name.replace("__pycache__/", "").replace(
        ".cpython-311.pyc", ".py"
    )


def _read(built: Built, name: str) -> bytes:
    import gzip

    desc = built.manifest("linux/arm64").layers[-1]
    data = gzip.decompress(built.store.read_blob(desc.digest))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        f = tf.extractfile(name)
        assert f is not None
        return f.read()


@pytest.mark.slow
def test_sdist_only_requirement_falls_back_and_says_why(
    tmp_path: Path, python_base: PythonBase
) -> None:
    # --no-index with nothing to find: the host resolution fails, the RUN is emulated
    # (and fails there too, which proves it ran the emulated way)
    ctx = make_context(
        tmp_path,
        "ARG BASE\nFROM ${BASE}\nRUN pip install --no-index no-such-dist-xyz || true\n",
    )
    native_pip = NativePipInterceptor(tmp_path / "cache" / "manyarch")
    built = run_build(ctx, python_base.ref, ARM64, interceptors=[native_pip])
    assert native_pip.native == 0
    out = "\n".join(built.output("linux/arm64"))
    assert "emulated (QEMU): shell operator '||'" in out
    ctx2 = make_context(
        tmp_path / "2",
        "ARG BASE\nFROM ${BASE}\nENV PIP_BREAK_SYSTEM_PACKAGES=1\n"
        "RUN pip install --no-index no-such-dist-xyz\n",
    )
    with pytest.raises(BuildError, match="exited with code"):
        run_build(ctx2, python_base.ref, ARM64, interceptors=[native_pip])
    assert any("no-such-dist-xyz" in r for r in native_pip.fallbacks)


@pytest.mark.slow
def test_no_compile_leaves_the_modules_uncompiled(tmp_path: Path, python_base: PythonBase) -> None:
    # (PIP_NO_COMPILE=1 does compile: pip reads store_false variables inverted; that
    # case is compared with the emulated pip in test_every_pip_form_equals_emulated)
    dockerfile = "ARG BASE\nFROM ${BASE}\nRUN pip install --no-compile idna==3.20\n"
    ctx = make_context(tmp_path, dockerfile)
    native_pip = NativePipInterceptor(tmp_path / "cache" / "manyarch")
    built = run_build(ctx, python_base.ref, ARM64, interceptors=[native_pip])
    assert native_pip.native == 1, native_pip.fallbacks
    assert "usr/local/lib/python3.11/dist-packages/idna/core.py" in pip_layer(built)
    assert bytecode(built) == {}


FORMS = """\
ARG BASE
FROM ${BASE}
ARG SIXV=1.16.0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1
WORKDIR /srv
COPY wheels/ /wheels/
COPY proj/ /app/
COPY uvproj/ /uvproj/
COPY requirements.txt .
# two distributions ship jwt/__init__.py: the later in pip's order wins; an option prefix
RUN pip install --no-cache PyJWT==2.9.0 jwt==1.3.1
# a version from an ARG, a long option's prefix, pip's store_false variable read inverted
RUN PIP_NO_COMPILE=1 pip install six==$SIXV --no-dependencies
RUN pip install --user itsdangerous==2.2.0
RUN pip install --prefix=/opt/p idna==3.10
RUN pip install --target /opt/t idna==3.10 six==1.16.0
# a wheelhouse: scripts, .data/scripts with #!python, data files
RUN pip install --no-index --find-links=/wheels demo-tool
# the project in the context, built through its PEP 517 backend (in the tree, as pip does)
RUN pip install --no-cache-dir /app
# a venv (the host's twin of Debian's python makes it) and that venv's own pip
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir idna==3.10
# uv lines: the host's uv (the image's version) in the host's twin of Debian's python
ENV UV_NO_CACHE=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv==0.13.9
RUN uv pip install --system packaging==24.2 six==1.16.0
WORKDIR /uvproj
RUN uv sync --locked --no-dev
RUN uv venv /opt/uvvenv
# last: the demo's requirements (14 wheels, pydantic-core's for aarch64)
RUN python3 -m pip install --no-cache-dir -r /srv/requirements.txt
"""

#: the RUN lines above
FORMS_RUNS = 13

PROJECT = {
    "proj/pyproject.toml": """\
[build-system]
requires = ["setuptools==80.9.0"]
build-backend = "setuptools.build_meta"

[project]
name = "demo-app"
version = "0.1.0"
dependencies = ["attrs==24.2.0"]

[project.scripts]
demo-app = "demo_app:main"

[tool.setuptools]
packages = ["demo_app"]
""",
    "proj/demo_app/__init__.py": "def main():\n    print('demo app')\n",
}


def _demo_wheel() -> bytes:
    """A pure wheel with a console script, a .data script and a data file."""
    import base64
    import hashlib
    import zipfile

    files = {
        "demo_tool/__init__.py": b"def main():\n    print('demo')\n",
        "demo_tool-1.0.data/scripts/demo-raw": b"#!python\nprint('raw')\n",
        "demo_tool-1.0.data/data/share/demo/readme.txt": b"hello\n",
        "demo_tool-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo-tool\n"
        b"Version: 1.0\n",
        "demo_tool-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: x\nRoot-Is-Purelib: true"
        b"\nTag: py3-none-any\n",
        "demo_tool-1.0.dist-info/entry_points.txt": b"[console_scripts]\ndemo = demo_tool:main\n",
    }
    rows = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{name},sha256={digest},{len(data)}\n")
    rows.append("demo_tool-1.0.dist-info/RECORD,,\n")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100755 if "scripts/" in name else 0o100644) << 16
            zf.writestr(info, data)
        zf.writestr(zipfile.ZipInfo("demo_tool-1.0.dist-info/RECORD"), "".join(rows))
    return buf.getvalue()


UV_PROJECT = {
    "uvproj/pyproject.toml": """\
[project]
name = "uvproj"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["idna==3.10"]

[dependency-groups]
dev = ["six==1.16.0"]
""",
    "uvproj/uv.lock": (Path(__file__).parent / "uvproj.lock").read_text(),
}


@pytest.fixture(scope="module")
def forms(
    python_base: PythonBase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Built, Built]]:
    """FORMS built natively (every RUN native) and under QEMU, for linux/arm64."""
    tmp = tmp_path_factory.mktemp("forms")
    cache = reference_cache()
    with own_dirs(tmp):
        files = {
            "wheels/demo_tool-1.0-py3-none-any.whl": _demo_wheel(),
            "requirements.txt": (REPO / "requirements.txt").read_text(),
            **PROJECT,
            **UV_PROJECT,
        }
        ctx = make_context(tmp, FORMS, files)
        native_pip = NativePipInterceptor(tmp / "cache" / "manyarch")
        native = run_build(ctx, python_base.ref, ARM64, interceptors=[native_pip], epoch=0)
        assert native_pip.emulated == 0, native_pip.fallbacks
        assert native_pip.native == FORMS_RUNS
        yield native, emulated_reference(ctx, python_base, files, FORMS, ARM64, cache=cache)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # when run alone, it builds the module's fixture
def test_every_install_form_equals_emulated(forms: tuple[Built, Built]) -> None:
    import re

    def stage(name: str) -> str:  # pip's --target stage is a random temporary directory
        return re.sub(r"^/tmp/pip-target-[^/]+/", "/tmp/pip-target-native/", name)

    assert_last_layers_equal(*forms, FORMS_RUNS, pyc_filename=stage)
