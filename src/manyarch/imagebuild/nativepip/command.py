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

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from manyarch.errors import ManyarchError

_PYTHON_RE = re.compile(r"python(3(\.\d+)?)?$")
_PIP_RE = re.compile(r"pip(3(\.\d+)?)?$")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class NativePipUnavailable(ManyarchError):
    """The native path cannot do this RUN exactly; the builder emulates it instead."""


@dataclass(frozen=True)
class Word:
    """One shell word after quote removal and expansion; ``glob`` when it has unquoted ``*?[``."""

    text: str
    glob: bool = False


@dataclass(frozen=True)
class PipCommand:
    """``pip install ARGS`` (or ``python -m pip install ARGS``): run by ``python``."""

    #: the command that runs pip, as written: ``pip3``, ``python3``, ``/venv/bin/pip``
    python: str
    args: tuple[Word, ...]
    #: ``NAME=value`` words before the command
    env: Mapping[str, str] = field(default_factory=dict)


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


Command = PipCommand | VenvCommand | UvCommand


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


def plan_run(
    argv: Sequence[str], shell_form: bool, env: Mapping[str, str], workdir: str
) -> NativePip | Fallback:
    """Decide whether a RUN (its argv as the builder runs it) can run natively."""
    if shell_form:
        if len(argv) != 3 or argv[1] != "-c" or Path(argv[0]).name not in ("sh", "bash", "dash"):
            return Fallback("not a /bin/sh -c command")
        parts = split_shell(argv[2], env)
        if isinstance(parts, Fallback):
            return parts
    else:
        parts = [[Word(a) for a in argv]]
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
    if not rest or rest[0].text != "install":
        what = rest[0].text if rest else ""
        return Fallback(f"pip {what} is not pip install".replace("  ", " "))
    return PipCommand(python, tuple(rest[1:]), assigned)


def is_pip(name: str) -> bool:
    """``pip``, ``pip3``, ``pip3.11``."""
    return bool(_PIP_RE.fullmatch(name))


_OPERATORS = ("&&", "||", ";;", ";", "|", "&", "(", ")", "<", ">")


def split_shell(text: str, env: Mapping[str, str]) -> list[list[Word]] | Fallback:
    """``sh -c TEXT`` as simple commands joined by ``&&`` or ``;``, their words expanded.

    Expansion follows POSIX for what it covers: ``$NAME``/``${NAME}`` (and
    ``${NAME:-x}``/``${NAME-x}``) outside single quotes, unset names empty,
    unquoted expansions split on blanks; a comment runs to the end of the line.
    """
    commands: list[list[Word]] = [[]]
    i, n = 0, len(text)
    cur: list[str] = []
    in_word = False
    glob = False

    def end_word() -> None:
        nonlocal cur, in_word, glob
        if in_word:
            commands[-1].append(Word("".join(cur), glob))
        cur, in_word, glob = [], False, False

    while i < n:
        c = text[i]
        if c in " \t\n":
            end_word()
            i += 1
            continue
        if c == "#" and not in_word:
            while i < n and text[i] != "\n":
                i += 1
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op is not None:
            end_word()
            if op not in ("&&", ";"):
                return Fallback(f"shell operator {op!r} (only && and ; are understood)")
            if not commands[-1]:
                return Fallback(f"empty command before {op!r}")
            commands.append([])
            i += len(op)
            continue
        if c == "\\" and i + 1 < n and text[i + 1] == "\n":
            i += 2
            continue
        if c != "$":
            in_word = True
        if c == "\\":
            cur.append(text[i + 1] if i + 1 < n else "\\")
            i += 2
        elif c == "'":
            j = text.find("'", i + 1)
            if j < 0:
                return Fallback("shell syntax: no closing quote")
            cur.append(text[i + 1 : j])
            i = j + 1
        elif c == '"':
            i += 1
            while True:
                if i >= n:
                    return Fallback("shell syntax: no closing quote")
                d = text[i]
                if d == '"':
                    i += 1
                    break
                if d == "\\" and i + 1 < n and text[i + 1] in '$`"\\\n':
                    if text[i + 1] != "\n":
                        cur.append(text[i + 1])
                    i += 2
                elif d == "$":
                    got = _expand(text, i, env)
                    if isinstance(got, Fallback):
                        return got
                    value, i = got
                    cur.append(value)
                elif d == "`":
                    return Fallback("command substitution in the command")
                else:
                    cur.append(d)
                    i += 1
        elif c == "$":
            got = _expand(text, i, env)
            if isinstance(got, Fallback):
                return got
            value, i = got
            # an unquoted expansion is split into fields (and may be globbed)
            pieces = value.split()
            if not pieces:
                continue  # an empty unquoted expansion adds nothing
            if value[:1].isspace():
                end_word()
            in_word = True
            cur.append(pieces[0])
            glob = glob or any(ch in pieces[0] for ch in "*?[")
            for p in pieces[1:]:
                end_word()
                in_word = True
                cur.append(p)
                glob = any(ch in p for ch in "*?[")
            if value[-1:].isspace():
                end_word()
        elif c == "`":
            return Fallback("command substitution in the command")
        elif c in "*?[":
            glob = True
            cur.append(c)
            i += 1
        elif c == "~" and not cur:
            return Fallback("~ expansion in the command")
        elif c == "{" and "}" in text[i:] and "," in text[i : text.find("}", i)]:
            return Fallback("brace expansion in the command")
        else:
            cur.append(c)
            i += 1
    end_word()
    if not commands[-1]:
        if len(commands) == 1:
            return Fallback("empty command")
        commands.pop()  # a trailing ;
    return commands


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
