"""``--preset python-slim``: Debian's required set configured by its own maintainer scripts
(under QEMU for arm64), with the official python:3.X-slim's commands, paths and environment."""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from manyarch.baseimage.image import BaseImage
from manyarch.baseimage.mmdebstrap import mmdebstrap_command
from manyarch.baseimage.options import LABEL_PREFIX, OFFICIAL_PYTHON_PATH, BaseOptions
from manyarch.baseimage.slim import setup_official_paths
from manyarch.debian import install
from manyarch.debian.deb import parse_control
from manyarch.oci.platform import Platform
from manyarch.sandbox import emulation
from tests.baseimage.test_baseimage import needs_root, unpack_layer
from tests.helpers.base_fixture import PythonBase
from tests.imagebuild.build_helpers import make_context, run_build
from tests.imagebuild.emulated import native_and_emulated

AMD64 = Platform.parse("linux/amd64")
ARM64 = Platform.parse("linux/arm64")


def test_slim_options_install_the_required_set(tmp_path: Path) -> None:
    slim = BaseOptions((ARM64,), preset="python-slim", cache_dir=tmp_path)
    plain = BaseOptions((ARM64,), preset="python", cache_dir=tmp_path)
    assert slim.configured and not plain.configured
    assert {"apt", "adduser", "libpython3-dev", "python3-pip"} <= set(slim.packages)
    cmd = mmdebstrap_command(slim, ARM64, tmp_path / "root")
    assert "--include=?priority(required)" in cmd
    assert "--variant=extract" in cmd
    assert not any("priority" in a for a in mmdebstrap_command(plain, ARM64, tmp_path / "r"))
    assert slim.cache_key(ARM64) != plain.cache_key(ARM64)


def test_stand_ins_are_put_back_byte_for_byte(tmp_path: Path) -> None:
    prog = tmp_path / "usr/sbin/update-ca-certificates"
    prog.parent.mkdir(parents=True)
    prog.write_text("#!/bin/sh\necho real\n")
    prog.chmod(0o750)
    with install.stand_ins(tmp_path, ["/usr/sbin/update-ca-certificates", "/usr/bin/absent"]) as s:
        assert s == ["/usr/sbin/update-ca-certificates"]
        assert "exit 0" in prog.read_text()
    assert prog.read_text() == "#!/bin/sh\necho real\n"
    assert stat.S_IMODE(prog.stat().st_mode) == 0o750
    assert sorted(p.name for p in prog.parent.iterdir()) == ["update-ca-certificates"]


