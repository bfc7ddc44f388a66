"""Wheels built on the host for the target: a project in the image (``pip install .``) or an sdist.

Every build backend is untrusted code: it runs in the host sandbox
(:func:`manyarch.sandbox.host.run_host_tool`), on the host's CPU, through
``uv build --wheel`` with an interpreter of the image's Python version.
For a foreign target the build is a cross-build, crossenv's way: the
target's own ``_sysconfigdata`` (from the image) is what ``sysconfig``
reads (``_PYTHON_SYSCONFIGDATA_NAME``), so setuptools calls the target's
compiler (Debian's ``aarch64-linux-gnu-gcc``), uses its ``EXT_SUFFIX`` and
tags the wheel ``linux_aarch64`` (``_PYTHON_HOST_PLATFORM``); the headers
are the image's own (``python3-dev`` installed there) or Debian's multiarch
``libpython3.X-dev:<arch>`` on the host. A pure-Python project gives the
same wheel either way. When a build fails, the reason goes back to the
caller (the line is emulated).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

from manyarch.bytecode import bytecode_magic, exact_python
from manyarch.imagebuild.nativepip.command import NativePipUnavailable, NeedsPaths
from manyarch.imagebuild.nativepip.resolve import uv_binary, uv_env
from manyarch.imagebuild.nativepip.target import TargetFacts
from manyarch.sandbox.rootpath import resolve_in_root


@dataclass(frozen=True)
class Built:
    """A wheel built for the target, its name and what it requires."""

    wheel: Path
    name: str
    requires: tuple[str, ...]
    pure: bool


def _host_arch() -> str:
    return os.uname().machine


def cross_env(facts: TargetFacts, rootfs: Path, tmp: Path) -> tuple[dict[str, str], list[Path]]:
    """The environment (and the directories to mount) that make a host build target ``facts``."""
    if facts.arch == _host_arch():
        return {}, []
    stdlib = resolve_in_root(rootfs, facts.stdlib)
    datas = sorted(stdlib.glob(f"_sysconfigdata_*{facts.arch}*.py"), key=lambda p: -len(p.name))
    if not datas:
        raise NativePipUnavailable(f"no _sysconfigdata for {facts.arch} in the image")
    conf = tmp / "target-sysconfig"
    conf.mkdir(exist_ok=True)
    shutil.copyfile(datas[0], conf / datas[0].name)
    env = {
        "_PYTHON_SYSCONFIGDATA_NAME": datas[0].stem,
        "_PYTHON_HOST_PLATFORM": f"linux-{facts.arch}",
        "PYTHONPATH": str(conf),
    }
    mounts = [conf]
    # the image's own headers (python3-dev installed in it) come before the host's
    include = resolve_in_root(rootfs, f"/usr/include/{facts.arch}-linux-gnu/python{facts.xy}")
    if include.is_dir():
        env["CPPFLAGS"] = f"-I{include.parent} -I{resolve_in_root(rootfs, '/usr/include')}"
        mounts.append(resolve_in_root(rootfs, "/usr/include"))
    return env, mounts


def _pyproject(source: Path) -> str:
    """The text of a project's (or an sdist's top-level) pyproject.toml, "" without one."""
    import tarfile

    try:
        if source.is_dir():
            return (source / "pyproject.toml").read_text(errors="replace")
        if source.name.endswith(".zip"):
            with zipfile.ZipFile(source) as zf:
                names = [n for n in zf.namelist() if n.count("/") == 1]
                name = next(n for n in names if n.endswith("/pyproject.toml"))
                return zf.read(name).decode(errors="replace")
        with tarfile.open(source) as tf:
            for m in tf:
                if m.name.count("/") == 1 and m.name.endswith("/pyproject.toml") and m.isfile():
                    f = tf.extractfile(m)
                    return f.read().decode(errors="replace") if f else ""
    except (OSError, StopIteration, tarfile.TarError, zipfile.BadZipFile):
        return ""
    return ""


#: pip's legacy build: setup.py run with setuptools imported first (pip's setuptools shim).
_SETUP_SHIM = (
    "import sys, setuptools, tokenize; sys.argv[0] = 'setup.py'; __file__ = 'setup.py'; "
    "f = getattr(tokenize, 'open', open)(__file__); code = f.read().replace('\\r\\n', '\\n'); "
    "f.close(); exec(compile(code, __file__, 'exec'))"
)


def _legacy_tools(rootfs: Path, facts: TargetFacts) -> Path | None:
    """The image's site directory with setuptools and wheel (pip's legacy build uses them).

    :class:`NeedsPaths` when only their metadata is there (a partial tree).
    """
    for d in facts.site_dirs:
        site = resolve_in_root(rootfs, d)
        if (site / "setuptools").is_dir() and (site / "wheel").is_dir():
            return site
        if all(any(site.glob(f"{p}-*.*-info")) for p in ("setuptools", "wheel")):
            packages = ("setuptools", "pkg_resources", "_distutils_hack", "wheel")
            raise NeedsPaths(
                f"pip's legacy build needs the image's setuptools and wheel ({d})",
                [f"{d.strip('/')}/{p}/**" for p in packages] + [f"{d.strip('/')}/*.pth"],
            )
    return None


def _unpack_sdist(sdist: Path, dest: Path) -> Path:
    """An sdist's tree (its single top directory), unpacked safely."""
    import tarfile

    dest.mkdir(parents=True, exist_ok=True)
    if sdist.name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as zf:
            for n in zf.namelist():
                if n.startswith("/") or ".." in n.split("/"):
                    raise NativePipUnavailable(f"{sdist.name} has an unsafe path {n}")
            zf.extractall(dest)
    else:
        with tarfile.open(sdist) as tf:
            tf.extractall(dest, filter="data")
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise NativePipUnavailable(f"{sdist.name} is not one project directory")
    return tops[0]


