"""The target interpreter's facts, read from the image's files (no emulation).

What the image's pip would see, in a few milliseconds: ``X.Y`` from the
interpreter's file name, ``X.Y.Z`` from the ``PY_VERSION`` string in the
binary (or ``libpythonX.Y.so``), the architecture from its
``_sysconfigdata_*`` module, glibc's version from ``libc.so.6``, the install
schemes (Debian's ``posix_local``, a python.org build, a venv), the
site directories, the image's pip and its console-script template. From
these, :func:`pip_tags` gives the same tags, in the same order, as the
emulated pip's ``get_supported()``.
"""

from __future__ import annotations

import ast
import os
import posixpath
import re
import textwrap
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from manyarch.imagebuild.nativepip.command import NativePipUnavailable, is_pip
from manyarch.sandbox.rootpath import resolve_in_root

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class TargetFacts:
    """What the image's pip would see of its interpreter and environment."""

    version: tuple[int, int, int]
    #: ``sys.executable``: the path the command ran, not resolved through symlinks
    executable: str
    arch: str  # aarch64, x86_64
    glibc: tuple[int, int]
    #: the virtual environment the interpreter belongs to, else ""
    venv: str
    #: Debian's python (``posix_local``: pip installs under /usr/local)
    debian: bool
    base_prefix: str
    stdlib: str
    #: the directories where installed distributions are found, first wins
    site_dirs: tuple[str, ...]
    pip_version: str
    #: the image pip's console-script body (``%(module)s``, ``%(import_name)s``, ``%(func)s``)
    script_template: str
    tags: tuple[str, ...] = field(repr=False)
    markers: Mapping[str, str] = field(repr=False)

    @property
    def python_version(self) -> str:
        """``3.11.2``."""
        return ".".join(map(str, self.version))

    @property
    def xy(self) -> str:
        """``3.11``."""
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def uv_platform(self) -> str:
        """uv's ``--python-platform`` for this glibc (uv knows manylinux_2_17..2_40)."""
        minor = min(self.glibc[1], 40)
        return f"{self.arch}-manylinux_2_{minor}"

    def scheme(self, *, user_home: str = "", prefix: str = "", home: str = "") -> dict[str, str]:
        """pip's install scheme (``@DIST@`` in headers), default or ``--user``/``--prefix``/home."""
        xy = self.xy
        if home:  # --target: pip's home scheme in a staging directory
            h = home.rstrip("/")
            return _scheme(f"{h}/lib/python", f"{h}/bin", h, f"{h}/include/python/@DIST@")
        if user_home:
            b = f"{user_home.rstrip('/')}/.local"
            return _scheme(
                f"{b}/lib/python{xy}/site-packages", f"{b}/bin", b, f"{b}/include/python{xy}/@DIST@"
            )
        if prefix:
            p = prefix.rstrip("/") or "/"
            b = posixpath.join(p, "local") if self.debian and not self.venv else p
            kind = "dist" if self.debian and not self.venv else "site"
            return _scheme(
                f"{b}/lib/python{xy}/{kind}-packages",
                f"{b}/bin",
                b,
                f"{p.rstrip('/')}/include/python{xy}/@DIST@",
            )
        if self.venv:
            v = self.venv
            return _scheme(
                f"{v}/lib/python{xy}/site-packages",
                f"{v}/bin",
                v,
                f"{v}/include/site/python{xy}/@DIST@",
            )
        if self.debian and self.base_prefix == "/usr":
            return _scheme(
                f"/usr/local/lib/python{xy}/dist-packages",
                "/usr/local/bin",
                "/usr/local",
                f"/usr/include/python{xy}/@DIST@",
            )
        b = self.base_prefix
        return _scheme(
            f"{b}/lib/python{xy}/site-packages", f"{b}/bin", b, f"{b}/include/python{xy}/@DIST@"
        )


def _scheme(lib: str, scripts: str, data: str, headers: str) -> dict[str, str]:
    return {"purelib": lib, "platlib": lib, "scripts": scripts, "data": data, "headers": headers}


def which(rootfs: Path, command: str, env_path: str) -> str | None:
    """The image path ``command`` runs (a PATH lookup in the image), or None."""
    if "/" in command:
        return command if resolve_in_root(rootfs, command).is_file() else None
    for d in env_path.split(":"):
        if d.startswith("/") and resolve_in_root(rootfs, f"{d}/{command}").is_file():
            return f"{d.rstrip('/')}/{command}"
    return None