def test_official_paths(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/python3.11").mkdir(parents=True)
    (tmp_path / "usr/lib/python3.11/os.py").write_text("")
    (tmp_path / "usr/bin").mkdir()
    for name in ("python3", "python3.11", "pip3"):
        (tmp_path / "usr/bin" / name).write_text("")
    setup_official_paths(tmp_path)
    local = tmp_path / "usr/local"
    assert os.readlink(local / "lib/python3.11/site-packages") == "dist-packages"
    assert (local / "lib/python3.11/dist-packages").is_dir()
    links = {p.name: os.readlink(p) for p in (local / "bin").iterdir()}
    assert links == {
        "python": "/usr/bin/python3",
        "python3": "/usr/bin/python3",
        "python3.11": "/usr/bin/python3.11",
        "pip": "/usr/bin/pip3",
        "pip3": "/usr/bin/pip3",
        "pip3.11": "/usr/bin/pip3",
    }


# -- the built base (bookworm; trixie in bench/slim.sh) -------------------------------


def _status(root: Path) -> dict[str, str]:
    text = (root / "var/lib/dpkg/status").read_text()
    out = {}
    for para in text.split("\n\n"):
        if para.strip():
            f = dict(parse_control(para))
            out[f["Package"]] = f["Status"]
    return out


@pytest.mark.slow
@needs_root
@pytest.mark.parametrize("platform", [AMD64, ARM64])
def test_slim_base_is_a_configured_debian(
    slim_base: PythonBase, tmp_path: Path, platform: Platform
) -> None:
    root = unpack_layer(slim_base, platform, tmp_path)
    status = _status(root)
    assert set(status.values()) == {"install ok installed"}
    assert {"apt", "adduser", "diffutils", "libc-bin", "login", "passwd", "mawk"} <= set(status)
    # what maintainer scripts make: alternatives, PAM's common files, ld.so.cache, shadow
    assert os.readlink(root / "etc/alternatives/awk") == "/usr/bin/mawk"
    assert (root / "etc/pam.d/common-auth").is_file()
    assert (root / "etc/ld.so.cache").is_file()
    assert (root / "etc/shadow").is_file()
    # no user or group but Debian's own: uv's `groupadd --system --gid 999` must work
    for name in ("passwd", "group"):
        ids = [int(line.split(":")[2]) for line in (root / "etc" / name).read_text().splitlines()]
        assert 65532 not in ids and 999 not in ids and not [i for i in ids if 1000 <= i < 65534]
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert os.readlink(root / "usr/local/bin/python") == "/usr/bin/python3"
    assert os.readlink(root / "usr/local/lib/python3.11/site-packages") == "dist-packages"
    assert (root / "usr/include/python3.11/Python.h").is_file()
    assert (root / "etc/ssl/certs/ca-certificates.crt").stat().st_size > 100_000
    assert not list((root / "usr/lib").glob("python3*/EXTERNALLY-MANAGED"))
    assert not (root / "var/log/dpkg.log").exists()
    assert "deb.debian.org/debian bookworm" in (root / "etc/apt/sources.list").read_text()


@pytest.mark.slow
@needs_root
def test_slim_base_config_is_the_official_images(slim_base_image: BaseImage) -> None:
    from manyarch.oci.manifest import ImageConfig, Manifest

    for img in slim_base_image.images:
        layout = img.layout()
        manifest = Manifest.parse(layout.read_document(img.manifest))
        config = ImageConfig.parse(layout.read_document(manifest.config))
        env = dict(e.split("=", 1) for e in config.config.env)
        assert env["PATH"] == OFFICIAL_PYTHON_PATH
        assert env["LANG"] == "C.UTF-8"
        assert env["PYTHON_VERSION"].startswith("3.11.")
        assert config.config.cmd == ("python3",)
        assert config.config.labels[LABEL_PREFIX + "python"] == env["PYTHON_VERSION"]


def _wheel(dest: Path) -> Path:
    wheel = dest / "manyarch_probe-1.0-py3-none-any.whl"
    files = {
        "manyarch_probe/__init__.py": "VALUE = 42\n",
        "manyarch_probe-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: manyarch-probe\n"
        "Version: 1.0\n",
        "manyarch_probe-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + "manyarch_probe-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr("manyarch_probe-1.0.dist-info/RECORD", record)
    return wheel


APT_DOCKERFILE = """\
ARG BASE
FROM $BASE
RUN apt-get update && apt-get install -y --no-install-recommends tree \\
    && rm -rf /var/lib/apt/lists/* && tree --version
RUN groupadd --system --gid 999 nonroot && useradd --system --gid 999 --uid 999 nonroot \\
    && adduser --disabled-password --gecos "" app && id nonroot && id app
"""


@pytest.mark.slow
@needs_root
def test_apt_get_install_and_useradd_in_a_run(
    slim_base: PythonBase, tmp_path: Path, isolated_build: Path
) -> None:
    if not emulation.can_run(ARM64):
        pytest.skip("no emulation for linux/arm64: run 'manyarch emulation install'")
    ctx = make_context(tmp_path, APT_DOCKERFILE)
    built = run_build(ctx, slim_base.ref, (AMD64, ARM64))
    for platform in ("linux/amd64", "linux/arm64"):
        out = "\n".join(built.output(platform))
        assert "tree v2" in out, out
        assert "uid=999(nonroot) gid=999(nonroot)" in out, out
        assert "uid=1000(app) gid=1000(app)" in out, out
        assert "usr/bin/tree" in built.layer(platform, 1)


COPY_DOCKERFILE = """\
ARG BASE
FROM $BASE AS builder
COPY manyarch_probe-1.0-py3-none-any.whl /wheels/
RUN pip install --no-index --no-cache-dir /wheels/manyarch_probe-1.0-py3-none-any.whl
FROM $BASE
COPY --from=builder /usr/local/lib/python3.11/site-packages /usr/local/lib/python3.11/site-packages
RUN python -c "import manyarch_probe; print('probe', manyarch_probe.VALUE)"
"""


@pytest.mark.slow
@needs_root
def test_copy_from_builder_site_packages(
    slim_base: PythonBase, tmp_path: Path, isolated_build: Path
) -> None:
    wheel = _wheel(tmp_path).read_bytes()
    ctx = make_context(tmp_path, COPY_DOCKERFILE, {"manyarch_probe-1.0-py3-none-any.whl": wheel})
    built = run_build(ctx, slim_base.ref, (AMD64,))
    assert "probe 42" in "\n".join(built.output("linux/amd64"))
    # the COPY's layer (above the base's one) writes through the link, as BuildKit does
    files = built.layer("linux/amd64", 1)
    assert "usr/local/lib/python3.11/dist-packages/manyarch_probe/__init__.py" in files


Layer = dict[str, tuple[tarfile.TarInfo, bytes | None]]


def _native_layer_is_the_emulated_one(base: PythonBase, tmp: Path, dockerfile: str) -> Layer:
    """``dockerfile``'s one RUN line for linux/arm64, native (the layer returned) and under
    QEMU (its reference kept between sessions): the same members, modes, owners, bytes."""
    if not emulation.can_run(ARM64) or emulation.runs_natively(ARM64):
        pytest.skip("needs a foreign linux/arm64 through QEMU")
    native, emulated, hook = native_and_emulated(tmp / "build", base, dockerfile, {})
    assert hook.native == 1, hook.fallbacks
    a, b = native.layer("linux/arm64", 1), emulated.layer("linux/arm64", 1)
    b.pop("tmp", None)  # the emulated pip's temporary files, gone, touched the image's /tmp
    assert sorted(a) == sorted(b)
    for name, (info, data) in a.items():
        other, other_data = b[name]
        assert (info.mode, info.uid, info.gid, info.linkname, data) == (
            other.mode,
            other.uid,
            other.gid,
            other.linkname,
            other_data,
        ), name
    return a


PIP_DOCKERFILE = """\
ARG BASE
FROM $BASE
RUN pip install six==1.16.0
"""


@pytest.mark.slow
@needs_root
def test_native_pip_places_what_the_emulated_pip_does(
    slim_base: PythonBase, tmp_path: Path, isolated_build: Path
) -> None:
    """On python-slim (site-packages a link to dist-packages) native pip writes the same files."""
    a = _native_layer_is_the_emulated_one(slim_base, tmp_path, PIP_DOCKERFILE)
    assert "usr/local/lib/python3.11/dist-packages/six.py" in a


VENV_DOCKERFILE = """\
ARG BASE
FROM $BASE
RUN python -m venv /opt/venv
"""


@pytest.mark.slow
@needs_root
def test_python_m_venv_through_the_official_link_is_native_and_the_same(
    slim_base: PythonBase, tmp_path: Path, isolated_build: Path
) -> None:
    """python:3.X-slim's ``python`` is /usr/local/bin/python -> /usr/bin/python3, a path the
    host has not: the twin runs it by that path (the venv links to it) and makes the venv,
    pip and its pycs as the emulated one (it ran under QEMU: "the host's ... is not ...")."""
    a = _native_layer_is_the_emulated_one(slim_base, tmp_path, VENV_DOCKERFILE)
    assert a["opt/venv/bin/python"][0].linkname == "/usr/local/bin/python"
    assert b"command = /usr/local/bin/python -m venv /opt/venv" in (
        a["opt/venv/pyvenv.cfg"][1] or b""
    )
    assert any(n.startswith("opt/venv/lib/python3.11/site-packages/pip/") for n in a)
