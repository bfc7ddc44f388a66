"""RUN lines native apt understands: ``apt-get update``, ``apt-get install -y [...] PKG...``,
``apt-get clean`` and ``rm -rf /var/lib/apt/lists/*``, chained with ``&&`` or ``;``.

The line is split as ``/bin/sh`` splits it (:func:`nativepip.command.split_shell`);
anything else in it (another command, an option apt-get would read
differently, a version or release pin) is a :class:`Fallback` with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from manyarch.imagebuild.nativepip.command import Fallback, Word, run_words

#: Options that change nothing the host's apt would do differently.
_QUIET = frozenset({"-q", "-qq", "--quiet", "-y", "--yes", "--assume-yes", "-qy", "-yq", "-yqq"})
_YES = frozenset({"-y", "--yes", "--assume-yes", "-qy", "-yq", "-yqq"})
_FLAGS = frozenset({"--no-install-recommends", "--no-install-suggests"})
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
#: ``NAME=value`` prefixes that do not change what apt does here.
_ASSIGNMENTS = {"DEBIAN_FRONTEND": "noninteractive", "DEBCONF_NONINTERACTIVE_SEEN": "true"}


@dataclass(frozen=True)
class AptCommand:
    """One understood command: ``update``, ``install``, ``clean`` or ``rm-lists``."""

    action: str
    packages: tuple[str, ...] = ()
    no_recommends: bool = False
    no_suggests: bool = False


@dataclass(frozen=True)
class NativeApt:
    """A RUN line the host's apt can do, in order."""

    commands: tuple[AptCommand, ...]

    @property
    def packages(self) -> tuple[str, ...]:
        """Every package the line installs."""
        return tuple(p for c in self.commands for p in c.packages)


def plan_apt(argv: Sequence[str], shell_form: bool, env: Mapping[str, str]) -> NativeApt | Fallback:
    """Decide whether a RUN (its argv as the executor runs it) is an apt line done natively."""
    parts = run_words(argv, shell_form, env)
    if isinstance(parts, Fallback):
        return parts
    commands: list[AptCommand] = []
    for words in parts:
        cmd = parse_apt(words)
        if isinstance(cmd, Fallback):
            return cmd
        commands.append(cmd)
    if not any(c.action == "install" for c in commands):
        return Fallback("no apt-get install in the line")
    return NativeApt(tuple(commands))


def parse_apt(words: Sequence[Word]) -> AptCommand | Fallback:
    """One simple command's words as an :class:`AptCommand`, or why not."""
    words = list(words)
    while words and not words[0].glob and "=" in words[0].text:
        name, _, value = words[0].text.partition("=")
        if _ASSIGNMENTS.get(name) != value:
            return Fallback(f"{name}={value} before the command")
        words.pop(0)
    if not words:
        return Fallback("a command with only variable assignments")
    text = [w.text for w in words]
    if text[:2] == ["rm", "-rf"] or text[:2] == ["rm", "-fr"]:
        if len(words) == 3 and text[2] == "/var/lib/apt/lists/*" and words[2].glob:
            return AptCommand("rm-lists")
        return Fallback(f"rm {' '.join(text[1:])} is not rm -rf /var/lib/apt/lists/*")
    if Path(text[0]).name != "apt-get" or any(w.glob for w in words):
        return Fallback(f"{text[0]!r} is not apt-get")
    action = ""
    packages: list[str] = []
    flags: set[str] = set()
    yes = False
    for word in text[1:]:
        if word.startswith("-"):
            if word in _QUIET:
                yes = yes or word in _YES
            elif word in _FLAGS:
                flags.add(word)
            else:
                return Fallback(f"apt-get option {word}")
        elif not action:
            action = word
        elif action == "install" and _PACKAGE.fullmatch(word):
            packages.append(word)
        else:
            return Fallback(f"apt-get {action} {word}")
    if action in ("update", "clean"):
        if flags or packages:
            return Fallback(f"apt-get {action} with {' '.join(sorted(flags))}")
        return AptCommand(action)
    if action != "install":
        return Fallback(f"apt-get {action or '(no command)'}")
    if not packages:
        return Fallback("apt-get install of no package")
    if not yes:
        return Fallback("apt-get install without -y (it would ask)")
    return AptCommand(
        "install",
        tuple(packages),
        "--no-install-recommends" in flags,
        "--no-install-suggests" in flags,
    )
