"""RUN lines native pip understands: the shell's words, then which commands they are.

The line is split as ``/bin/sh`` splits it: quotes, backslashes, ``$VAR``
and ``${VAR}`` (``:-``/``-`` defaults) from the step's environment (its
``ENV`` and ``ARG`` values), commands chained with ``&&`` or ``;``, and
``NAME=value`` prefixes. Unquoted glob characters are kept as a flag on the
word and expanded against the image's files when the step runs (the shell
does it in the image). What a command's options mean is decided later, by
the image's own pip (:mod:`.pipoptions`). Anything else (pipes, ``||``,
command substitution, redirections) is a :class:`Fallback` with the reason.
"""

from __future__ import annotations

import glob
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from manyarch.errors import ManyarchError

_PYTHON_RE = re.compile(r"python(3(\.\d+)?)?$")
_PIP_RE = re.compile(r"pip(3(\.\d+)?)?$")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class NativePipUnavailable(ManyarchError):
    """The native path cannot do this RUN exactly; the executor emulates it instead."""


class NeedsPaths(NativePipUnavailable):
    """A partial tree lacks files the install reads: open one with ``patterns`` too, retry."""

    def __init__(self, message: str, patterns: Sequence[str]) -> None:
        super().__init__(message)
        self.patterns = tuple(patterns)


@dataclass(frozen=True)
class Word:
    """One shell word after quote removal and expansion; ``glob`` when it has unquoted ``*?[``."""

    text: str
    glob: bool = False


@dataclass(frozen=True)
class PipCommand:
    """``pip install ARGS`` (or ``python -m pip install ARGS``, or ``pip wheel ARGS``)."""

    #: the command that runs pip, as written: ``pip3``, ``python3``, ``/venv/bin/pip``
    python: str
    args: tuple[Word, ...]
    #: ``NAME=value`` words before the command
    env: Mapping[str, str] = field(default_factory=dict)
    #: pip's sub-command: ``install`` or ``wheel``
    action: str = "install"


@dataclass(frozen=True)
class VenvCommand:
    """``python -m venv [--without-pip] DIR``."""

    python: str
    args: tuple[Word, ...]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UvCommand:
    """``uv pip install ...``, ``uv sync ...`` or ``uv venv ...``: ``args`` after ``uv``."""

    python: str  # the uv command as written
    args: tuple[Word, ...]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PoetryCommand:
    """``poetry install ...``: ``args`` after ``install``."""

    python: str  # the poetry command as written
    args: tuple[Word, ...]
    env: Mapping[str, str] = field(default_factory=dict)


Command = PipCommand | VenvCommand | UvCommand | PoetryCommand


@dataclass(frozen=True)
class Fallback:
    """This RUN is emulated; ``reason`` says why, for the progress output."""

    reason: str


