"""Native pip gives the layer an emulated ``pip install`` gives (bytecode aside).

One expensive comparison (the demo's requirements on linux/arm64, ~70 s
under QEMU), then a fallback that must say why.
"""

from __future__ import annotations

import csv
import io
import tarfile
from pathlib import Path

import pytest

from manyarch.build.nativepip import NativePipInterceptor
from manyarch.errors import BuildError
from manyarch.oci.platform import Platform
from tests.build.builder_helpers import Built, make_context, run_build
from tests.helpers.base_fixture import PythonBase

ARM64 = (Platform.parse("linux/arm64"),)
REPO = Path(__file__).resolve().parents[2]

DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1
WORKDIR /srv
COPY requirements.txt .
RUN python3 -m pip install --no-cache-dir -r requirements.txt
"""


@pytest.fixture(autouse=True)
def isolated(isolated_build: Path) -> Path:
    """Every test here builds in a store and work dir of its own (see conftest)."""
    return isolated_build


def _is_bytecode(name: str) -> bool:
    return "__pycache__" in name or name.endswith((".pyc", ".pyo"))


def pip_layer(built: Built) -> dict[str, tarfile.TarInfo]:
    """The last layer's entries (without bytecode), by name."""
    desc = built.manifest("linux/arm64").layers[-1]
    import gzip

    data = gzip.decompress(built.store.read_blob(desc.digest))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name.rstrip("/"): m for m in tf.getmembers() if not _is_bytecode(m.name)}


def records(built: Built) -> dict[str, set[str]]:
    """dist-info directory -> the files its RECORD lists (without bytecode)."""
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
                    r[0] for r in rows if r and not _is_bytecode(r[0])
                }
    return out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_native_equals_emulated_for_the_demo_requirements(
    tmp_path: Path, python_base: PythonBase
) -> None:
    req = (REPO / "requirements.txt").read_text()
    ctx = make_context(tmp_path, DOCKERFILE, {"requirements.txt": req})
    native_pip = NativePipInterceptor(tmp_path / "cache" / "manyarch")
    native = run_build(ctx, python_base.ref, ARM64, interceptors=[native_pip], epoch=0)
    assert native_pip.native == 1, native_pip.fallbacks
    assert any("native pip: 14 distributions" in line for line in native.output("linux/arm64"))
    emulated = run_build(ctx, python_base.ref, ARM64, epoch=0)

    n, e = pip_layer(native), pip_layer(emulated)
    # the sandbox's mount points (/etc/resolv.conf, the CA bundle) are removed after
    # an emulated RUN, but /etc's mtime changed: a bare `etc` entry in its layer only
    if "etc" in e and e["etc"].isdir() and not any(k.startswith("etc/") for k in e):
        del e["etc"]
    assert sorted(set(n) ^ set(e)) == []
    for name, m in e.items():
        assert (n[name].type, n[name].mode, n[name].uid, n[name].gid) == (
            m.type,
            m.mode,
            m.uid,
            m.gid,
        ), name
        if m.issym():
            assert n[name].linkname == m.linkname
    nr, er = records(native), records(emulated)
    assert len(er) == 14 and nr.keys() == er.keys()
    for dist in er:
        # pip also lists the files it compiled and INSTALLER/REQUESTED; compare the sets
        assert nr[dist] == er[dist], dist
    script = next(k for k in n if k.endswith("bin/uvicorn"))
    assert n[script].mode & 0o111
    head = _read(native, script).split(b"\n", 1)[0]
    assert head == b"#!/usr/bin/python3"
    for dist in er:
        assert f"usr/local/lib/python3.11/dist-packages/{dist}/INSTALLER" in n


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
    assert "native pip: not used (shell operator '||'" in out
    ctx2 = make_context(
        tmp_path / "2",
        "ARG BASE\nFROM ${BASE}\nENV PIP_BREAK_SYSTEM_PACKAGES=1\n"
        "RUN pip install --no-index no-such-dist-xyz\n",
    )
    with pytest.raises(BuildError, match="exited with code"):
        run_build(ctx2, python_base.ref, ARM64, interceptors=[native_pip])
    assert any("no-such-dist-xyz" in r for r in native_pip.fallbacks)
