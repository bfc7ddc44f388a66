"""Native pip: run a foreign platform's ``RUN pip install ...`` on the host.

Emulating pip under QEMU costs minutes for what is, with wheels, a download
and an unzip. For a RUN line that is only ``pip install`` (``pip``, ``pip3``,
``python3 -m pip``; ``&&``-chained parts all understood), :func:`plan_run`
returns a :class:`NativePip`, else a :class:`Fallback` with the reason.
:meth:`NativePip.execute` then

1. asks the target interpreter once, under emulation, for its facts
   (:class:`TargetFacts`: the exact tags its pip supports, its marker
   environment, the install schemes pip would use), cached by base digest and
   interpreter digest;
2. resolves on the host with the host's pip, patched to see the target's tags,
   markers and already-installed distributions (``pip install --dry-run
   --report``, ``--only-binary=:all:``);
3. fetches the wheels (a content-addressed wheel cache, pip's HTTP cache), and
   places them with ``installer`` into the rootfs with the target's scheme and
   shebang, with pip's ``INSTALLER`` and ``REQUESTED`` markers.

A requirement without a wheel for the target raises :class:`NativePipUnavailable`
before the rootfs is touched; the builder then runs the line under emulation.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manyarch import dockerfile as df
from manyarch.imagebuild.builder import RAN, StepContext, _Ran
from manyarch.imagebuild.bytecode import bytecode_magic, compile_tree, host_python
from manyarch.errors import BuildError, ManyarchError
from manyarch.sandbox.rootpath import resolve_in_root

#: What a native install writes, in the build cache's keys: bump it when that
#: changes (2: modules byte-compiled), so no older result is reused.
OUTPUT_VERSION = 2

#: pip options taken over as they are (flag -> takes a value).
_PASS_OPTIONS: dict[str, bool] = {
    "-i": True,
    "--index-url": True,
    "--extra-index-url": True,
    "--no-index": False,
    "-f": True,
    "--find-links": True,
    "--pre": False,
    "--no-deps": False,
    "--upgrade-strategy": True,
    "--trusted-host": True,
    "--timeout": True,
    "--retries": True,
    "--prefer-binary": False,
}
#: pip options with no effect on what lands in the image (flag -> takes a value).
_NEUTRAL_OPTIONS: dict[str, bool] = {
    "--no-cache-dir": False,
    "-q": False,
    "--quiet": False,
    "-v": False,
    "--verbose": False,
    "--disable-pip-version-check": False,
    "--no-warn-script-location": False,
    "--no-warn-conflicts": False,
    "--root-user-action": True,
    "--break-system-packages": False,
    "--progress-bar": True,
    "--no-input": False,
    "--no-build-isolation": False,
    "--compile": False,
    "--no-color": False,
    "--only-binary": True,
    "--cache-dir": True,
}
#: PIP_* variables of the RUN environment a native run understands.
_PIP_ENV_PASS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_PRE")
_PIP_ENV_NEUTRAL = (
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "PIP_ROOT_USER_ACTION",
    "PIP_BREAK_SYSTEM_PACKAGES",
    "PIP_NO_WARN_SCRIPT_LOCATION",
    "PIP_PROGRESS_BAR",
    "PIP_NO_INPUT",
    "PIP_NO_COMPILE",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_CERT",
)
#: Host variables the host pip keeps (the proxy and its CA); the rest of PIP_* goes.
_HOST_PIP_KEEP = ("PIP_CERT", "PIP_CLIENT_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_PROXY")
#: pip configuration files in an image change what pip does there.
_IMAGE_PIP_CONFIGS = ("etc/pip.conf", "etc/xdg/pip/pip.conf", "root/.config/pip/pip.conf")
_PYTHON_NAMES = ("python", "python3")
#: The host pip runs in a child process (pip keeps global state, and is patched
#: there); this is that process's entry point, handed its arguments.
_RUNNER = [
    sys.executable,
    "-c",
    "import sys; from manyarch.imagebuild.nativepip import _runner; "
    "raise SystemExit(_runner(sys.argv[1:]))",
]
#: Bump when the facts' shape changes, so old cache entries are ignored.
_FACTS_VERSION = 1

_PROBE = r"""
import json, sys
import pip
from pip._internal.locations import get_scheme
from pip._internal.utils.compatibility_tags import get_supported
from pip._vendor.packaging.markers import default_environment
def scheme(**kw):
    s = get_scheme("@DIST@", **kw)
    return {k: getattr(s, k) for k in ("purelib", "platlib", "headers", "scripts", "data")}
