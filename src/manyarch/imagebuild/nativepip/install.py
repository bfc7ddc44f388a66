"""Native pip's install: a ``pip install`` line done on the host, as the image's pip does it.

For each command: the target's facts from the image's files
(:mod:`.target`), the command line read as the image's pip reads it
(:mod:`.pipoptions`), uv's resolution for the target's tags and markers
(:mod:`.resolve`), the wheels placed in pip's order as pip places them
(:mod:`.place`), then byte-compiled in one batch by a host interpreter of the
image's exact version, in a sandbox, with pycs reused from a cache.
:class:`NativePipUnavailable` before the rootfs is touched means: emulate.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import importlib.util
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from manyarch.bytecode import bytecode_magic, compile_argv, exact_python
from manyarch.errors import BuildError
from manyarch.imagebuild.nativepip.build import Built, build_wheel
from manyarch.imagebuild.nativepip.command import (
    NativePip,
    NativePipUnavailable,
    PipCommand,
    UvCommand,
    VenvCommand,
    Word,
)
from manyarch.imagebuild.nativepip.pipoptions import (
    PipOptions,
    fast_pip_options,
    parse_pip_options,
)
from manyarch.imagebuild.nativepip.place import (
    Placed,
    add_pyc_rows,
    canonical,
    install_order,
    place_wheel,
    uninstall,
)
from manyarch.imagebuild.nativepip.resolve import Resolved, ResolveRequest, fetch, resolve
from manyarch.imagebuild.nativepip.target import (
    DEFAULT_PATH,
    TargetFacts,
    image_realpath,
    interpreter_path,
    target_facts,
    which,
)
from manyarch.sandbox.rootpath import resolve_in_root

#: pip.conf files the image's pip reads (global, user, site).
_CONFIGS = ("/etc/pip.conf", "/etc/xdg/pip/pip.conf")


@dataclass
class Outcome:
    """What a native run did: distributions installed, per command, and how."""

    installed: list[str] = field(default_factory=list)
    python: str = ""
    notes: list[str] = field(default_factory=list)


def install(
    plan: NativePip,
    rootfs: Path,
    *,
    cache_dir: Path,
    home: str = "/root",
    scratch: bool = False,
) -> Outcome:
    """Do every command of ``plan`` in ``rootfs``.

    Commands are read, resolved and fetched before anything is written, so
    :class:`NativePipUnavailable` leaves the rootfs as it was; a later
    command's resolution sees what the earlier ones install (their wheels'
    metadata join the installed view). A ``python -m venv`` is done when
    reached (the commands after it need the venv): a failure after it is a
    :class:`BuildError` unless ``rootfs`` is a ``scratch`` tree the caller
    throws away.
    """
    out = Outcome()
    path = plan.env.get("PATH", DEFAULT_PATH)
    jobs: list[_Job | _VenvJob | _UvJob] = []
    written = False

    def flush() -> None:
        nonlocal written
        for job in jobs:
            out.installed += job.run(rootfs, cache_dir)
            written = True
        jobs.clear()

    with tempfile.TemporaryDirectory(prefix="manyarch-native-") as tmp:
        try:
            for n, cmd in enumerate(plan.commands):
                env = {**plan.env, **cmd.env}
                if isinstance(cmd, UvCommand):
                    jobs.append(_prepare_uv(cmd, rootfs, env, plan.workdir))
                    flush()  # what uv writes, the commands after it read
                    continue
                exe = interpreter_path(rootfs, cmd.python, path)
                if exe is None:
                    raise NativePipUnavailable(f"cannot tell which python {cmd.python} runs")
                facts = target_facts(rootfs, exe)
                out.python = facts.python_version
                if isinstance(cmd, VenvCommand):
                    jobs.append(_prepare_venv(cmd, exe, facts, rootfs, env, plan.workdir))
                    flush()
                    continue
                earlier = [w for j in jobs for w in j.wheels]
                work = Path(tmp) / str(n)
                work.mkdir()
                jobs.append(
                    _prepare(cmd, facts, rootfs, env, plan.workdir, cache_dir, home, work, earlier)
                )
            flush()
        except NativePipUnavailable as e:
            if written and not scratch:
                raise BuildError(
                    f"native install: {e.message}, after part of the line was done natively",
                    "build with --no-native-pip to run the line under emulation",
                ) from None
            raise
    return out


#: What an install reads and writes in any image (patterns of ``stages.pattern_filter``):
#: interpreters, what tells their version, architecture, glibc and scheme, the
#: installed distributions' metadata, pip (its parser and script template), pip's
#: configuration, the user tables, and the trees installs write to.
_READ_ALWAYS = (
    "bin/python*",
    "bin/pip*",
    "usr/bin/python*",
    "usr/bin/pip*",
    "usr/lib/python3*/_sysconfigdata*",
    "usr/lib/python3*/sysconfig.py",
    "usr/lib/python3*/EXTERNALLY-MANAGED",
    "usr/lib/python3*/importlib/_bootstrap_external.py",
    "usr/lib/python3*/dist-packages/*.dist-info/**",
    "usr/lib/python3*/dist-packages/*.egg-info/**",
    "usr/lib/python3*/dist-packages/*.egg-info",
    "usr/lib/python3*/dist-packages/pip/_internal/operations/install/wheel.py",
    "usr/lib/python3*/dist-packages/pip/_vendor/distlib/scripts.py",
    "usr/lib/*/libc.so.6",
    "usr/lib/*/libpython3*",
    "lib/*/libc.so.6",
    "lib64/libc.so.6",
    "usr/local/**",
    "usr/include/python3*/**",
    "opt/**",
    "etc/passwd",
    "etc/group",
    "etc/pip.conf",
    "etc/xdg/pip/**",
    "root/.pip/**",
    "root/.config/pip/**",
    "root/.local/**",
)
_SYSTEM_BIN = ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/local/sbin")


def paths_read(plan: NativePip, env: Mapping[str, str]) -> list[str]:
    """What :func:`install` may read or write for ``plan``, as ``pattern_filter`` patterns.

    The fixed set, the step's working directory, every absolute path the
    commands name (a venv's pip, ``--target``, ``--find-links``, a
    requirement file) and the tree above a non-system ``PATH`` directory (a
    venv's ``bin``).
    """
    out = list(_READ_ALWAYS)
    if any(isinstance(c, VenvCommand | UvCommand) for c in plan.commands):
        out += ["usr/lib/python3*/venv/**", "usr/lib/python3*/ensurepip/**"]
        out.append("usr/share/python-wheels/**")
    plain = all(
        fast_pip_options("23.0.1", [w.text for w in c.args], env, False) is not None
        for c in plan.commands
        if isinstance(c, PipCommand)
    )
    if not plain:  # the image's pip will read the line: all of it
        out.append("usr/lib/python3*/dist-packages/pip/**")
    roots = {plan.workdir}
    for d in env.get("PATH", DEFAULT_PATH).split(":"):
        if d.startswith("/") and d.rstrip("/") not in _SYSTEM_BIN:
            roots.add(posixpath.dirname(d.rstrip("/")))
    for cmd in plan.commands:
        for w in (Word(cmd.python), *cmd.args):
            text = w.text.split("=", 1)[-1] if w.text.startswith("-") else w.text
            if text.startswith("/"):
                roots.add(posixpath.dirname(text) if "*" in text else text)
        if cmd.python.startswith("/"):
            roots.add(posixpath.dirname(posixpath.dirname(cmd.python)))
    for r in roots:
        r = posixpath.normpath(r).strip("/")
        out += [r, f"{r}/**"] if r else ["*"]  # "/": the files at the top, not the whole image
    return out


def expand_words(words: Sequence[Word], rootfs: Path, workdir: str) -> list[str]:
    """Glob words expanded against the image's files, as the step's shell would."""
    out: list[str] = []
    for w in words:
        if not w.glob:
            out.append(w.text)
            continue
        absolute = w.text.startswith("/")
        base = rootfs.resolve()
        pattern = w.text if absolute else posixpath.join(workdir, w.text)
        host_pattern = str(base) + posixpath.normpath("/" + pattern)
        found = sorted(glob.glob(host_pattern))
        if not found:
            out.append(w.text)  # sh leaves an unmatched pattern as it is
            continue
        for f in found:
            image = "/" + os.path.relpath(f, base)
            out.append(image if absolute else os.path.relpath(image, workdir))
    return out


def _image_path(path: str, workdir: str) -> str:
    return posixpath.normpath(path if path.startswith("/") else posixpath.join(workdir, path))


def _options(
    cmd: PipCommand,
    facts: TargetFacts,
    rootfs: Path,
    env: Mapping[str, str],
    workdir: str,
    cache_dir: Path,
    home: str,
) -> PipOptions:
    if not facts.pip_version:
        raise NativePipUnavailable(f"the image's {facts.executable} has no pip")
    args = expand_words(cmd.args, rootfs, workdir)
    prefix = facts.venv or facts.base_prefix
    confs = [*_CONFIGS, f"{home}/.pip/pip.conf", f"{home}/.config/pip/pip.conf"]
    confs.append(f"{prefix}/pip.conf")
    exists = any(resolve_in_root(rootfs, c).exists() for c in confs)
    fast = fast_pip_options(facts.pip_version, args, env, exists)
    if fast is not None:
        return fast
    pip_site = next(
        d for d in facts.site_dirs if any(resolve_in_root(rootfs, d).glob("pip-*.dist-info"))
    )
    return parse_pip_options(rootfs, pip_site, prefix, home, args, env, cache_dir=cache_dir)


@dataclass
class _Job:
    """One resolved ``pip install``: the wheels to place, where and how."""

    direct: dict[int, str]
    facts: TargetFacts
    resolved: list[Resolved]
    wheels: list[Path]
    order: list[int]
    requested: set[str]
    scheme: dict[str, str]
    compile: bool
    stage: Path | None
    target: str
    upgrade: bool

    def run(self, rootfs: Path, cache_dir: Path) -> list[str]:
        """Place the wheels in pip's order, compile, move a --target's items."""
        dest_root = self.stage if self.stage is not None else rootfs
        placed: list[Placed] = []
        for i in self.order:
            r = self.resolved[i]
            if self.stage is None:
                uninstall(rootfs, self.scheme["purelib"], r.name)
            placed.append(
                place_wheel(
                    dest_root,
                    self.wheels[i],
                    self.scheme,
                    self.facts,
                    executable=self.facts.executable,
                    requested=canonical(r.name) in self.requested,
                    direct_url=self.direct.get(i),
                )
            )
        if self.compile:
            compile_placed(dest_root, placed, self.facts, rootfs, cache_dir)
        if self.stage is not None:
            _move_target(self.stage, rootfs, self.target, self.upgrade)
        return [f"{self.resolved[i].name}=={self.resolved[i].version}" for i in self.order]


def _prepare(
    cmd: PipCommand,
    facts: TargetFacts,
    rootfs: Path,
    env: Mapping[str, str],
    workdir: str,
    cache_dir: Path,
    home: str,
    work: Path,
    earlier: Sequence[Path],
) -> _Job:
    opts = _options(cmd, facts, rootfs, env, workdir, cache_dir, home)
    requirements_named: list[str] = []
    project_deps: list[str] = []
    bad = opts.unhandled
    if bad:
        raise NativePipUnavailable(f"pip option {bad[0]} is not done natively")
    fc = opts.get("format_control", {"no_binary": [], "only_binary": []})
    if fc.get("no_binary"):
        raise NativePipUnavailable("--no-binary: pip builds from source")
    only = fc.get("only_binary", [])
    if only and only != [":all:"]:
        raise NativePipUnavailable(f"--only-binary {','.join(only)}")
    if opts.get("editables"):
        raise NativePipUnavailable("-e: an editable install")
    user = bool(opts.get("use_user_site"))
    target = opts.get("target_dir")
    prefix = opts.get("prefix_path")
    if user and target:
        raise NativePipUnavailable("--user with --target: pip refuses it")
    if sum(map(bool, (user, target, prefix))) > 1:
        raise NativePipUnavailable("more than one of --user, --prefix, --target")
    if user and facts.venv:
        raise NativePipUnavailable("--user in a virtual environment: pip refuses it")
    externally = resolve_in_root(rootfs, f"{facts.stdlib}/EXTERNALLY-MANAGED").is_file()
    if (
        externally
        and not facts.venv
        and not (target or prefix)
        and not opts.get("override_externally_managed")
    ):
        raise NativePipUnavailable("the image's python is externally managed (PEP 668)")
    requirements: list[str] = []
    projects: list[str] = []
    for a in opts.args:
        if "://" in a or "@" in a:
            raise NativePipUnavailable(f"{a} is a URL, not a name on an index")
        if a.endswith(".whl") or a.startswith((".", "/")) or "/" in a:
            path = _image_path(a, workdir)
            if not resolve_in_root(rootfs, path).is_dir():
                raise NativePipUnavailable(f"{a} is a file, not a name on an index")
            projects.append(path)
        else:
            requirements.append(a)
    built: list[tuple[Built, str]] = []
    for project in projects:
        b = build_wheel(
            resolve_in_root(rootfs, project), facts, rootfs, cache_dir=cache_dir, tmp=work,
            in_tree=True,
        )  # fmt: skip
        built.append((b, project))
        # the project's own requirements are resolved with the rest, but are not
        # requested: pip reaches them through the project
        project_deps += [r for r in b.requires if "extra" not in r.partition(";")[2]]
        requirements_named.append(b.name)
    req_files = [_in_rootfs(rootfs, f, workdir) for f in opts.get("requirements", [])]
    con_files = [_in_rootfs(rootfs, f, workdir) for f in opts.get("constraints", [])]
    roots = list(requirements) + requirements_named
    for f in req_files:
        roots += _requirement_names(f, rootfs)
    if not roots and not built:
        raise NativePipUnavailable("nothing to install")
    links = []
    for link in opts.get("find_links", []):
        links.append(link if "://" in link else str(_in_rootfs(rootfs, link, workdir)))
    index = opts.get("index_url")
    extra = list(opts.get("extra_index_urls", []))
    upgrade = bool(opts.get("upgrade"))
    eager = upgrade and opts.get("upgrade_strategy") == "eager"
    ignore = bool(opts.get("ignore_installed")) or bool(target)
    force = bool(opts.get("force_reinstall"))
    if user:
        scheme = facts.scheme(user_home=home)
    elif prefix:
        scheme = facts.scheme(prefix=str(prefix))
    elif target:
        scheme = facts.scheme(home=_TARGET_STAGE)
    else:
        scheme = facts.scheme()
    view_dirs: list[str] = []
    if not ignore and not force:
        view_dirs = ([scheme["purelib"]] if user else []) + list(facts.site_dirs)
    request = ResolveRequest(
        requirements=requirements + project_deps,
        requirement_files=req_files,
        constraint_files=con_files,
        index_url=index,
        extra_index_urls=extra,
        no_index=bool(opts.get("no_index")),
        find_links=links,
        pre=bool(opts.get("pre")),
        no_deps=bool(opts.get("ignore_dependencies")),
        only_binary=bool(only),
        upgrade=[canonical(_name(r)) for r in roots] if upgrade and not eager else [],
        upgrade_all=eager,
        installed_view=[resolve_in_root(rootfs, d) for d in dict.fromkeys(view_dirs)],
        installed_wheels=earlier if view_dirs else (),
        require_hashes=bool(opts.get("require_hashes")),
        pins=_pins(roots) if not upgrade else None,
    )
    resolved = (
        resolve(request, facts, cache_dir=cache_dir, tmp=work, rootfs=rootfs)
        if requirements or project_deps or req_files
        else []
    )
    wheels = fetch(resolved, cache_dir)
    for n, r in enumerate(resolved):
        if not r.sdist:
            continue
        if opts.get("cache_dir") is not False:
            raise NativePipUnavailable(
                f"{r.name} {r.version} is an sdist and pip would keep the wheel it builds in "
                "its cache (the image's ~/.cache/pip)"
            )
        if only:
            raise NativePipUnavailable(f"{r.name} {r.version} has no wheel (--only-binary)")
        b = build_wheel(wheels[n], facts, rootfs, cache_dir=cache_dir, tmp=work, in_tree=False)
        wheels[n] = b.wheel
    direct: dict[int, str] = {}
    for b, project in built:
        direct[len(resolved)] = json.dumps(
            {"dir_info": {}, "url": f"file://{project}"}, sort_keys=True
        )
        resolved.append(Resolved(b.name, "", "", "", b.wheel.name))
        wheels.append(b.wheel)
    stage = work / "stage" if target else None
    if stage is not None:
        stage.mkdir()
    return _Job(
        direct=direct,
        facts=facts,
        resolved=resolved,
        wheels=wheels,
        order=install_order(wheels, roots, facts.markers) if wheels else [],
        requested={canonical(_name(r)) for r in roots},
        scheme=scheme,
        compile=opts.get("compile", True) is not False,
        stage=stage,
        target=_image_path(str(target), workdir) if target else "",
        upgrade=upgrade,
    )


@dataclass
class _VenvJob:
    """``python -m venv``, run by the host's own twin of the image's interpreter."""

    python: str
    args: list[str]
    dirs: list[str]
    env: dict[str, str]
    wheels: list[Path] = field(default_factory=list)

    def run(self, rootfs: Path, cache_dir: Path) -> list[str]:
        """Create the venvs: the image's directories mounted at their paths in the twin."""
        from manyarch.sandbox.bwrap import Bind
        from manyarch.sandbox.host import run_host_tool

        mounts = []
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
                "build with --no-native-pip to run it under emulation",
            )
        return [f"venv {d}" for d in self.dirs]


