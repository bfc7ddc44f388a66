"""Parse a Dockerfile into instructions grouped by stage (syntax only, no expansion).

The official Go parser does the tokenising (the ``dockerfile`` package wraps
``moby/buildkit/frontend/dockerfile/parser``); this module adds what BuildKit's
``instructions`` package checks on top: known instructions, their flags, their
argument counts, parser directives, heredoc markers. Every error is a
:class:`~manyarch.errors.DockerfileError` naming the file and the line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import dockerfile as _goparser

from manyarch.dockerfile.lex import ShellLex
from manyarch.errors import DockerfileError

INSTRUCTIONS = frozenset(
    {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
     "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
     "WORKDIR"}
)  # fmt: skip


class _Kind(Enum):
    STRING = "string"
    BOOL = "bool"
    LIST = "list"  # may be repeated


@dataclass(frozen=True)
class _Flag:
    kind: _Kind
    unsupported: str | None = None  # the hint when manyarch cannot honour the flag


_FLAGS: dict[str, dict[str, _Flag]] = {
    "FROM": {"platform": _Flag(_Kind.STRING)},
    "COPY": {
        "from": _Flag(_Kind.STRING),
        "chown": _Flag(_Kind.STRING),
        "chmod": _Flag(_Kind.STRING),
        "link": _Flag(_Kind.BOOL),
        "parents": _Flag(_Kind.BOOL),
        "exclude": _Flag(_Kind.LIST),
    },
    "ADD": {
        "chown": _Flag(_Kind.STRING),
        "chmod": _Flag(_Kind.STRING),
        "link": _Flag(_Kind.BOOL),
        "keep-git-dir": _Flag(_Kind.BOOL),
        "checksum": _Flag(_Kind.STRING),
        "unpack": _Flag(_Kind.BOOL),
        "exclude": _Flag(_Kind.LIST),
    },
    "RUN": {
        "network": _Flag(_Kind.STRING),
        "mount": _Flag(_Kind.LIST),
        "security": _Flag(_Kind.STRING),
        "device": _Flag(_Kind.LIST, "RUN --device needs BuildKit's CDI devices"),
    },
    "HEALTHCHECK": {
        "interval": _Flag(_Kind.STRING),
        "timeout": _Flag(_Kind.STRING),
        "start-period": _Flag(_Kind.STRING),
        "start-interval": _Flag(_Kind.STRING),
        "retries": _Flag(_Kind.STRING),
    },
}

#: Longest instruction (its lines joined), in bytes. Linux runs no command with an
#: argument longer than MAX_ARG_STRLEN (32 pages: 128 KiB), and a shell-form RUN
#: is one argument of ``sh -c``, an ENV one string of the environment: nothing
#: longer could run. The Go parser also takes time quadratic in an instruction's
#: continuation lines (a 10 MB one: minutes), so this is checked before it runs.
MAX_INSTRUCTION = 128 * 1024

_VALID_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"^(\d*)<<(-?)\s*([^<]*)$")
#: A heredoc's marker anywhere in an instruction: ``<<EOF``, ``<<-'END'``, ``<<"X"``.
_HEREDOC_MARK = re.compile(r"<<(-?)\s*([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)


@dataclass(frozen=True)
class Heredoc:
    """An inline document: ``<<[-]NAME`` then lines up to ``NAME``."""

    name: str
    content: str
    chomp: bool = False  # <<- : leading tabs are stripped
    expand: bool = True  # an unquoted name: the shell expands variables in the content

    @property
    def data(self) -> str:
        """The content as the command receives it (tabs stripped for ``<<-``)."""
        return _LEADING_TABS.sub("", self.content) if self.chomp else self.content


@dataclass(frozen=True)
class Instruction:
    """One instruction as written: name, flags, arguments, location."""

    cmd: str
    args: tuple[str, ...]
    flags: tuple[tuple[str, str], ...]
    json: bool
    text: str
    line: int
    end_line: int
    heredocs: tuple[Heredoc, ...] = ()

    def flag(self, name: str) -> str | None:
        """The value of a single flag (``"true"``/``"false"`` for booleans), or None."""
        for k, v in self.flags:
            if k == name:
                return v
        return None


@dataclass(frozen=True)
class StageSource:
    """A stage as written: its FROM line (unexpanded) and its instructions."""

    index: int
    name: str | None
    base: str
    platform: str | None
    line: int
    text: str
    instructions: tuple[Instruction, ...]


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile: directives, global ARGs and stages, nothing expanded."""

    file: str
    escape: str
    syntax: str | None
    global_args: tuple[Instruction, ...]
    stages: tuple[StageSource, ...]

    def stage_named(self, name: str) -> StageSource | None:
        """The stage called ``name`` (case-insensitive, as BuildKit), or None."""
        wanted = name.lower()
        for st in self.stages:
            if st.name == wanted:
                return st
        return None


