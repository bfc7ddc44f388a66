"""Install lines whose tool runs for real on the host: the host's twin of the image's python.

``python -m venv`` and uv lines (``uv pip install``, ``uv sync``, ``uv venv``)
run the interpreter they install for. A Debian image's ``/usr/bin/python3.11``
and a Debian host's are one build when their version and the standard
library modules that write files are the same (:func:`host_twin`): then the
real tool runs natively in the host sandbox with the image's directories
mounted at their own paths (uv with ``--python-platform`` for the target's
wheels), and writes what it writes under emulation.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from manyarch.bytecode import bytecode_magic, exact_python
from manyarch.errors import BuildError
from manyarch.imagebuild.nativepip.command import (
    NativePipUnavailable,
    UvCommand,
    VenvCommand,
    expand_words,
    image_path,
)
from manyarch.imagebuild.nativepip.target import (
    DEFAULT_PATH,
    TargetFacts,
    image_realpath,
    interpreter_path,
    target_facts,
    which,
)
from manyarch.sandbox.rootpath import resolve_in_root

if TYPE_CHECKING:
    from manyarch.sandbox.bwrap import Bind


@dataclass
class VenvJob:
    """``python -m venv``, run by the host's own twin of the image's interpreter."""

    python: str
    args: list[str]
    dirs: list[str]
    env: dict[str, str]
    wheels: list[Path] = field(default_factory=list)
    #: the image's directory of links that lead to the interpreter (see :func:`host_twin`)
    links: str | None = None

    def run(self, rootfs: Path, cache_dir: Path) -> list[str]:
        """Create the venvs: the image's directories mounted at their paths in the twin."""
        from manyarch.sandbox.bwrap import Bind
        from manyarch.sandbox.host import run_host_tool

        mounts = []
        if self.links is not None:
            mounts.append(Bind(resolve_in_root(rootfs, self.links), self.links))
        for d in self.dirs:
            host = resolve_in_root(rootfs, d)
            host.mkdir(parents=True, exist_ok=True)  # venv makes it with the same mode
            mounts.append(Bind(host, d, readonly=False))
        wheels = resolve_in_root(rootfs, "/usr/share/python-wheels")
        if wheels.is_dir():  # ensurepip installs the image's pip and setuptools
            mounts.append(Bind(wheels, "/usr/share/python-wheels"))
        r = run_host_tool(
            [self.python, "-m", "venv", *self.args], env=self.env, mounts=mounts, cwd="/"
        )
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip().splitlines()
            raise BuildError(
                f"python -m venv failed natively: {err[-1] if err else r.returncode}",
                "build without native pip to run it under emulation",
            )
        return [f"venv {d}" for d in self.dirs]


_VENV_FLAGS = ("--without-pip", "--system-site-packages", "--symlinks", "--clear", "--upgrade-deps")


def prepare_venv(
    cmd: VenvCommand,
    exe: str,
    facts: TargetFacts,
    rootfs: Path,
    env: Mapping[str, str],
    workdir: str,
) -> VenvJob:
    """``python -m venv DIR``: done by the host's python when it is the image's very build."""
    args = expand_words(cmd.args, rootfs, workdir)
    flags = [a for a in args if a.startswith("-")]
    dirs = [image_path(a, workdir) for a in args if not a.startswith("-")]
    bad = [f for f in flags if f not in _VENV_FLAGS]
    if bad or not dirs:
        raise NativePipUnavailable(f"python -m venv {' '.join(bad) or 'without a directory'}")
    links = host_twin(rootfs, exe, facts)
    run_env = {k: v for k, v in env.items() if k != "PATH"}
    run_env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return VenvJob(exe, [*flags, *dirs], dirs, run_env, links=links)


def host_twin(rootfs: Path, exe: str, facts: TargetFacts) -> str | None:
    """Whether the host's own build of the image's interpreter at ``exe`` stands in for it.

    A Debian image's ``/usr/bin/python3.11`` and a Debian host's are one build
    when their version and the standard library modules that write files
    (venv, ensurepip) are the same: the host's runs the image's venv natively.
    ``exe`` is run by its image path (a venv's links name it): when the host has
    no such path, but ``exe`` is the image's link to a path of the host that is
    the interpreter on both (python:3.X-slim's ``/usr/local/bin/python`` ->
    ``/usr/bin/python3``), the image's directory of that link is returned, to be
    mounted read-only in the twin; else None.
    """
    import filecmp

    real = image_realpath(rootfs, exe)
    if not facts.debian or facts.venv or not real.startswith("/usr/bin/"):
        raise NativePipUnavailable(f"{exe} has no twin on the host (not Debian's python)")
    links = None
    if os.path.realpath(exe) != real:
        links = _link_dir(rootfs, exe, real)
        if links is None:
            raise NativePipUnavailable(f"the host's {exe} is not {real}")
    magic = bytecode_magic(resolve_in_root(rootfs, facts.stdlib))
    found = exact_python(facts.python_version, magic) if magic is not None else None
    if found is None or found[1] != facts.python_version:
        raise NativePipUnavailable(f"the host has no python {facts.python_version}")
    for mod in ("venv/__init__.py", "ensurepip/__init__.py", "venv/scripts/common/activate"):
        image = resolve_in_root(rootfs, f"{facts.stdlib}/{mod}")
        host = Path(facts.stdlib) / mod
        if not (image.is_file() and host.is_file() and filecmp.cmp(image, host, shallow=False)):
            raise NativePipUnavailable(f"the host's {facts.stdlib}/{mod} is not the image's")
    return links