_VENV_FLAGS = ("--without-pip", "--system-site-packages", "--symlinks", "--clear", "--upgrade-deps")


def _prepare_venv(
    cmd: VenvCommand,
    exe: str,
    facts: TargetFacts,
    rootfs: Path,
    env: Mapping[str, str],
    workdir: str,
) -> _VenvJob:
    """``python -m venv DIR``: done by the host's python when it is the image's very build."""
    args = expand_words(cmd.args, rootfs, workdir)
    flags = [a for a in args if a.startswith("-")]
    dirs = [_image_path(a, workdir) for a in args if not a.startswith("-")]
    bad = [f for f in flags if f not in _VENV_FLAGS]
    if bad or not dirs:
        raise NativePipUnavailable(f"python -m venv {' '.join(bad) or 'without a directory'}")
    twin = host_twin(rootfs, exe, facts)
    run_env = {k: v for k, v in env.items() if k != "PATH"}
    run_env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return _VenvJob(twin, [*flags, *dirs], dirs, run_env)


def host_twin(rootfs: Path, exe: str, facts: TargetFacts) -> str:
    """The host's own build of the image's interpreter at ``exe``, or why not.

    A Debian image's ``/usr/bin/python3.11`` and a Debian host's are one build
    when their version and the standard library modules that write files
    (venv, ensurepip) are the same: the host's runs the image's venv natively.
    """
    import filecmp

    real = image_realpath(rootfs, exe)
    if not facts.debian or facts.venv or not real.startswith("/usr/bin/"):
        raise NativePipUnavailable(f"{exe} has no twin on the host (not Debian's python)")
    host_real = os.path.realpath(exe)
    if host_real != real:
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
    return exe