print(json.dumps({
    "version": list(sys.version_info[:3]),
    "implementation": sys.implementation.name,
    "executable": sys.executable,
    "path": [p for p in sys.path if p],
    "tags": [str(t) for t in get_supported()],
    "markers": default_environment(),
    "pip_version": pip.__version__,
    "scheme": scheme(),
    "user_scheme": scheme(user=True),
    "prefix_scheme": scheme(prefix="/@PREFIX@"),
}))
"""


class NativePipUnavailable(ManyarchError):
    """The native path cannot do this RUN exactly; the builder emulates it instead."""


@dataclass(frozen=True)
class TargetFacts:
    """What the target interpreter told about itself (asked once, under emulation)."""

    version: tuple[int, int, int]
    implementation: str
    executable: str
    path: tuple[str, ...]
    tags: tuple[str, ...]
    markers: Mapping[str, str]
    pip_version: str
    scheme: Mapping[str, str]
    user_scheme: Mapping[str, str]
    prefix_scheme: Mapping[str, str]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TargetFacts:
        """Read the probe's JSON."""
        v = data["version"]
        return cls(
            version=(int(v[0]), int(v[1]), int(v[2])),
            implementation=str(data["implementation"]),
            executable=str(data["executable"]),
            path=tuple(data["path"]),
            tags=tuple(data["tags"]),
            markers=dict(data["markers"]),
            pip_version=str(data["pip_version"]),
            scheme=dict(data["scheme"]),
            user_scheme=dict(data["user_scheme"]),
            prefix_scheme=dict(data["prefix_scheme"]),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON :meth:`from_json` reads."""
        return {
            "version": list(self.version),
            "implementation": self.implementation,
            "executable": self.executable,
            "path": list(self.path),
            "tags": list(self.tags),
            "markers": dict(self.markers),
            "pip_version": self.pip_version,
            "scheme": dict(self.scheme),
            "user_scheme": dict(self.user_scheme),
            "prefix_scheme": dict(self.prefix_scheme),
        }

    @property
    def python_version(self) -> str:
        """``3.11.2``."""
        return ".".join(map(str, self.version))


@dataclass(frozen=True)
class PipInstall:
    """One understood ``pip install`` command."""

    python: str  # the command that runs pip: "pip3", "python3", "/usr/bin/python3"
    requirements: tuple[str, ...] = ()
    requirement_files: tuple[str, ...] = ()
    constraint_files: tuple[str, ...] = ()
    pip_options: tuple[str, ...] = ()
    upgrade: bool = False
    force_reinstall: bool = False
    ignore_installed: bool = False
    user: bool = False
    prefix: str | None = None
    #: byte-compile what is installed, as pip does unless --no-compile
    compile: bool = True


@dataclass(frozen=True)
class Fallback:
    """This RUN is emulated; ``reason`` says why, for the progress output."""

    reason: str


@dataclass(frozen=True)
class NativePip:
    """A RUN line the host can do: one or more ``pip install`` commands."""

    commands: tuple[PipInstall, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str = "/"

    def execute(
        self,
        rootfs: Path,
        facts: TargetFacts,
        *,
        cache_dir: Path,
        epoch: int | None = None,
    ) -> list[str]:
        """Install into ``rootfs``; returns ``name==version`` installed, in order.

        Raises :class:`NativePipUnavailable` (nothing changed in the rootfs
        for the command that raised) when a wheel is missing for the target.
        """
        done: list[str] = []
        for cmd in self.commands:
            done += _execute_one(cmd, rootfs, facts, self.env, self.workdir, cache_dir, epoch)
        return done


# -- planning ----------------------------------------------------------------


def plan_run(
    argv: Sequence[str], shell_form: bool, env: Mapping[str, str], workdir: str
) -> NativePip | Fallback:
    """Decide whether a RUN (its argv as the builder runs it) can run natively."""
    for k in env:
        if k.startswith("PIP_") and k not in _PIP_ENV_PASS + _PIP_ENV_NEUTRAL:
            return Fallback(f"{k} is set")
    if shell_form:
        if len(argv) != 3 or argv[1] != "-c" or Path(argv[0]).name not in ("sh", "bash", "dash"):
            return Fallback("not a /bin/sh -c command")
        parts = _split_shell(argv[2])
        if isinstance(parts, Fallback):
            return parts
    else:
        parts = [list(argv)]
    commands: list[PipInstall] = []
    for words in parts:
        cmd = parse_pip_command(words)
        if isinstance(cmd, Fallback):
            return cmd
        commands.append(cmd)
    if not commands:
        return Fallback("empty command")
    return NativePip(tuple(commands), dict(env), workdir or "/")


_SHELL_SPECIAL = set("$`\\*?~{}<>|;&()'\"#")


def _split_shell(text: str) -> list[list[str]] | Fallback:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        tokens = list(lexer)
    except ValueError as e:
        return Fallback(f"shell syntax: {e}")
    for ch in "$`~*?{}":
        if ch in text:
            return Fallback(f"shell expansion ({ch!r}) in the command")
    parts: list[list[str]] = [[]]
    for tok in tokens:
        if tok == "&&":
            parts.append([])
        elif tok and all(c in "();<>|&" for c in tok):
            return Fallback(f"shell operator {tok!r} (only && is understood)")
        else:
            parts[-1].append(tok)
    if any(not p for p in parts):
        return Fallback("empty command around &&")
    for p in parts:
        if "=" in p[0] and not p[0].startswith("-"):
            return Fallback("variable assignment before the command")
    return parts


def parse_pip_command(words: Sequence[str]) -> PipInstall | Fallback:
    """``pip install ...`` words (after the shell) as a :class:`PipInstall`, or why not."""
    if not words:
        return Fallback("empty command")
    exe = words[0]
    name = Path(exe).name
    rest: list[str]
    if _is_pip(name):
        python, rest = exe, list(words[1:])
    elif _is_python(name):
        args = list(words[1:])
        while args and args[0] in ("-I", "-E", "-s", "-B", "-u"):
            args.pop(0)
        if args[:2] == ["-m", "pip"]:
            python, rest = exe, args[2:]
        else:
            return Fallback(f"{exe} runs something else than pip")
    else:
        return Fallback(f"{exe!r} is not pip")
    if not rest or rest[0] != "install":
        return Fallback(f"pip {rest[0] if rest else ''} is not pip install".replace("  ", " "))
    reqs: list[str] = []
    rfiles: list[str] = []
    cfiles: list[str] = []
    opts: list[str] = []
    upgrade = force = ignore = user = False
    compile_ = True
    prefix: str | None = None
    i = 1
    args = rest
    while i < len(args):
        a = args[i]
        flag, eq, inline = a.partition("=") if a.startswith("--") else (a, "", "")

        def value(a: str = a, flag: str = flag, eq: str = eq, inline: str = inline) -> str | None:
            nonlocal i
            if eq:
                return inline
            if flag.startswith("-") and not flag.startswith("--") and len(a) > 2:
                return a[2:]  # -rfile
            if i + 1 >= len(args):
                return None
            i += 1
            return args[i]

        short = a[:2] if a.startswith("-") and not a.startswith("--") else flag
        if short in ("-r",) or flag == "--requirement":
            v = value()
            if v is None:
                return Fallback(f"{a} without a value")
            rfiles.append(v)
        elif short == "-c" or flag == "--constraint":
            v = value()
            if v is None:
                return Fallback(f"{a} without a value")
            cfiles.append(v)
        elif a in ("-U", "--upgrade"):
            upgrade = True
        elif a == "--force-reinstall":
            force = True
        elif a in ("-I", "--ignore-installed"):
            ignore = True
        elif a == "--user":
            user = True
        elif a == "--no-compile":
            compile_ = False
        elif flag == "--prefix":
            v = value()
            if v is None or not v.startswith("/"):
                return Fallback("--prefix needs an absolute path")
            prefix = v
        elif flag in _PASS_OPTIONS or short in _PASS_OPTIONS:
            key = flag if flag in _PASS_OPTIONS else short
            if _PASS_OPTIONS[key]:
                v = value()
                if v is None:
                    return Fallback(f"{a} without a value")
                if key in ("-f", "--find-links") and not v.startswith(("http://", "https://")):
                    return Fallback("--find-links to a local directory")
                opts += [key, v]
            else:
                opts.append(key)
        elif flag in _NEUTRAL_OPTIONS:
            if _NEUTRAL_OPTIONS[flag]:
                v = value()
                if v is None:
                    return Fallback(f"{a} without a value")
                if flag == "--only-binary" and v != ":all:":
                    return Fallback(f"--only-binary={v}")
        elif a in ("-qq", "-qqq", "-vv", "-vvv"):
            pass
        elif a.startswith("-"):
            return Fallback(f"pip option {a} is not understood")
        else:
            bad = _requirement_problem(a)
            if bad:
                return Fallback(bad)
            reqs.append(a)
        i += 1
    if not reqs and not rfiles:
        return Fallback("nothing to install")
    if user and prefix:
        return Fallback("--user with --prefix")
    return PipInstall(
        python=python,
        requirements=tuple(reqs),
        requirement_files=tuple(rfiles),
        constraint_files=tuple(cfiles),
        pip_options=tuple(opts),
        upgrade=upgrade,
        force_reinstall=force,
        ignore_installed=ignore,
        user=user,
        prefix=prefix,
        compile=compile_,
    )


def _is_pip(name: str) -> bool:
    return name in ("pip", "pip3") or (name.startswith("pip3.") and name[5:].isdigit())


def _is_python(name: str) -> bool:
    return name in _PYTHON_NAMES or (name.startswith("python3.") and name[8:].isdigit())


def _requirement_problem(text: str) -> str | None:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(text)
    except InvalidRequirement:
        return f"{text!r} is not a requirement pip finds on an index (a path or URL?)"
    if req.url:
        return f"{text!r} is a direct URL"
    return None


def _requirement_file_problem(path: Path, seen: set[Path] | None = None) -> str | None:
    seen = seen if seen is not None else set()
    if path in seen:
        return None
    seen.add(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        return f"cannot read {path.name}: {e.strerror}"
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            head = line.split(None, 1)
            opt = head[0].split("=", 1)[0]
            if opt in ("-r", "--requirement", "-c", "--constraint"):
                target = head[1] if len(head) > 1 else head[0].split("=", 1)[-1]
                if target.startswith("/") or "://" in target:
                    return f"{path.name} includes {target}"
                problem = _requirement_file_problem(path.parent / target, seen)
                if problem:
                    return problem
            elif opt not in ("-i", "--index-url", "--extra-index-url", "--pre", "--prefer-binary"):
                return f"{path.name} has the option {opt}"
            continue
        req = line.split(";", 1)[0].strip() + (";" + line.split(";", 1)[1] if ";" in line else "")
        if "--hash" in req:
            req = req.split("--hash", 1)[0].strip()
        bad = _requirement_problem(req)
        if bad:
            return f"{path.name}: {bad}"
    return None


# -- target facts ------------------------------------------------------------


def interpreter_path(rootfs: Path, command: str, env_path: str) -> str | None:
    """The absolute path (in the image) of the interpreter ``command`` runs.

    For ``pip``/``pip3`` it is the interpreter of the script's shebang.
    """
    exe = _which(rootfs, command, env_path)
    if exe is None:
        return None
    if _is_pip(Path(command).name):
        try:
            with open(resolve_in_root(rootfs, exe), "rb") as f:
                first = f.readline(256)
        except OSError:
            return None
        if not first.startswith(b"#!"):
            return None
        words = first[2:].decode(errors="replace").split()
        if not words or not words[0].startswith("/") or len(words) > 1:
            return None
        return words[0]
    return exe


def _which(rootfs: Path, command: str, env_path: str) -> str | None:
    if "/" in command:
        return command if resolve_in_root(rootfs, command).is_file() else None
    for d in env_path.split(":"):
        if d.startswith("/") and resolve_in_root(rootfs, f"{d}/{command}").is_file():
            return f"{d.rstrip('/')}/{command}"
    return None


def file_digest(path: Path) -> str:
    """sha256 hex of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def target_facts(rootfs: Path, interpreter: str, *, base_key: str, cache_dir: Path) -> TargetFacts:
    """The facts of ``interpreter`` in ``rootfs``: from the cache, else asked under emulation.

    The key is the base image's digest and the interpreter binary's digest, so
    a stage that replaced its python asks again.
    """
    real = resolve_in_root(rootfs, interpreter)
    if not real.is_file():
        raise NativePipUnavailable(f"{interpreter} is not in the image")
    key = hashlib.sha256(
        f"{_FACTS_VERSION}\0{base_key}\0{interpreter}\0{file_digest(real)}".encode()
    ).hexdigest()
    path = cache_dir / "pyfacts" / f"{key}.json"
    try:
        return TargetFacts.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError):
        pass
    facts = probe(rootfs, interpreter)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(facts.to_json()))
    os.replace(tmp, path)
    return facts