@dataclass(frozen=True)
class NativePip:
    """A RUN line the host can do: one or more understood commands, in order."""

    commands: tuple[Command, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str = "/"


def run_words(
    argv: Sequence[str], shell_form: bool, env: Mapping[str, str]
) -> list[list[Word]] | Fallback:
    """A RUN's commands as words: ``sh -c LINE`` split as the shell would, else the argv."""
    if not shell_form:
        return [[Word(a) for a in argv]]
    if len(argv) != 3 or argv[1] != "-c" or Path(argv[0]).name not in ("sh", "bash", "dash"):
        return Fallback("not a /bin/sh -c command")
    return split_shell(argv[2], env)


def plan_run(
    argv: Sequence[str], shell_form: bool, env: Mapping[str, str], workdir: str
) -> NativePip | Fallback:
    """Decide whether a RUN (its argv as the executor runs it) can run natively."""
    parts = run_words(argv, shell_form, env)
    if isinstance(parts, Fallback):
        return parts
    commands: list[Command] = []
    for words in parts:
        cmd = parse_command(words)
        if isinstance(cmd, Fallback):
            return cmd
        commands.append(cmd)
    if not commands:
        return Fallback("empty command")
    return NativePip(tuple(commands), dict(env), workdir or "/")


def parse_command(words: Sequence[Word]) -> Command | Fallback:
    """One simple command's words as a :class:`Command`, or why not."""
    assigned: dict[str, str] = {}
    words = list(words)
    while words and not words[0].glob and "=" in words[0].text:
        name, _, value = words[0].text.partition("=")
        if not _NAME_RE.fullmatch(name):
            break
        assigned[name] = value
        words.pop(0)
    if not words:
        return Fallback("a command with only variable assignments")
    exe = words[0].text
    name = Path(exe).name
    rest = words[1:]
    if words[0].glob:
        return Fallback(f"a glob as the command ({exe})")
    if name == "uv":
        sub = [w.text for w in rest[:2]]
        if sub[:2] == ["pip", "install"] or sub[:1] in (["sync"], ["venv"]):
            return UvCommand(exe, tuple(rest), assigned)
        return Fallback(f"uv {' '.join(sub)} is not an install uv does natively here")
    if name == "poetry":
        if rest[:1] and rest[0].text == "install":
            return PoetryCommand(exe, tuple(rest[1:]), assigned)
        what = rest[0].text if rest else ""
        return Fallback(f"poetry {what} is not poetry install".replace("  ", " "))
    if _PIP_RE.fullmatch(name):
        python = exe
    elif _PYTHON_RE.fullmatch(name):
        while rest and rest[0].text in ("-I", "-E", "-s", "-B", "-u", "-q"):
            rest.pop(0)
        module = [w.text for w in rest[:2]]
        if module == ["-m", "pip"]:
            python, rest = exe, rest[2:]
        elif module == ["-m", "venv"]:
            return VenvCommand(exe, tuple(rest[2:]), assigned)
        else:
            return Fallback(f"{exe} runs something else than pip")
    else:
        return Fallback(f"{exe!r} is not pip")
    if not rest or rest[0].text not in ("install", "wheel"):
        what = rest[0].text if rest else ""
        return Fallback(f"pip {what} is not pip install or pip wheel".replace("  ", " "))
    return PipCommand(python, tuple(rest[1:]), assigned, rest[0].text)


def is_pip(name: str) -> bool:
    """``pip``, ``pip3``, ``pip3.11``."""
    return bool(_PIP_RE.fullmatch(name))


_OPERATORS = ("&&", "||", ";;", ";", "|", "&", "(", ")", "<", ">")


class _Words:
    """The commands and the word being split."""

    def __init__(self) -> None:
        self.commands: list[list[Word]] = [[]]
        self.cur: list[str] = []
        self.in_word = False
        self.glob = False

    def end(self) -> None:
        """The current word is complete (if there is one)."""
        if self.in_word:
            self.commands[-1].append(Word("".join(self.cur), self.glob))
        self.cur, self.in_word, self.glob = [], False, False

    def add(self, text: str, glob: bool = False) -> None:
        """More of the current word (quoted text is a word even when empty)."""
        self.in_word = True
        self.cur.append(text)
        self.glob = self.glob or glob

    def fields(self, value: str) -> None:
        """An unquoted expansion: split on blanks, each field may be a glob."""
        pieces = value.split()
        if not pieces:
            return  # an empty unquoted expansion adds nothing
        if value[:1].isspace():
            self.end()
        for k, p in enumerate(pieces):
            if k:
                self.end()
            self.add(p, any(ch in p for ch in "*?["))
        if value[-1:].isspace():
            self.end()


def split_shell(text: str, env: Mapping[str, str]) -> list[list[Word]] | Fallback:
    """``sh -c TEXT`` as simple commands joined by ``&&`` or ``;``, their words expanded.

    Expansion follows POSIX for what it covers: ``$NAME``/``${NAME}`` (and
    ``${NAME:-x}``/``${NAME-x}``) outside single quotes, unset names empty,
    unquoted expansions split on blanks; a comment runs to the end of the line.
    """
    w = _Words()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\n":
            w.end()
            i += 1
        elif c == "#" and not w.in_word:
            while i < n and text[i] != "\n":
                i += 1
        elif (op := next((o for o in _OPERATORS if text.startswith(o, i)), None)) is not None:
            w.end()
            if op not in ("&&", ";"):
                return Fallback(f"shell operator {op!r} (only && and ; are understood)")
            if not w.commands[-1]:
                return Fallback(f"empty command before {op!r}")
            w.commands.append([])
            i += len(op)
        elif c == "\\":
            if text[i + 1 : i + 2] != "\n":  # a backslash-newline joins lines
                w.add(text[i + 1] if i + 1 < n else "\\")
            i += 2
        elif c == "'":
            j = text.find("'", i + 1)
            if j < 0:
                return Fallback("shell syntax: no closing quote")
            w.add(text[i + 1 : j])
            i = j + 1
        elif c in '"$':
            got = _double_quoted(text, i + 1, env) if c == '"' else _expand(text, i, env)
            if isinstance(got, Fallback):
                return got
            value, i = got
            w.add(value) if c == '"' else w.fields(value)
        elif c == "`":
            return Fallback("command substitution in the command")
        elif c == "~" and not w.cur:
            return Fallback("~ expansion in the command")
        elif c == "{" and "}" in text[i:] and "," in text[i : text.find("}", i)]:
            return Fallback("brace expansion in the command")
        else:
            w.add(c, c in "*?[")
            i += 1
    w.end()
    if not w.commands[-1]:
        if len(w.commands) == 1:
            return Fallback("empty command")
        w.commands.pop()  # a trailing ;
    return w.commands


def _double_quoted(text: str, i: int, env: Mapping[str, str]) -> tuple[str, int] | Fallback:
    """The text of a double-quoted string starting at ``text[i]``, and the index after it."""
    n = len(text)
    out: list[str] = []
    while True:
        if i >= n:
            return Fallback("shell syntax: no closing quote")
        d = text[i]
        if d == '"':
            return "".join(out), i + 1
        if d == "\\" and i + 1 < n and text[i + 1] in '$`"\\\n':
            if text[i + 1] != "\n":
                out.append(text[i + 1])
            i += 2
        elif d == "$":
            got = _expand(text, i, env)
            if isinstance(got, Fallback):
                return got
            value, i = got
            out.append(value)
        elif d == "`":
            return Fallback("command substitution in the command")
        else:
            out.append(d)
            i += 1


def _expand(text: str, i: int, env: Mapping[str, str]) -> tuple[str, int] | Fallback:
    """The value of the expansion at ``text[i] == '$'`` and the index after it."""
    n = len(text)
    if i + 1 >= n:
        return "$", i + 1
    c = text[i + 1]
    if c == "(":
        return Fallback("command substitution in the command")
    if c == "{":
        j = text.find("}", i + 2)
        if j < 0:
            return Fallback("shell syntax: no closing }")
        inner = text[i + 2 : j]
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)(.*))?", inner, re.S)
        if not m:
            return Fallback(f"shell expansion ${{{inner}}}")
        name, op, default = m.group(1), m.group(2), m.group(3) or ""
        if op is not None and ("$" in default or "`" in default):
            return Fallback(f"shell expansion ${{{inner}}}")
        value = env.get(name)
        if (op == ":-" and not value) or (op == "-" and value is None):
            value = default
        return value or "", j + 1
    m = _NAME_RE.match(text, i + 1)
    if m:
        return env.get(m.group(0), ""), m.end()
    return Fallback(f"shell expansion ${c}")


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


def image_path(path: str, workdir: str) -> str:
    """``path`` (relative to ``workdir``) as a normalised absolute image path."""
    return posixpath.normpath(path if path.startswith("/") else posixpath.join(workdir, path))