@dataclass
class _UvJob:
    """A ``uv`` line, run by the host's uv of the image's uv version, in the host's twin."""

    uv: str
    args: list[str]
    env: dict[str, str]
    cwd: str
    mounts: list[tuple[str, bool]]
    wheels: list[Path] = field(default_factory=list)

    def run(self, rootfs: Path, cache_dir: Path) -> list[str]:
        """The image's directories uv reads and writes, mounted at their paths."""
        from manyarch.sandbox.bwrap import Bind
        from manyarch.sandbox.host import run_host_tool

        binds = []
        for d, writable in self.mounts:
            host = resolve_in_root(rootfs, d)
            if writable:
                host.mkdir(parents=True, exist_ok=True)
            if host.exists():
                binds.append(Bind(host, d, readonly=not writable))
        r = run_host_tool(
            [self.uv, *self.args], env=self.env, mounts=binds, cwd=self.cwd, network=True
        )
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip().splitlines()
            raise NativePipUnavailable(
                f"uv {' '.join(self.args[:2])} failed natively ({err[-1] if err else r.returncode})"
            )
        return [f"uv {' '.join(self.args[:2])}"]


def _uv_version(binary: str) -> str:
    import subprocess

    r = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return r.stdout.split()[1] if r.returncode == 0 and len(r.stdout.split()) > 1 else ""