def probe(rootfs: Path, interpreter: str) -> TargetFacts:
    """Run the probe in the rootfs (emulated for a foreign architecture)."""
    from manyarch.sandbox.bwrap import SandboxSpec, run

    spec = SandboxSpec(
        rootfs=rootfs,
        argv=[interpreter, "-I", "-c", _PROBE],
        env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
        network="none",
    )
    r = run(spec, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip().splitlines()
        raise NativePipUnavailable(
            f"{interpreter} in the image has no usable pip ({err[-1] if err else r.returncode})"
        )
    return TargetFacts.from_json(json.loads(r.stdout))


# -- execution ---------------------------------------------------------------


def _scheme_for(cmd: PipInstall, facts: TargetFacts, dist: str) -> dict[str, str]:
    if cmd.user:
        base = facts.user_scheme
    elif cmd.prefix is not None:
        pre = cmd.prefix.rstrip("/")
        base = {k: v.replace("/@PREFIX@", pre) for k, v in facts.prefix_scheme.items()}
    else:
        base = facts.scheme
    return {k: v.replace("@DIST@", dist) for k, v in base.items()}


def _host_env(run_env: Mapping[str, str], cache_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in _HOST_PIP_KEEP}
    # the host's pip.conf (find-links, mirrors) is not the image's
    env["PIP_CONFIG_FILE"] = os.devnull
    env.setdefault("PIP_CERT", env.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    for k in _PIP_ENV_PASS:
        if k in run_env:
            env[k] = run_env[k]
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _execute_one(
    cmd: PipInstall,
    rootfs: Path,
    facts: TargetFacts,
    run_env: Mapping[str, str],
    workdir: str,
    cache_dir: Path,
    epoch: int | None,
) -> list[str]:
    for cfg in _IMAGE_PIP_CONFIGS:
        if resolve_in_root(rootfs, cfg).exists():
            raise NativePipUnavailable(f"the image has a pip configuration (/{cfg})")
    if facts.implementation != "cpython":
        raise NativePipUnavailable(f"the target python is {facts.implementation}")
    args: list[str] = []
    files = [("-r", f) for f in cmd.requirement_files] + [("-c", f) for f in cmd.constraint_files]
    for flag, f in files:
        host = resolve_in_root(rootfs, f if f.startswith("/") else f"{workdir.rstrip('/')}/{f}")
        problem = _requirement_file_problem(host)
        if problem:
            raise NativePipUnavailable(problem)
        args += [flag, str(host)]
    args += list(cmd.requirements) + list(cmd.pip_options)
    if cmd.upgrade:
        args.append("--upgrade")
    if cmd.force_reinstall:
        args.append("--force-reinstall")
    if cmd.ignore_installed:
        args.append("--ignore-installed")
    scheme = _scheme_for(cmd, facts, "@DIST@")
    site_dirs = [scheme["purelib"], scheme["platlib"]]
    if cmd.user or cmd.prefix is None:
        site_dirs += [p for p in facts.path if p not in site_dirs]
    paths = [str(resolve_in_root(rootfs, p)) for p in dict.fromkeys(site_dirs)]
    with tempfile.TemporaryDirectory(prefix="manyarch-pip-") as tmp:
        t = Path(tmp)
        (t / "facts.json").write_text(json.dumps(facts.to_json()))
        (t / "paths.json").write_text(json.dumps(paths))
        report = t / "report.json"
        r = subprocess.run(
            [
                *_RUNNER,
                "resolve",
                str(t / "facts.json"),
                str(t / "paths.json"),
                str(report),
                *args,
            ],
            env=_host_env(run_env, cache_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        if r.returncode != 0:
            raise NativePipUnavailable(_pip_failure(r.stdout.decode(errors="replace")))
        items = json.loads(report.read_text()).get("install", [])
        wheels = _fetch_wheels(
            items, cache_dir, _host_env(run_env, cache_dir), t / "dl", t / "facts.json"
        )
        _check_replacements(items, rootfs, scheme, facts, cmd)
        done: list[str] = []
        installed: list[_Installed] = []
        for item, wheel in zip(items, wheels, strict=True):
            meta = item["metadata"]
            _uninstall(meta["name"], rootfs, scheme)
            installed.append(
                _install_wheel(wheel, rootfs, cmd, facts, meta["name"], bool(item.get("requested")))
            )
            done.append(f"{meta['name']}=={meta['version']}")
    compile_off = run_env.get("PIP_NO_COMPILE", "").lower() in ("1", "true", "yes", "on")
    if cmd.compile and not compile_off:
        _compile(rootfs, facts, installed)
    return done


@dataclass
class _Installed:
    """What one wheel put in the image: its RECORD and its modules (image paths)."""

    record: str
    site: str
    modules: list[str] = field(default_factory=list)


def _compile(rootfs: Path, facts: TargetFacts, installed: Sequence[_Installed]) -> None:
    """Byte-compile the installed modules and list the pycs in each RECORD, as pip does.

    Without a host interpreter of the target's bytecode, nothing is compiled
    (Python compiles at first import, as with ``--no-compile``).
    """
    modules = [m for i in installed for m in i.modules]
    if not modules:
        return
    magic = None
    for entry in facts.path:
        magic = bytecode_magic(resolve_in_root(rootfs, entry))
        if magic is not None:
            break
    v = facts.version
    interp = host_python(f"python{v[0]}.{v[1]}", magic) if magic is not None else None
    if interp is None:
        return
    compile_tree(interp, rootfs, [resolve_in_root(rootfs, m) for m in modules])
    tag = f"{facts.implementation}-{v[0]}{v[1]}"
    for inst in installed:
        rows = []
        for m in inst.modules:
            d, name = posixpath.split(m)
            pyc = f"{d}/__pycache__/{name.removesuffix('.py')}.{tag}.pyc"
            if resolve_in_root(rootfs, pyc).is_file():
                rows.append(f"{posixpath.relpath(pyc, inst.site)},,\n")
        if rows:
            with open(resolve_in_root(rootfs, inst.record), "a", newline="") as f:
                f.write("".join(rows))


def _pip_failure(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in lines:
        if "No matching distribution found" in ln or "Could not find a version" in ln:
            return ln.removeprefix("ERROR: ") + " as a wheel for the target"
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    return (errors[-1] if errors else (lines[-1] if lines else "pip failed")).removeprefix(
        "ERROR: "
    )


def wheel_cache_dir(cache_dir: Path) -> Path:
    """Where downloaded wheels are kept, by sha256."""
    return cache_dir / "wheels"


def _fetch_wheels(
    items: Sequence[Mapping[str, Any]],
    cache_dir: Path,
    env: Mapping[str, str],
    dl: Path,
    facts_file: Path,
) -> list[Path]:
    out: list[Path | None] = []
    missing: list[tuple[int, str, str]] = []
    for n, item in enumerate(items):
        info = item.get("download_info") or {}
        url = str(info.get("url", ""))
        sha = (info.get("archive_info") or {}).get("hashes", {}).get("sha256") or ""
        name = url.rsplit("/", 1)[-1].split("#", 1)[0]
        if not name.endswith(".whl") or not sha:
            raise NativePipUnavailable(f"{item['metadata']['name']} has no wheel for the target")
        cached = wheel_cache_dir(cache_dir) / sha / name
        out.append(cached if cached.exists() else None)
        if not cached.exists():
            missing.append((n, url, sha))
    if missing:
        dl.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            [*_RUNNER, "download", str(facts_file)]
            + ["--no-deps", "--quiet", "-d", str(dl)]
            + [f"{Path(u.split('#', 1)[0]).name.split('-')[0]} @ {u}" for _, u, _ in missing],
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        if r.returncode != 0:
            raise BuildError(
                f"native pip: downloading wheels failed: {_pip_failure(r.stdout.decode())}",
                "check the network, or build with --no-native-pip",
            )
        for n, url, sha in missing:
            name = url.rsplit("/", 1)[-1].split("#", 1)[0]
            got = dl / name
            if not got.exists() or file_digest(got) != sha:
                raise BuildError(f"native pip: {name} did not download as announced")
            dest = wheel_cache_dir(cache_dir) / sha / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(got, dest.with_suffix(".tmp"))
            os.replace(dest.with_suffix(".tmp"), dest)
            out[n] = dest
    return [p for p in out if p is not None]


def _installed(rootfs: Path, dirs: Sequence[str]) -> dict[str, Path]:
    from packaging.utils import canonicalize_name

    found: dict[str, Path] = {}
    for d in dirs:
        host = resolve_in_root(rootfs, d)
        if not host.is_dir():
            continue
        for info in sorted(host.iterdir()):
            if info.suffix in (".dist-info", ".egg-info"):
                name = info.name.rsplit("-", 1)[0] if "-" in info.stem else info.stem
                found.setdefault(str(canonicalize_name(name.split("-")[0])), info)
    return found


def _check_replacements(
    items: Sequence[Mapping[str, Any]],
    rootfs: Path,
    scheme: Mapping[str, str],
    facts: TargetFacts,
    cmd: PipInstall,
) -> None:
    from packaging.utils import canonicalize_name

    if cmd.ignore_installed:
        return
    ours = {scheme["purelib"], scheme["platlib"]}
    elsewhere = _installed(rootfs, [p for p in facts.path if p not in ours])
    for item in items:
        name = str(canonicalize_name(item["metadata"]["name"]))
        if name in elsewhere and not (elsewhere[name] / "RECORD").exists():
            raise NativePipUnavailable(
                f"{name} is installed outside pip's scheme ({elsewhere[name].parent}) "
                "without a RECORD"
            )


def _uninstall(name: str, rootfs: Path, scheme: Mapping[str, str]) -> None:
    from packaging.utils import canonicalize_name

    want = str(canonicalize_name(name))
    for d in dict.fromkeys((scheme["purelib"], scheme["platlib"])):
        site = resolve_in_root(rootfs, d)
        old = _installed(rootfs, [d]).get(want)
        if old is None:
            continue
        record = old / "RECORD"
        if record.exists():
            import csv

            with open(record, newline="") as f:
                for row in csv.reader(f):
                    if not row:
                        continue
                    p = (site / row[0]).resolve()
                    root = rootfs.resolve()
                    if root not in p.parents:
                        continue
                    if p.is_file() or p.is_symlink():
                        p.unlink()
                        pycache = p.parent / "__pycache__"
                        for pyc in pycache.glob(f"{p.stem}.*.pyc") if p.suffix == ".py" else []:
                            pyc.unlink()
        if old.exists():
            shutil.rmtree(old)
        for parent in sorted({p for p in site.rglob("*") if p.is_dir()}, reverse=True):
            if parent.name == "__pycache__" and not any(parent.iterdir()):
                parent.rmdir()


def _install_wheel(
    wheel: Path, rootfs: Path, cmd: PipInstall, facts: TargetFacts, name: str, requested: bool
) -> _Installed:
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.records import RecordEntry
    from installer.sources import WheelFile
    from installer.utils import Scheme

    done = _Installed("", "")

    class Destination(SchemeDictionaryDestination):
        """Notes the RECORD and the modules written, for one compile of every wheel's."""

        def finalize_installation(
            self,
            scheme: Scheme,
            record_file_path: str,
            records: Iterable[tuple[Scheme, RecordEntry]],
        ) -> None:
            entries = list(records)
            done.site = self.scheme_dict[scheme]
            done.record = f"{done.site}/{record_file_path}"
            done.modules = [
                posixpath.normpath(f"{self.scheme_dict[s]}/{r.path}")
                for s, r in entries
                if s in ("purelib", "platlib") and r.path.endswith(".py")
            ]
            super().finalize_installation(scheme, record_file_path, entries)

    scheme = _scheme_for(cmd, facts, name)
    dest = Destination(
        scheme,
        interpreter=facts.executable,
        script_kind="posix",
        bytecode_optimization_levels=(),
        destdir=str(rootfs),
    )
    extra = {"INSTALLER": b"pip\n"}
    if requested:
        extra["REQUESTED"] = b""
    # directories through image symlinks (/usr/local/bin -> ...) stay inside the root
    for k, v in scheme.items():
        host = resolve_in_root(rootfs, v)
        if host != rootfs / v.lstrip("/"):
            raise NativePipUnavailable(f"the image's {k} directory {v} is a symbolic link")
    with WheelFile.open(wheel) as source:
        install(source, dest, extra)
    return done


# -- the builder's hook --------------------------------------------------------


class NativePipInterceptor:
    """The builder's interceptor: a ``RUN pip install`` done on the host, else None."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self.native = 0
        self.fallbacks: list[str] = []

    def __call__(self, ctx: StepContext) -> _Ran | None:
        """Install natively and return :data:`RAN`, or None (the builder emulates)."""
        step = ctx.step
        if not isinstance(step, df.RunStep) or ctx.sandbox is None:
            return None
        if "pip" not in step.command_text and "pip" not in " ".join(step.argv):
            return None  # not a pip line: nothing to say
        spec = ctx.sandbox
        plan = plan_run(step.argv, step.shell_form, spec.env, spec.cwd)
        if isinstance(plan, NativePip):
            if spec.user not in ("", "root", "0", "0:0", "root:root"):
                plan = Fallback(f"runs as user {spec.user}")
            elif spec.network == "none":
                plan = Fallback("the network is off")
        if isinstance(plan, Fallback):
            return self._fallback(ctx, plan.reason)
        path = spec.env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        base_key = str(ctx.layers[0].digest) if ctx.layers else ""
        try:
            facts_by_python: dict[str, TargetFacts] = {}
            for cmd in plan.commands:
                interp = interpreter_path(ctx.rootfs, cmd.python, path)
                if interp is None:
                    return self._fallback(ctx, f"cannot tell which python {cmd.python} runs")
                if interp not in facts_by_python:
                    facts_by_python[interp] = target_facts(
                        ctx.rootfs, interp, base_key=base_key, cache_dir=self.cache_dir
                    )
            if len(facts_by_python) != 1:
                return self._fallback(ctx, "more than one python")
            facts = next(iter(facts_by_python.values()))
            done = plan.execute(
                ctx.rootfs, facts, cache_dir=self.cache_dir, epoch=ctx.options.epoch
            )
        except NativePipUnavailable as e:
            return self._fallback(ctx, e.message)
        self.native += 1
        ctx.log(
            f"native pip: {len(done)} distributions for {ctx.platform} "
            f"(python {facts.python_version}) installed from the host"
        )
        return RAN

    def _fallback(self, ctx: StepContext, reason: str) -> _Ran | None:
        self.fallbacks.append(reason)
        ctx.log(f"native pip: not used ({reason}); running it under emulation")
        return None


# -- the host pip, patched to see the target ---------------------------------


def _runner(argv: Sequence[str]) -> int:
    """The host side, a child process (pip keeps global state and is patched here).

    ``resolve FACTS PATHS REPORT PIP-ARGS...`` or ``download FACTS PIP-ARGS...``.
    """
    mode, argv = argv[0], argv[1:]
    facts = TargetFacts.from_json(json.loads(Path(argv[0]).read_text()))
    import pip._internal.metadata as pip_metadata
    import pip._internal.models.target_python as target_python
    import pip._internal.resolution.resolvelib.factory as factory
    import pip._vendor.packaging.markers as markers
    from pip._internal.cli.main import main as pip_main
    from pip._vendor.packaging.tags import Tag

    tags = [Tag(*t.split("-")) for t in facts.tags]
    setattr(target_python, "get_supported", lambda *a, **k: list(tags))  # noqa: B010
    env = dict(facts.markers)
    setattr(markers, "default_environment", lambda: dict(env))  # noqa: B010

    v = facts.version
    if mode == "download":
        return pip_main(["download", "--only-binary=:all:", *argv[1:]])
    paths = json.loads(Path(argv[1]).read_text())
    report = argv[2]

    def environment() -> Any:
        return pip_metadata.get_environment(paths)

    setattr(pip_metadata, "get_default_environment", environment)  # noqa: B010
    setattr(factory, "get_default_environment", environment)  # noqa: B010
    return pip_main(
        [
            "install",
            "--dry-run",
            "--quiet",
            "--report",
            report,
            "--only-binary=:all:",
            "--python-version",
            f"{v[0]}.{v[1]}.{v[2]}",
            *argv[3:],
        ]
    )
