"""Native pip's install: a ``pip install`` line done on the host, as the image's pip does it.

(A ``pip wheel`` command of the line is :mod:`.wheeldir`'s.)

For each command: the target's facts from the image's files
(:mod:`.target`), the command line read as the image's pip reads it
(:mod:`.pipoptions`), uv's resolution for the target's tags and markers
(:mod:`.resolve`), the wheels placed in pip's order as pip places them
(:mod:`.place`), then byte-compiled in one batch by a host interpreter of the
image's exact version, in a sandbox, with pycs reused from a cache.
:class:`NativePipUnavailable` before the rootfs is touched means: emulate.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from manyarch.errors import BuildError
from manyarch.imagebuild.nativepip.bytecompile import compile_placed
from manyarch.imagebuild.nativepip.command import (
    NativePip,
    NativePipUnavailable,
    PipCommand,
    PoetryCommand,
    UvCommand,
    VenvCommand,
    Word,
    image_path,
)
from manyarch.imagebuild.nativepip.pipline import (
    check_formats,
    pins,
    read_line,
    read_options,
    requirement_name,
)
from manyarch.imagebuild.nativepip.pipoptions import PipOptions, fast_pip_options
from manyarch.imagebuild.nativepip.place import (
    Placed,
    canonical,
    install_order,
    place_wheel,
    uninstall,
)
from manyarch.imagebuild.nativepip.poetry import PoetryJob, prepare_poetry
from manyarch.imagebuild.nativepip.resolve import Resolved
from manyarch.imagebuild.nativepip.target import (
    DEFAULT_PATH,
    TargetFacts,
    interpreter_path,
    target_facts,
)
from manyarch.imagebuild.nativepip.twin import UvJob, VenvJob, prepare_uv, prepare_venv
from manyarch.imagebuild.nativepip.wheeldir import WheelJob, prepare_wheel
from manyarch.sandbox.rootpath import resolve_in_root


@dataclass
class Outcome:
    """What a native run did: distributions installed, per command, and how."""

    installed: list[str] = field(default_factory=list)
    #: ``pip wheel``: the wheels saved, and where
    saved: list[str] = field(default_factory=list)
    wheel_dirs: list[str] = field(default_factory=list)
    python: str = ""
    notes: list[str] = field(default_factory=list)


def install(
    plan: NativePip,
    rootfs: Path,
    *,
    cache_dir: Path,
    home: str = "/root",
    scratch: bool = False,
    cache_mounts: Sequence[str] = (),
) -> Outcome:
    """Do every command of ``plan`` in ``rootfs``.

    Commands are read, resolved and fetched before anything is written, so
    :class:`NativePipUnavailable` leaves the rootfs as it was; a later
    command's resolution sees what the earlier ones install (their wheels'
    metadata join the installed view). A ``python -m venv`` is done when
    reached (the commands after it need the venv): a failure after it is a
    :class:`BuildError` unless ``rootfs`` is a ``scratch`` tree the caller
    throws away. ``cache_mounts`` are the image paths the step mounts a cache (or a
    tmpfs) on: a uv line's cache there is kept on the host.
    """
    out = Outcome()
    path = plan.env.get("PATH", DEFAULT_PATH)
    jobs: list[_Job | VenvJob | UvJob | PoetryJob | WheelJob] = []
    written = False

    def flush() -> None:
        nonlocal written
        for job in jobs:
            if isinstance(job, WheelJob):
                out.saved += job.run(rootfs, cache_dir)
                out.wheel_dirs.append(job.wheel_dir)
            else:
                out.installed += job.run(rootfs, cache_dir)
            written = True
        jobs.clear()

    with tempfile.TemporaryDirectory(prefix="manyarch-native-") as tmp:
        try:
            for n, cmd in enumerate(plan.commands):
                env = {**plan.env, **cmd.env}
                if isinstance(cmd, UvCommand | PoetryCommand):
                    tool = _tool_job(cmd, rootfs, env, plan.workdir, home, cache_mounts)
                    jobs.append(tool)
                    out.python = tool.python
                    flush()  # what the tool writes, the commands after it read
                    continue
                exe = interpreter_path(rootfs, cmd.python, path)
                if exe is None:
                    raise NativePipUnavailable(f"cannot tell which python {cmd.python} runs")
                facts = target_facts(rootfs, exe)
                out.python = facts.python_version
                if isinstance(cmd, VenvCommand):
                    jobs.append(prepare_venv(cmd, exe, facts, rootfs, env, plan.workdir))
                    flush()
                    continue
                earlier = [w for j in jobs for w in j.wheels]
                work = Path(tmp) / str(n)
                work.mkdir()
                places = (cache_dir, home, work)
                if cmd.action == "wheel":
                    jobs.append(prepare_wheel(cmd, facts, rootfs, env, plan.workdir, *places))
                    flush()  # the wheelhouse a later command of the line may install from
                    continue
                job = _prepare(
                    cmd, facts, rootfs, env, plan.workdir, cache_dir, home, work, earlier
                )
                job.link_pycs = scratch
                jobs.append(job)
            flush()
        except NativePipUnavailable as e:
            if written and not scratch:
                raise BuildError(
                    f"native install: {e.message}, after part of the line was done natively",
                    "build without native pip to run the line under emulation",
                ) from e
            raise
    return out


def _tool_job(
    cmd: UvCommand | PoetryCommand,
    rootfs: Path,
    env: Mapping[str, str],
    workdir: str,
    home: str,
    cache_mounts: Sequence[str],
) -> UvJob | PoetryJob:
    """A uv or poetry line: the real tool, run by the host's twin of the image's python."""
    if isinstance(cmd, UvCommand):
        return prepare_uv(cmd, rootfs, env, workdir, home=home, cache_mounts=cache_mounts)
    return prepare_poetry(cmd, rootfs, env, workdir)


#: What an install reads and writes in any image (patterns of ``stages.pattern_filter``):
#: interpreters, what tells their version, architecture, glibc and scheme, the
#: installed distributions' metadata, pip (its parser and script template), pip's
#: configuration, the user tables, and the trees installs write to.
READ_ALWAYS = (
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
    out = list(READ_ALWAYS)
    if any(isinstance(c, VenvCommand | UvCommand | PoetryCommand) for c in plan.commands):
        out += ["usr/lib/python3*/venv/**", "usr/lib/python3*/ensurepip/**"]
        out.append("usr/share/python-wheels/**")
    if any(isinstance(c, PoetryCommand) for c in plan.commands):
        # poetry's home (its configuration, its cache) and the pip it uninstalls with
        out += ["root", "root/**", "usr/lib/python3*/dist-packages/pip/**"]
    plain = all(
        fast_pip_options("23.0.1", [w.text for w in c.args], env, False, command=c.action)
        is not None
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
            if w.text[:1] == "-" and w.text[1:2].isalpha() and w.text[2:3] == "/":
                text = w.text[2:]  # a short option's value joined to it: -r/x.txt, -w/wheels
            if text.startswith("/"):
                roots.add(posixpath.dirname(text) if "*" in text else text)
        if cmd.python.startswith("/"):
            roots.add(posixpath.dirname(posixpath.dirname(cmd.python)))
    for r in roots:
        r = posixpath.normpath(r).strip("/")
        out += [r, f"{r}/**"] if r else ["*"]  # "/": the files at the top, not the whole image
    return out


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
    #: the rootfs is a tree thrown away after the step: cached pycs linked, not copied
    link_pycs: bool = False

    def run(self, rootfs: Path, cache_dir: Path) -> list[str]:
        """Place the wheels in pip's order, compile, move a --target's items."""
        if self.stage is not None:
            self.stage.mkdir(exist_ok=True)
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
            compile_placed(dest_root, placed, self.facts, rootfs, cache_dir, link=self.link_pycs)
        if self.stage is not None:
            _move_target(self.stage, rootfs, self.target, self.upgrade)
        return [f"{self.resolved[i].name}=={self.resolved[i].version}" for i in self.order]


def _check_user_site(
    resolved: Sequence[Resolved], opts: PipOptions, facts: TargetFacts, rootfs: Path, home: str
) -> None:
    """A distribution in the user site shadows the system's: pip would uninstall it there."""
    if opts.get("use_user_site") or opts.get("target_dir") or facts.venv:
        return
    site = resolve_in_root(rootfs, f"{home}/.local/lib/python{facts.xy}/site-packages")
    if not site.is_dir():
        return
    there = {canonical(p.name.split("-")[0]) for p in site.glob("*.dist-info")}
    clash = sorted(there & {canonical(r.name) for r in resolved})
    if clash:
        raise NativePipUnavailable(f"{clash[0]} is in the user site too (pip would uninstall it)")