def _prepare_uv(cmd: UvCommand, rootfs: Path, env: Mapping[str, str], workdir: str) -> _UvJob:
    """A uv line done by the host's uv (the image's version) in the host's twin of its python.

    uv runs the interpreter it installs for (queries, byte-compiles): only the
    host's own build of the image's python can stand in for it; uv's own
    choices (wheels, scripts, RECORD, pycs) are then the emulated uv's, with
    ``--python-platform`` for the target's wheels.
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
    if not (env.get("UV_NO_CACHE", "").lower() in ("1", "true") or "--no-cache" in args):
        raise NativePipUnavailable("uv would keep its cache in the image (set UV_NO_CACHE=1)")
    if any(a.startswith(("--python-platform", "--target", "--prefix")) for a in args):
        raise NativePipUnavailable("uv with --python-platform, --target or --prefix")
    exe = interpreter_path(rootfs, "python3", path)
    if exe is None:
        raise NativePipUnavailable("no python3 in the image")
    facts = target_facts(rootfs, exe)
    host_twin(rootfs, exe, facts)
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
    if workdir.strip("/"):
        mounts.append((workdir, True))
    mounts += [(d, False) for d in facts.site_dirs if not d.startswith("/usr/local/")]
    project_env = env.get("UV_PROJECT_ENVIRONMENT", "")
    if project_env.startswith("/"):
        mounts.append((project_env, True))
    for a in args:
        if a.startswith("/") and not a.startswith("/usr/") and a.strip("/"):
            mounts.append((posixpath.dirname(a) if "." in posixpath.basename(a) else a, True))
    if args[:1] != ["venv"]:  # a venv has no platform: only what is installed in it does
        args = [*args, "--python-platform", facts.uv_platform]
    return _UvJob(host_uv, args, uv_env, workdir, mounts)


def _image_uv_version(rootfs: Path, image_uv: str) -> str:
    """The version of the image's uv: its distribution's, when pip installed it."""
    import re

    for site in ("/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages"):
        for info in sorted(rootfs.glob(site.lstrip("/") + "/uv-*.dist-info")):
            m = re.match(r"uv-([^-]+)\.dist-info$", info.name)
            if m and (info / "RECORD").is_file():
                return m.group(1)
    return ""


#: pip's --target installs into a temporary home scheme first (its pycs name it).
_TARGET_STAGE = "/tmp/pip-target-native"


def _move_target(stage: Path, rootfs: Path, target: str, upgrade: bool) -> None:
    """pip's ``_handle_target_dir``: the staged lib and data items moved into ``target``."""
    home = stage / _TARGET_STAGE.lstrip("/")
    dest = resolve_in_root(rootfs, target)
    dest.mkdir(parents=True, exist_ok=True)
    for src in (home / "lib/python", home):
        if not src.is_dir():
            continue
        for item in sorted(os.listdir(src)):
            if src == home and item == "lib":
                continue
            there = dest / item
            if there.exists() or there.is_symlink():
                if not upgrade:
                    continue  # pip: "Target directory ... already exists"
                if there.is_dir() and not there.is_symlink():
                    shutil.rmtree(there)
                else:
                    there.unlink()
            shutil.move(str(src / item), there)