def build_wheel(
    source: Path,
    facts: TargetFacts,
    rootfs: Path,
    *,
    cache_dir: Path,
    tmp: Path,
    in_tree: bool,
) -> Built:
    """Build ``source`` (a project directory or an sdist, host paths) into a wheel for the target.

    ``in_tree``: the source is the image's directory and the build writes
    into it as pip's in-tree build does (``build/``, ``*.egg-info``).
    """
    out = tmp / f"wheel-{hashlib.sha256(str(source).encode()).hexdigest()[:12]}"
    out.mkdir(parents=True, exist_ok=True)
    legacy = "[build-system]" not in _pyproject(source)
    tools = _legacy_tools(rootfs, facts) if legacy else None
    if source.is_dir() and not in_tree:  # the backend writes into the tree it builds
        shutil.copytree(source, out / "src", symlinks=True)
        source, in_tree = out / "src", True
    elif tools is not None and not source.is_dir():
        source, in_tree = _unpack_sdist(source, out / "src"), True
    env = uv_env(cache_dir)
    cross, mounts = cross_env(facts, rootfs, tmp)
    env.update(cross)
    env["SOURCE_DATE_EPOCH"] = os.environ.get("SOURCE_DATE_EPOCH", "0")
    magic = bytecode_magic(resolve_in_root(rootfs, facts.stdlib))
    interp = (exact_python(facts.python_version, magic) if magic else None) or (sys.executable, "")
    from manyarch.sandbox.host import run_host_tool

    dist = out / "dist"
    dist.mkdir(exist_ok=True)
    if tools is not None:
        # pip 23 without [build-system] and with setuptools and wheel in the image:
        # `setup.py bdist_wheel` run by the image's setuptools, not an isolated build
        env["PYTHONPATH"] = ":".join(filter(None, (env.get("PYTHONPATH"), str(tools))))
        argv = [interp[0], "-c", _SETUP_SHIM, "bdist_wheel", "-d", str(dist)]
        mounts.append(tools)
    else:
        argv = [uv_binary(), "build", "--wheel", "--quiet", "--python", interp[0]]
        argv += ["--out-dir", str(dist), str(source)]
    (cache_dir / "uv").mkdir(parents=True, exist_ok=True)
    r = run_host_tool(
        argv,
        env=env,
        readonly=[*mounts, *([] if in_tree else [source])],
        writable=[out, cache_dir / "uv", *([source] if in_tree else [])],
        cwd=str(source if source.is_dir() else source.parent),
        network=True,
    )
    wheels = sorted(dist.glob("*.whl"))
    if r.returncode != 0 or len(wheels) != 1:
        err = [ln for ln in r.stderr.decode(errors="replace").splitlines() if ln.strip()]
        why = next((ln.strip() for ln in reversed(err) if "error" in ln.lower()), "")
        raise NativePipUnavailable(
            f"building {source.name} on the host failed ({why or err[-1:] or r.returncode})"
        )
    wheel = wheels[0]
    tag = wheel.name[:-4].split("-")[-1]
    pure = tag == "any"
    if not pure and facts.arch == _host_arch():
        # the host's platform: the image's own compiler and headers build it, natively
        raise NativePipUnavailable(f"{wheel.name} has compiled code: the image's tools build it")
    if not pure and not tag.endswith(facts.arch):
        raise NativePipUnavailable(f"{wheel.name} was built for the host, not {facts.arch}")
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        msg = Parser().parsestr(zf.read(meta).decode("utf-8", "replace"))
    keep = cache_dir / "built" / hashlib.sha256(wheel.read_bytes()).hexdigest() / wheel.name
    keep.parent.mkdir(parents=True, exist_ok=True)
    part = keep.with_name(f".{keep.name}.{os.getpid()}.{threading.get_ident()}")
    shutil.copyfile(wheel, part)
    os.replace(part, keep)
    return Built(keep, str(msg["Name"]), tuple(msg.get_all("Requires-Dist") or ()), pure)