def interpreter_path(rootfs: Path, command: str, env_path: str) -> str | None:
    """``sys.executable`` of the python ``command`` runs (pip: its shebang's), or None.

    CPython does not resolve the symlinks of the path it was started as:
    ``python3`` on PATH is ``/usr/bin/python3``, and that is the shebang pip
    writes.
    """
    exe = which(rootfs, command, env_path)
    if exe is None:
        return None
    if is_pip(Path(command).name):
        try:
            with open(resolve_in_root(rootfs, exe), "rb") as f:
                first = f.readline(256)
        except OSError:
            return None
        if not first.startswith(b"#!"):
            return None
        words = first[2:].decode(errors="replace").split()
        if len(words) != 1 or not words[0].startswith("/"):
            return None
        return words[0]
    return exe


def image_realpath(rootfs: Path, path: str) -> str:
    """``path`` with the image's symlinks resolved, as an image path."""
    return "/" + str(resolve_in_root(rootfs, path).relative_to(rootfs)).lstrip(".").lstrip("/")


def target_facts(rootfs: Path, executable: str) -> TargetFacts:
    """The facts of the interpreter at ``executable`` (an image path), from the files.

    Raises :class:`NativePipUnavailable` for what is not understood (no
    glibc, no ``pythonX.Y`` binary, no ``_sysconfigdata``).
    """
    real = image_realpath(rootfs, executable)
    m = re.fullmatch(r"python(\d)\.(\d+)", posixpath.basename(real))
    if not m:
        raise NativePipUnavailable(f"{executable} is not a pythonX.Y binary ({real})")
    xy = (int(m.group(1)), int(m.group(2)))
    sxy = f"{xy[0]}.{xy[1]}"
    venv = posixpath.dirname(posixpath.dirname(executable))
    is_venv = resolve_in_root(rootfs, f"{venv}/pyvenv.cfg").is_file()
    base_prefix = posixpath.dirname(posixpath.dirname(real))
    stdlib = f"{base_prefix}/lib/python{sxy}"
    host_stdlib = resolve_in_root(rootfs, stdlib)
    bvars = _sysconfig_vars(host_stdlib)
    multiarch = str(bvars.get("MULTIARCH") or "")
    arch = multiarch.split("-")[0] or str(bvars.get("HOST_GNU_TYPE", "")).split("-")[0]
    if not arch:
        raise NativePipUnavailable(f"cannot tell the architecture of {executable}")
    glibc = _glibc_version(rootfs, multiarch)
    if glibc is None:
        raise NativePipUnavailable("the image has no glibc (musl is not handled natively)")
    try:
        debian = "posix_local" in (host_stdlib / "sysconfig.py").read_text(errors="replace")
    except OSError:
        debian = False
    if is_venv:
        site_dirs: tuple[str, ...] = (f"{venv}/lib/python{sxy}/site-packages",)
        if _venv_includes_system(rootfs, venv):
            site_dirs += _system_site_dirs(debian, base_prefix, sxy)
    else:
        site_dirs = _system_site_dirs(debian, base_prefix, sxy)
    full = _full_version(rootfs, real, base_prefix, sxy)
    pip_version, template = _pip_template(rootfs, site_dirs)
    uname = os.uname()
    markers = {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": "posix",
        "platform_machine": arch,
        # QEMU user mode shows the host's kernel: so does the emulated pip
        "platform_release": uname.release,
        "platform_system": "Linux",
        "platform_version": uname.version,
        "python_full_version": full,
        "platform_python_implementation": "CPython",
        "python_version": sxy,
        "sys_platform": "linux",
    }
    v = tuple(int(x) for x in re.findall(r"\d+", full)[:3])
    return TargetFacts(
        version=(v[0], v[1], v[2] if len(v) > 2 else 0),
        executable=executable,
        arch=arch,
        glibc=glibc,
        venv=venv if is_venv else "",
        debian=debian,
        base_prefix=base_prefix,
        stdlib=stdlib,
        site_dirs=site_dirs,
        pip_version=pip_version,
        script_template=template,
        tags=tuple(pip_tags(xy, arch, glibc)),
        markers=markers,
    )


def _system_site_dirs(debian: bool, base_prefix: str, sxy: str) -> tuple[str, ...]:
    if debian and base_prefix == "/usr":
        return (
            f"/usr/local/lib/python{sxy}/dist-packages",
            "/usr/lib/python3/dist-packages",
            f"/usr/lib/python{sxy}/dist-packages",
        )
    return (f"{base_prefix}/lib/python{sxy}/site-packages",)