def _in_rootfs(rootfs: Path, path: str, workdir: str) -> Path:
    host = resolve_in_root(rootfs, _image_path(path, workdir))
    if not host.exists():
        raise NativePipUnavailable(f"{path} is not in the image")
    return host


def _pins(requirements: Sequence[str]) -> dict[str, str] | None:
    """``{name: version}`` when every requirement is ``name==version`` (no marker), else None."""
    from packaging.requirements import InvalidRequirement, Requirement

    pins: dict[str, str] = {}
    for r in requirements:
        try:
            req = Requirement(r)
        except InvalidRequirement:
            return None
        specs = list(req.specifier)
        if req.marker is not None or req.extras or len(specs) != 1:
            return None
        spec = specs[0]
        if spec.operator not in ("==", "===") or "*" in spec.version:
            return None
        pins[canonical(req.name)] = spec.version
    return pins or None


def _name(requirement: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(requirement).name
    except InvalidRequirement:
        return requirement


def _requirement_names(path: Path, rootfs: Path, seen: set[Path] | None = None) -> list[str]:
    """The requirements a file names (for REQUESTED and pip's install order); nested -r too."""
    from packaging.requirements import InvalidRequirement, Requirement

    seen = seen if seen is not None else set()
    if path in seen:
        return []
    seen.add(path)
    out: list[str] = []
    text = path.read_text(errors="replace").replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            opt, _, value = line.replace("=", " ", 1).partition(" ")
            value = value.strip()
            if opt in ("-r", "--requirement"):
                if value.startswith("/"):
                    raise NativePipUnavailable(f"{path.name} includes {value}")
                out += _requirement_names(path.parent / value, rootfs, seen)
            elif opt in ("-e", "--editable"):
                raise NativePipUnavailable(f"{path.name} has an editable requirement (-e)")
            elif opt in ("--no-binary",):
                raise NativePipUnavailable(f"{path.name} has {opt}")
            continue
        req = line.split(" --hash", 1)[0].split("\t--hash", 1)[0].strip()
        try:
            parsed = Requirement(req)
        except InvalidRequirement:
            raise NativePipUnavailable(
                f"{path.name}: {req!r} is a path or URL, not a name on an index"
            ) from None
        if parsed.url:
            raise NativePipUnavailable(f"{path.name}: {req!r} is a direct URL")
        out.append(req)
    return out


def compile_placed(
    root: Path,
    placed: Sequence[Placed],
    facts: TargetFacts,
    rootfs: Path,
    cache_dir: Path,
) -> None:
    """Byte-compile the placed modules as pip does, and list their pycs in each RECORD.

    By a host interpreter of the image's exact version when there is one
    (Debian's python3.11 is the image's), else one of the same bytecode
    magic; in a sandbox, the pycs hash-checked and naming the image paths.
    Pycs are kept in a cache keyed by the interpreter, the image path and the
    source's hash. Without a suitable interpreter nothing is compiled (Python
    compiles at first import).
    """
    modules = [m for p in placed for m in p.modules]
    if not modules:
        return
    magic = bytecode_magic(resolve_in_root(rootfs, facts.stdlib))
    interp = exact_python(facts.python_version, magic) if magic is not None else None
    if interp is None:
        return
    key_base = f"{interp[1]}\0{magic}\0".encode()
    keyed: list[tuple[str, Path, Path]] = []
    for m in modules:
        src = resolve_in_root(root, m)
        pyc = Path(importlib.util.cache_from_source(str(src)))
        h = hashlib.sha256(key_base + m.encode() + b"\0" + src.read_bytes()).hexdigest()
        keyed.append((m, pyc, cache_dir / "pyc" / h[:2] / h))
    todo = _from_cache(keyed)
    if todo:
        # the platforms of a build install the same pure modules at the same paths at
        # once: one compiles while the other waits, then takes the pycs from the cache
        lock = cache_dir / "pyc" / ".lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            todo = _from_cache(todo)
            if todo:
                _compile(interp[0], root, [m for m, _, _ in todo])
                for _, pyc, kept in todo:
                    if pyc.is_file():
                        os.chmod(pyc, 0o644)
                        kept.parent.mkdir(parents=True, exist_ok=True)
                        part = kept.with_name(f".{kept.name}.{os.getpid()}")
                        shutil.copyfile(pyc, part)
                        os.replace(part, kept)
    add_pyc_rows(root, placed)


def _from_cache(keyed: Sequence[tuple[str, Path, Path]]) -> list[tuple[str, Path, Path]]:
    """Copy the cached pycs in place; the modules still to compile."""
    todo = []
    for m, pyc, kept in keyed:
        if kept.is_file():
            pyc.parent.mkdir(exist_ok=True)
            shutil.copyfile(kept, pyc)
            os.chmod(pyc, 0o644)
        else:
            todo.append((m, pyc, kept))
    return todo


def _compile(interp: str, root: Path, modules: Sequence[str]) -> None:
    from manyarch.sandbox.host import run_host_tool

    host_root = root.resolve()
    with tempfile.TemporaryDirectory(prefix="manyarch-compile-") as tmp:
        listing = Path(tmp) / "modules.list"
        listing.write_text("".join(f"{host_root}{m}\n" for m in modules))
        r = run_host_tool(
            compile_argv(interp, host_root, listing),
            env={"PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"},
            readonly=[Path(tmp)],
            writable=[host_root],
        )
    if r.returncode not in (0, 1):  # 1: a module that does not compile, left as pip leaves it
        raise NativePipUnavailable(
            f"byte-compiling failed: {r.stderr.decode(errors='replace').strip()[-300:]}"
        )