def _directives(text: str, file: str) -> dict[str, tuple[str, int]]:
    """Parser directives at the top of the file, as BuildKit reads them."""
    found: dict[str, tuple[str, int]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _DIRECTIVE.match(line)
        if not m:
            break
        key = m.group(1).lower()
        if key in found:
            raise DockerfileError(f"only one {key} parser directive can be used", file=file,
                                  line=lineno)  # fmt: skip
        found[key] = (m.group(2), lineno)
    return found


def _check_lengths(text: str, escape: str, file: str) -> None:
    """Refuse an instruction over :data:`MAX_INSTRUCTION`: its continuation lines joined,
    and the bodies of its heredocs (RUN, COPY, ADD), which the Go parser reads as slowly."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        start, size, head = i + 1, 0, ""
        while i < len(lines):
            size = _grow(size, lines[i], start, file)
            head += lines[i]
            i += 1
            if not lines[i - 1].rstrip().endswith(escape):
                break
        if "<<" not in head or head.upper().split(None, 1)[:1] not in (["RUN"], ["COPY"], ["ADD"]):
            continue
        for strip, _, word in _HEREDOC_MARK.findall(head):
            while i < len(lines):
                size = _grow(size, lines[i], start, file)
                i += 1
                if (lines[i - 1].lstrip("\t") if strip else lines[i - 1]) == word:
                    break


def _grow(size: int, line: str, start: int, file: str) -> int:
    size += len(line.encode("utf-8", "surrogateescape")) + 1
    if size > MAX_INSTRUCTION:
        raise DockerfileError(
            f"instruction longer than {MAX_INSTRUCTION // 1024} KiB",
            file=file,
            line=start,
            hint="Linux runs no command with a longer argument: "
            "put long scripts or data in files of the context and COPY them",
        )
    return size


def _error_line(text: str, message: str) -> int | None:
    """The line where the Go parser's error starts: it does not report one itself."""
    lines = text.splitlines(keepends=True)
    for n in range(1, len(lines) + 1):
        try:
            _goparser.parse_string("".join(lines[:n]))
        except _goparser.GoParseError as e:
            if str(e) == message:
                return n
    return None


def _parse_flags(cmd: str, raw: Sequence[str], file: str, line: int) -> tuple[tuple[str, str], ...]:
    spec = _FLAGS.get(cmd, {})
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for arg in raw:
        if not arg.startswith("--"):
            raise DockerfileError(f"{cmd} flag {arg!r} must start with --", file=file, line=line)
        name, eq, value = arg[2:].partition("=")
        if not name:
            raise DockerfileError(f"{cmd} has a flag without a name: {arg!r}", file=file,
                                  line=line)  # fmt: skip
        flag = spec.get(name)
        if flag is None:
            known = ", ".join(f"--{k}" for k in spec) or "none"
            raise DockerfileError(
                f"unknown flag --{name} for {cmd}",
                file=file,
                line=line,
                hint=f"flags {cmd} accepts: {known}",
            )
        if flag.unsupported is not None:
            raise DockerfileError(
                f"{cmd} --{name} is not supported by manyarch", file=file, line=line,
                hint=flag.unsupported,
            )  # fmt: skip
        if name in seen and flag.kind is not _Kind.LIST:
            raise DockerfileError(f"duplicate flag specified: --{name}", file=file, line=line)
        seen.add(name)
        if flag.kind is _Kind.BOOL:
            if not eq:
                value = "true"
            elif value.lower() in ("true", "false"):
                value = value.lower()
            else:
                raise DockerfileError(
                    f"expecting boolean value for flag --{name}, not: {value}", file=file,
                    line=line,
                )  # fmt: skip
        elif not eq:
            raise DockerfileError(f"missing a value on flag --{name}", file=file, line=line)
        out.append((name, value))
    return tuple(out)


def _heredoc_marker(word: str) -> tuple[str, bool, bool] | None:
    """``(name, chomp, expand)`` when ``word`` is exactly one heredoc marker."""
    m = _HEREDOC.match(word)
    if not m or not m.group(3):
        return None
    rest = m.group(3)
    try:
        words = ShellLex(skip_unset_env=True).process_words(rest, {})
        raw = ShellLex(skip_unset_env=True, raw_quotes=True).process_words(rest, {})
    except Exception:
        return None
    if len(words) != 1 or len(raw) != 1:
        return None
    quotes = words[0].count("'") + words[0].count('"')
    raw_quotes = raw[0].count("'") + raw[0].count('"')
    return words[0], m.group(2) == "-", quotes == raw_quotes


def is_heredoc_marker(word: str) -> bool:
    """Whether ``word`` is a heredoc marker such as ``<<EOF`` or ``<<-"EOF"``."""
    return _heredoc_marker(word) is not None


def _heredocs(cmd: Any) -> tuple[Heredoc, ...]:
    # The Go wrapper reports names and content; chomp and expand come from the markers.
    markers: dict[str, tuple[bool, bool]] = {}
    for word in re.findall(r"\d*<<-?\s*(?:\"[^\"]*\"|'[^']*'|[^\s<]+)", " ".join(cmd.value)):
        parsed = _heredoc_marker(word)
        if parsed:
            markers[parsed[0]] = (parsed[1], parsed[2])
    out = []
    for h in cmd.heredocs:
        chomp, expand = markers.get(h.name, (False, True))
        out.append(Heredoc(h.name, h.content, chomp, expand))
    return tuple(out)


def _check_args(ins: Instruction, file: str) -> None:
    cmd, args, line = ins.cmd, ins.args, ins.line

    def fail(message: str, hint: str | None = None) -> None:
        raise DockerfileError(message, file=file, line=line, hint=hint)

    if cmd in ("ENV", "LABEL") and not args:
        fail(f"{cmd} requires at least one argument")
    if cmd in ("ENV", "LABEL") and any(not k for k in args[::2]):
        fail(f"{cmd} names can not be blank")
    if cmd in ("MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL") and len(args) != 1:
        fail(f"{cmd} requires exactly one argument")
    if cmd in ("ADD", "COPY") and len(args) < 2:
        fail(
            f"{cmd} requires at least two arguments, but only one was provided. "
            "Destination could not be determined"
        )
    if cmd in ("EXPOSE", "VOLUME", "ARG", "HEALTHCHECK") and not args:
        fail(f"{cmd} requires at least one argument")
    if cmd == "VOLUME" and any(not a.strip() for a in args):
        fail("VOLUME specified can not be an empty string")
    if cmd == "ARG" and any(a.startswith("=") for a in args):
        fail("ARG names can not be blank")
    if cmd == "SHELL":
        if not ins.json:
            fail(
                "SHELL requires the arguments to be in JSON form",
                'write it like SHELL ["/bin/bash", "-c"]',
            )
        if not args:
            fail("SHELL requires at least one argument")
    if cmd == "RUN" and not args:
        fail("RUN requires a command")
    if ins.heredocs and cmd not in ("RUN", "COPY", "ADD"):
        fail(f"{cmd} does not accept a heredoc")


def _check_from(ins: Instruction, file: str) -> str | None:
    args = ins.args
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _VALID_STAGE_NAME.match(name):
            raise DockerfileError(
                f"invalid name for build stage: {args[2]!r}, name can't start with a number "
                "or contain symbols",
                file=file,
                line=ins.line,
            )
        return name
    if len(args) != 1:
        raise DockerfileError(
            "FROM requires either one or three arguments", file=file, line=ins.line,
            hint="write FROM <image> or FROM <image> AS <name>",
        )  # fmt: skip
    return None


def parse(text: str, *, file: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile's text (``file`` names it in errors); nothing is expanded."""
    # Long on purpose: one pass over the instructions that checks their order as it
    # goes (ARG before FROM, stage names, where a stage ends); cut, the checks would spread.
    if not text.strip():
        raise DockerfileError("the Dockerfile is empty", file=file, line=None,
                              hint="a Dockerfile needs at least a FROM instruction")  # fmt: skip
    directives = _directives(text, file)
    escape = "\\"
    if "escape" in directives:
        escape, eline = directives["escape"]
        if escape not in ("\\", "`"):
            raise DockerfileError(
                f"invalid escape token {escape!r} does not match ` or \\", file=file, line=eline
            )
    syntax = directives.get("syntax", (None, 0))[0]
    if syntax is not None:
        _check_syntax(syntax, file, directives["syntax"][1])

    _check_lengths(text, escape, file)
    try:
        commands = _goparser.parse_string(text)
    except _goparser.GoParseError as e:
        message = str(e)
        if message == "file with no instructions":
            raise DockerfileError("the Dockerfile has no instructions", file=file,
                                  line=None) from e  # fmt: skip
        raise DockerfileError(message, file=file, line=_error_line(text, message)) from e

    global_args: list[Instruction] = []
    stages: list[StageSource] = []
    current: dict[str, Any] | None = None
    pending: list[Instruction] = []
    names: dict[str, int] = {}

    def close() -> None:
        if current is not None:
            stages.append(StageSource(instructions=tuple(pending), **current))

    for c in commands:
        cmd = c.cmd.upper()
        line = c.start_line
        if cmd not in INSTRUCTIONS:
            raise DockerfileError(
                f"unknown instruction: {c.cmd}", file=file, line=line,
                hint="instructions are " + ", ".join(sorted(INSTRUCTIONS)),
            )  # fmt: skip
        if cmd == "ONBUILD":
            if current is None:
                raise DockerfileError("ONBUILD comes before the first FROM", file=file, line=line)
            pending.append(onbuild(c, file))
            continue
        ins = Instruction(
            cmd=cmd,
            args=tuple(c.value),
            flags=_parse_flags(cmd, c.flags, file, line),
            json=bool(c.json),
            text=c.original.strip(),
            line=line,
            end_line=c.end_line,
            heredocs=_heredocs(c),
        )
        _check_args(ins, file)
        if cmd == "FROM":
            name = _check_from(ins, file)
            if name is not None:
                if name in names:
                    raise DockerfileError(
                        f"duplicate stage name {name!r} (first used at line {names[name]})",
                        file=file,
                        line=line,
                    )
                names[name] = line
            close()
            current = {
                "index": len(stages),
                "name": name,
                "base": ins.args[0],
                "platform": ins.flag("platform"),
                "line": line,
                "text": ins.text,
            }
            pending = []
        elif current is None:
            if cmd != "ARG":
                raise DockerfileError(
                    f"{cmd} comes before the first FROM", file=file, line=line,
                    hint="only ARG may come before FROM",
                )  # fmt: skip
            global_args.append(ins)
        else:
            pending.append(ins)
    close()
    if not stages:
        raise DockerfileError(
            "the Dockerfile has no FROM instruction", file=file, line=None,
            hint="start the build stage with FROM <image>",
        )  # fmt: skip
    return Dockerfile(file, escape, syntax, tuple(global_args), tuple(stages))


def onbuild(c: Any, file: str) -> Instruction:
    """``ONBUILD <instruction>``: the trigger as written, checked as BuildKit checks it."""
    sub = (c.sub_cmd or "").upper()
    if sub in ("ONBUILD", "FROM", "MAINTAINER"):
        what = "Chaining ONBUILD via `ONBUILD ONBUILD`" if sub == "ONBUILD" else f"{sub}"
        raise DockerfileError(f"{what} isn't allowed as an ONBUILD trigger", file=file,
                              line=c.start_line)  # fmt: skip
    parts = c.original.strip().split(None, 1)
    trigger = parts[1].strip() if len(parts) > 1 else ""
    if not trigger:
        raise DockerfileError("ONBUILD requires at least one argument", file=file,
                              line=c.start_line)  # fmt: skip
    try:  # the trigger's own errors, now, at the ONBUILD's line
        parse(f"FROM scratch\n{trigger}\n", file=file)
    except DockerfileError as e:
        message = e.message.split(": ", 1)[-1]
        raise DockerfileError(f"ONBUILD {message}", file=file, line=c.start_line) from e
    return Instruction("ONBUILD", (trigger,), (), False, c.original.strip(), c.start_line,
                       c.end_line)  # fmt: skip


def _check_syntax(syntax: str, file: str, line: int) -> None:
    # Any docker/dockerfile frontend is read as this one; another frontend is not.
    name = syntax.split("@", 1)[0].split(":", 1)[0]
    for prefix in ("docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if name not in ("docker/dockerfile", "docker/dockerfile-upstream"):
        raise DockerfileError(
            f"syntax directive names the frontend {syntax!r}, which manyarch cannot run",
            file=file,
            line=line,
            hint="manyarch reads Dockerfiles itself; use # syntax=docker/dockerfile:1",
        )