def _venv_includes_system(rootfs: Path, venv: str) -> bool:
    try:
        text = resolve_in_root(rootfs, f"{venv}/pyvenv.cfg").read_text(errors="replace")
    except OSError:
        return False
    m = re.search(r"^\s*include-system-site-packages\s*=\s*(\S+)", text, re.M)
    return bool(m) and m is not None and m.group(1).lower() == "true"


#: One ast.parse at a time: CPython 3.11's AST-to-object conversion keeps its recursion
#: depth per interpreter, and two platforms' steps parsing at once failed a build with
#: "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905).
_AST_LOCK = threading.Lock()


def _sysconfig_vars(stdlib: Path) -> Mapping[str, object]:
    files = sorted(stdlib.glob("_sysconfigdata_*.py"), key=lambda p: -len(p.name))
    for f in files:
        try:
            text = f.read_text(errors="replace")
            with _AST_LOCK:
                tree = ast.parse(text)
        except (OSError, SyntaxError):
            continue
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "build_time_vars"
            ):
                value = ast.literal_eval(node.value)
                if isinstance(value, dict):
                    return value
    raise NativePipUnavailable(f"no _sysconfigdata module in {stdlib.name}")


def _glibc_version(rootfs: Path, multiarch: str) -> tuple[int, int] | None:
    for d in (f"/lib/{multiarch}", f"/usr/lib/{multiarch}", "/lib64", "/lib", "/usr/lib"):
        libc = resolve_in_root(rootfs, f"{d}/libc.so.6")
        if not libc.is_file():
            continue
        data = libc.read_bytes()
        m = re.search(rb"GNU C Library [^\n\x00]*?version (\d+)\.(\d+)", data)
        if m:
            return int(m.group(1)), int(m.group(2))
        found = [(int(a), int(b)) for a, b in re.findall(rb"\x00GLIBC_(\d+)\.(\d+)\x00", data)]
        return max(found) if found else None
    return None


def _full_version(rootfs: Path, real: str, base_prefix: str, sxy: str) -> str:
    candidates = [resolve_in_root(rootfs, real)]
    for lib in (f"{base_prefix}/lib", f"{base_prefix}/lib64"):
        d = resolve_in_root(rootfs, lib)
        if d.is_dir():
            candidates += sorted(d.glob(f"libpython{sxy}*.so*"))
    pattern = re.compile(rb"\x00(" + re.escape(sxy.encode()) + rb"\.\d+(?:(?:a|b|rc)\d+)?)\+?\x00")
    for c in candidates:
        if c.is_file():
            m = pattern.search(c.read_bytes())
            if m:
                return m.group(1).decode()
    raise NativePipUnavailable(f"no version string in the image's python{sxy}")


def pip_tags(xy: tuple[int, int], arch: str, glibc: tuple[int, int]) -> list[str]:
    """``packaging.tags.sys_tags()`` as the image's CPython computes it (glibc)."""
    from packaging import tags

    floor = 5 if arch in ("x86_64", "i686") else 17
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    plats: list[str] = []
    for minor in range(glibc[1], floor - 1, -1):
        plats.append(f"manylinux_2_{minor}_{arch}")
        if minor in legacy:
            plats.append(f"{legacy[minor]}_{arch}")
    plats.append(f"linux_{arch}")
    abi = f"cp{xy[0]}{xy[1]}"
    found = list(tags.cpython_tags(xy, [abi], plats)) + list(tags.compatible_tags(xy, abi, plats))
    return [str(t) for t in found]


def _pip_template(rootfs: Path, site_dirs: tuple[str, ...]) -> tuple[str, str]:
    """The image's pip version and its console-script template ("", "" without a pip)."""
    for d in site_dirs:
        host = resolve_in_root(rootfs, d)
        infos = sorted(host.glob("pip-*.dist-info")) if host.is_dir() else []
        if not infos:
            continue
        version = infos[0].name[4:].removesuffix(".dist-info")
        return version, script_template(host)
    return "", ""


def script_template(site: Path) -> str:
    """The console-script body pip (in ``site``) writes: its own, or distlib's for pip < 23.1."""
    try:
        src = (site / "pip/_internal/operations/install/wheel.py").read_text(errors="replace")
    except OSError:
        src = ""
    m = re.search(r'script_template = textwrap\.dedent\(\s*"""\\\n(.*?)"""', src, re.S)
    if m:
        return textwrap.dedent(m.group(1))
    try:
        dl = (site / "pip/_vendor/distlib/scripts.py").read_text(errors="replace")
    except OSError:
        return ""
    m = re.search(r"^SCRIPT_TEMPLATE = r'''(.*?)'''", dl, re.S | re.M)
    return m.group(1) if m else ""
