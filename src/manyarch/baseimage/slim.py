"""Configured bases (``--preset python-slim``): dpkg installs, the maintainer scripts run.

mmdebstrap has downloaded and extracted the packages (no emulation); the
host's dpkg then unpacks them again, this time recording them as dpkg does,
and the image's own dpkg configures them (``dpkg --configure -a``): the
postinsts make the users and groups, the alternatives (``awk``), PAM's common
files, ``ld.so.cache``, the shadow files, as in ``debian:SUITE-slim``. Under
QEMU for a foreign platform, so only those scripts are emulated.
``update-ca-certificates`` is arch-independent work that costs a minute under
QEMU: it is stood in for while dpkg runs and its work is done on the host; so
is ``py3compile`` when the host has an interpreter of the image's bytecode,
which then compiles the modules (hash-checked pycs, valid under clamped mtimes).

Then what ``python:3.X-slim`` has besides Debian's python3: the ``python``,
``python3``, ``pip`` and ``pip3`` commands in ``/usr/local/bin``, no PEP 668
marker, and ``/usr/local/lib/python3.X/site-packages``. Debian's python
installs into ``dist-packages`` (its ``posix_local`` scheme); ``site-packages``
is a symlink to it, so pip (emulated or native, see ``imagebuild/nativepip``)
writes where it always does, and ``COPY --from=builder
/usr/local/lib/python3.X/site-packages`` reads and writes the same directory,
through the link, as BuildKit follows it on both sides.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from manyarch.baseimage.finish import (
    RootfsInfo,
    clean_rootfs,
    compile_python,
    os_release,
    setup_ca_certificates,
    setup_python,
)
from manyarch.bytecode import bytecode_magic, host_python
from manyarch.debian import install
from manyarch.debian.deb import read_dpkg_status
from manyarch.errors import BuildError

log = logging.getLogger("manyarch.base")

#: Helpers done on the host instead of by the image's copy (see the module's docstring).
STAND_INS = ("/usr/sbin/update-ca-certificates",)
#: Byte-compiles the python3-* packages' modules: stood in for when the host has an
#: interpreter of the image's bytecode, which then compiles them (hash-checked pycs).
PY3COMPILE = "/usr/bin/py3compile"
#: Left by dpkg, apt and ldconfig with the build's times in them: not part of a base.
_TRANSIENT = (
    "var/log/dpkg.log",
    "var/log/alternatives.log",
    "var/log/apt/history.log",
    "var/log/apt/term.log",
    "var/log/apt/eipp.log.xz",
    "var/cache/ldconfig/aux-cache",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/lib/dpkg/diversions-old",
    "var/lib/dpkg/statoverride-old",
    "etc/passwd-",
    "etc/group-",
    "etc/shadow-",
    "etc/gshadow-",
)

Step = Callable[[str], None]


def configure_rootfs(root: Path, *, emulated: bool, epoch: int | None, step: Step) -> None:
    """Unpack the downloaded packages with dpkg and run their maintainer scripts."""
    archives = root / "var/cache/apt/archives"
    debs = sorted(archives.glob("*.deb"))
    if not debs:
        raise BuildError(f"no packages were downloaded into {root}")
    out = install.unpack(root, debs, epoch=epoch)
    log.debug("dpkg --unpack:\n%s", out)
    step(f"{len(debs)} packages unpacked by the host's dpkg")
    helpers = [*STAND_INS, PY3COMPILE] if host_compiles(root) else list(STAND_INS)
    with install.stand_ins(root, helpers):
        out = install.configure(root, epoch=epoch)
    log.debug("dpkg --configure -a:\n%s", out)
    step("maintainer scripts run" + (" under QEMU" if emulated else ""))


def python_libs(root: Path) -> list[str]:
    """The image's Python library directories' names (``python3.11``)."""
    return sorted(
        p.name
        for p in (root / "usr/lib").glob("python3.*")
        if re.fullmatch(r"python3\.\d+", p.name) and (p / "os.py").is_file()
    )


def _link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def setup_official_paths(root: Path) -> None:
    """The official image's commands and ``site-packages`` over Debian's python."""
    local = root / "usr/local/bin"
    for name in python_libs(root):
        lib = root / "usr/local/lib" / name
        (lib / "dist-packages").mkdir(parents=True, exist_ok=True)
        _link(lib / "site-packages", "dist-packages")
        _link(local / name, f"/usr/bin/{name}")
        if (root / "usr/bin/pip3").exists():
            _link(local / f"pip{name.removeprefix('python')}", "/usr/bin/pip3")
    for name, target in (
        ("python", "/usr/bin/python3"),
        ("python3", "/usr/bin/python3"),
        ("pip", "/usr/bin/pip3"),
        ("pip3", "/usr/bin/pip3"),
    ):
        if (root / target.lstrip("/")).exists():
            _link(local / name, target)


def host_compiles(root: Path) -> bool:
    """Whether the host has an interpreter of each of the image's bytecode versions."""
    libs = python_libs(root)
    for name in libs:
        magic = bytecode_magic(root / "usr/lib" / name)
        if magic is None or host_python(name, magic) is None:
            return False
    return bool(libs)


def recompile_python(root: Path) -> None:
    """Replace the postinsts' timestamp pycs by hash-checked ones, when the host can.

    Timestamp pycs go stale when the layer clamps mtimes to SOURCE_DATE_EPOCH;
    a host interpreter of the same bytecode makes hash-checked ones instead.
    """
    if not host_compiles(root):
        return
    dirs = [root / "usr/lib" / n for n in python_libs(root)]
    dirs.append(root / "usr/lib/python3/dist-packages")
    for d in dirs:
        for cache in d.rglob("__pycache__"):
            shutil.rmtree(cache)
    compile_python(root)


def finish_configured(root: Path, preset: str) -> RootfsInfo:
    """After dpkg: the CA bundle, Python's official paths, and nothing transient."""
    count = setup_ca_certificates(root)
    if preset == "python-slim":
        setup_python(root)
        setup_official_paths(root)
        recompile_python(root)
    for rel in _TRANSIENT:
        p = root / rel
        if p.is_file() or p.is_symlink():
            p.unlink()
    clean_rootfs(root, {"apt"})
    return RootfsInfo(tuple(read_dpkg_status(root)), os_release(root), count)