def _scheme(opts: PipOptions, facts: TargetFacts, home: str) -> tuple[dict[str, str], list[str]]:
    """pip's install scheme for the options, and where it sees what is installed."""
    user = bool(opts.get("use_user_site"))
    target = opts.get("target_dir")
    scheme = facts.scheme(
        user_home=home if user else "",
        prefix=str(opts.get("prefix_path") or ""),
        home=_TARGET_STAGE if target else "",
    )
    if opts.get("ignore_installed") or target or opts.get("force_reinstall"):
        return scheme, []
    return scheme, ([scheme["purelib"]] if user else []) + list(facts.site_dirs)


def _check_options(opts: PipOptions, facts: TargetFacts, rootfs: Path) -> list[str]:
    """Refuse what is not done natively (or what pip itself refuses); ``--only-binary``'s value."""
    only = check_formats(opts)
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
    return only


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
    opts = read_options(cmd, facts, rootfs, env, workdir, cache_dir, home)
    only = _check_options(opts, facts, rootfs)
    target = opts.get("target_dir")
    line = read_line(opts, only, facts, rootfs, workdir, cache_dir, work)
    roots = line.roots
    upgrade, eager = bool(opts.get("upgrade")), opts.get("upgrade_strategy") == "eager"
    scheme, view_dirs = _scheme(opts, facts, home)
    request = line.request(
        upgrade=[canonical(requirement_name(r)) for r in roots] if upgrade and not eager else [],
        upgrade_all=upgrade and eager,
        installed_view=[resolve_in_root(rootfs, d) for d in dict.fromkeys(view_dirs)],
        installed_wheels=earlier if view_dirs else (),
        pins=pins(roots) if not upgrade else None,
    )
    resolved = line.resolve(request, facts, rootfs, cache_dir, work)
    _check_user_site(resolved, opts, facts, rootfs, home)
    wheels, direct = line.fetch(resolved, facts, rootfs, cache_dir, work)
    stage = work / "stage" if target else None  # --target: a stage, then moved
    return _Job(
        direct=direct,
        facts=facts,
        resolved=resolved,
        wheels=wheels,
        order=install_order(wheels, roots, facts.markers) if wheels else [],
        requested={canonical(requirement_name(r)) for r in roots},
        scheme=scheme,
        compile=opts.get("compile", True) is not False,
        stage=stage,
        target=image_path(str(target), workdir) if target else "",
        upgrade=upgrade,
    )


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