#: Directories of the host the twin needs as they are: never covered by an image's.
_HOST_DIRS = ("/", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/tmp", "/proc", "/dev")
_HOST_TREES = ("/usr/", "/bin/", "/sbin/", "/lib", "/etc/", "/proc/", "/dev/", "/sys/", "/run/")


def _link_dir(rootfs: Path, exe: str, real: str) -> str | None:
    """``exe``'s directory when the image's links from ``exe`` (within that directory)
    end on a path that is ``real`` both in the image and on the host."""
    home = posixpath.dirname(exe)
    if home.startswith("/usr/local/"):
        if not Path(home).is_dir():  # a mount point in the host's read-only /usr
            return None
    elif home in _HOST_DIRS or home.startswith(_HOST_TREES):
        return None
    path = exe
    for _ in range(40):  # the kernel's limit on links followed
        entry = resolve_in_root(rootfs, home) / posixpath.basename(path)
        if not entry.is_symlink():
            return None
        target = posixpath.normpath(posixpath.join(home, os.readlink(entry)))
        if posixpath.dirname(target) != home:
            same = os.path.realpath(target) == real == image_realpath(rootfs, target)
            return home if same else None
        path = target
    return None


@dataclass
class UvJob:
    """A ``uv`` line, run by the host's uv of the image's uv version, in the host's twin."""

    uv: str
    args: list[str]
    env: dict[str, str]
    cwd: str
    mounts: list[tuple[str, bool]]
    python: str = ""
    wheels: list[Path] = field(default_factory=list)
    #: uv's cache is a cache mount of the step: natively, uv keeps it in ``cache_dir/uv``
    cache_mounted: bool = False

    def run(self, rootfs: Path, cache_dir: Path) -> list[str]:
        """The image's directories uv reads and writes, mounted at their paths."""
        what = f"uv {' '.join(self.args[:2])}"
        for d, writable in self.mounts:
            if writable:
                resolve_in_root(rootfs, d).mkdir(parents=True, exist_ok=True)
        env, extra = self.env, []
        if self.cache_mounted:
            from manyarch.sandbox.bwrap import Bind

            cache = cache_dir / "uv"
            cache.mkdir(parents=True, exist_ok=True)
            extra.append(Bind(cache, str(cache), readonly=False))
            env = {**env, "UV_CACHE_DIR": str(cache)}
        argv = [self.uv, *self.args]
        run_with_image_dirs(argv, env, self.cwd, self.mounts, rootfs, what, extra=extra)
        return [what]


def run_with_image_dirs(
    argv: list[str],
    env: Mapping[str, str],
    cwd: str,
    mounts: list[tuple[str, bool]],
    rootfs: Path,
    what: str,
    *,
    extra: Sequence[Bind] = (),
) -> None:
    """Run a host tool (with the network) where the image's directories (those there) are
    mounted at their paths, writable or not, then ``extra``; :class:`NativePipUnavailable`
    when it fails."""
    from manyarch.sandbox.bwrap import Bind
    from manyarch.sandbox.host import run_host_tool

    binds = []
    for d, writable in mounts:
        host = resolve_in_root(rootfs, d)
        if host.exists():
            binds.append(Bind(host, d, readonly=not writable))
    r = run_host_tool(argv, env=env, mounts=[*binds, *extra], cwd=cwd, network=True)
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip().splitlines()
        raise NativePipUnavailable(f"{what} failed natively ({err[-1] if err else r.returncode})")


def _uv_version(binary: str) -> str:
    import subprocess

    r = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return r.stdout.split()[1] if r.returncode == 0 and len(r.stdout.split()) > 1 else ""


def uv_cache_dir(env: Mapping[str, str], home: str) -> str:
    """Where uv keeps its cache in the image: ``UV_CACHE_DIR``, else ``$XDG_CACHE_HOME/uv``,
    else ``~/.cache/uv``."""
    if env.get("UV_CACHE_DIR", "").startswith("/"):
        return posixpath.normpath(env["UV_CACHE_DIR"])
    if env.get("XDG_CACHE_HOME", "").startswith("/"):
        return posixpath.join(posixpath.normpath(env["XDG_CACHE_HOME"]), "uv")
    return posixpath.join(posixpath.normpath(env.get("HOME") or home), ".cache", "uv")


def under_mount(path: str, targets: Sequence[str]) -> bool:
    """``path`` is one of ``targets`` or inside one."""
    return any(path == t or path.startswith(t.rstrip("/") + "/") for t in targets)


def prepare_uv(
    cmd: UvCommand,
    rootfs: Path,
    env: Mapping[str, str],
    workdir: str,
    *,
    home: str = "/root",
    cache_mounts: Sequence[str] = (),
) -> UvJob:
    """A uv line done by the host's uv (the image's version) in the host's twin of its python.

    uv runs the interpreter it installs for (queries, byte-compiles): only the
    host's own build of the image's python can stand in for it; uv's own
    choices (wheels, scripts, RECORD, pycs) are then the emulated uv's, with
    ``--python-platform`` for the target's wheels. uv keeps no cache in the image:
    told so (``UV_NO_CACHE``), or its cache is one of ``cache_mounts`` (the step's
    cache and tmpfs mounts, as uv's Docker guide has it), kept on the host instead.
    """
    from manyarch.imagebuild.nativepip.resolve import uv_binary

    args = expand_words(cmd.args, rootfs, workdir)
    path = env.get("PATH", DEFAULT_PATH)
    image_uv = which(rootfs, cmd.python, path)
    if image_uv is None:
        raise NativePipUnavailable(f"{cmd.python} is not in the image")
    host_uv = uv_binary()
    version = _uv_version(host_uv)
    if _image_uv_version(rootfs, image_uv) != version:
        raise NativePipUnavailable(f"the image's uv is not the host's uv {version}")
    no_cache = env.get("UV_NO_CACHE", "").lower() in ("1", "true") or "--no-cache" in args
    cache_mounted = not no_cache and under_mount(uv_cache_dir(env, home), cache_mounts)
    if not (no_cache or cache_mounted):
        raise NativePipUnavailable(
            "uv would keep its cache in the image (set UV_NO_CACHE=1, or mount a cache on it)"
        )
    if any(a.startswith(("--python-platform", "--target", "--prefix")) for a in args):
        raise NativePipUnavailable("uv with --python-platform, --target or --prefix")
    exe = interpreter_path(rootfs, "python3", path)
    if exe is None:
        raise NativePipUnavailable("no python3 in the image")
    facts = target_facts(rootfs, exe)
    links = host_twin(rootfs, exe, facts)
    uv_env = {k: v for k, v in env.items() if k.startswith("UV_") or k in ("SOURCE_DATE_EPOCH",)}
    uv_env.update(PATH=path, HOME="/root", UV_PYTHON_DOWNLOADS="never")
    # uv reads PEP 668's marker from the interpreter's (the host's) standard library
    if resolve_in_root(rootfs, f"{facts.stdlib}/EXTERNALLY-MANAGED").is_file():
        allowed = uv_env.get("UV_BREAK_SYSTEM_PACKAGES", "").lower() in ("1", "true")
        if not allowed and "--break-system-packages" not in args:
            raise NativePipUnavailable("the image's python is externally managed (PEP 668)")
    else:
        uv_env["UV_BREAK_SYSTEM_PACKAGES"] = "1"
    for k in ("SSL_CERT_FILE",):
        if os.environ.get(k):
            uv_env[k] = os.environ[k]
    mounts: list[tuple[str, bool]] = [("/usr/local", True)]
    if links is not None and not under_mount(links, ["/usr/local"]):
        mounts.append((links, False))
    if workdir.strip("/"):
        mounts.append((workdir, True))
    else:  # "/": the files the line names there (a requirements file), not the whole image
        for a in args:
            name = a.split("=", 1)[-1] if a.startswith("-") else a
            if name and not name.startswith("/") and resolve_in_root(rootfs, "/" + name).exists():
                mounts.append(("/" + posixpath.normpath(name), False))
    mounts += [(d, False) for d in facts.site_dirs if not d.startswith("/usr/local/")]
    project_env = env.get("UV_PROJECT_ENVIRONMENT", "")
    if project_env.startswith("/"):
        mounts.append((project_env, True))
    for a in args:
        if a.startswith("/") and not a.startswith("/usr/") and a.strip("/"):
            mounts.append((posixpath.dirname(a) if "." in posixpath.basename(a) else a, True))
    if args[:1] != ["venv"]:  # a venv has no platform: only what is installed in it does
        args = [*args, "--python-platform", facts.uv_platform]
    return UvJob(
        host_uv, args, uv_env, workdir, mounts, facts.python_version, cache_mounted=cache_mounted
    )


def _image_uv_version(rootfs: Path, image_uv: str) -> str:
    """The version of the image's uv: its distribution's, when pip installed it."""
    import re

    for site in ("/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages"):
        for info in sorted(rootfs.glob(site.lstrip("/") + "/uv-*.dist-info")):
            m = re.match(r"uv-([^-]+)\.dist-info$", info.name)
            if m and (info / "RECORD").is_file():
                return m.group(1)
    return ""
