"""pip command lines: which RUN lines native pip understands, and what they ask."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from manyarch.errors import ManyarchError

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
_PYTHON_NAMES = ("python", "python3")


class NativePipUnavailable(ManyarchError):
    """The native path cannot do this RUN exactly; the executor emulates it instead."""


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


def plan_run(
    argv: Sequence[str], shell_form: bool, env: Mapping[str, str], workdir: str
) -> NativePip | Fallback:
    """Decide whether a RUN (its argv as the executor runs it) can run natively."""
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
    # Long on purpose: one branch per pip option, as pip reads them; a table would hide
    # which ones make native pip fall back to emulation.
    if not words:
        return Fallback("empty command")
    exe = words[0]
    name = Path(exe).name
    rest: list[str]
    if is_pip(name):
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


def is_pip(name: str) -> bool:
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


def requirement_file_problem(path: Path, seen: set[Path] | None = None) -> str | None:
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
                problem = requirement_file_problem(path.parent / target, seen)
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
