"""``.dockerignore``: read patterns and match paths as moby/patternmatcher does.

Reading follows ``patternmatcher/ignorefile.ReadAll`` (comments, a leading
``/`` dropped, paths cleaned, ``!`` exceptions); matching follows
``PatternMatcher.MatchesOrParentMatches`` (a path is excluded when it or one
of its parent directories matches, later patterns overriding earlier ones).

As in BuildKit, the patterns apply to the build context only: the Dockerfile
and ``.dockerignore`` always reach the frontend (the caller reads them
directly), but a ``COPY`` of an excluded file (even the Dockerfile) finds
nothing. Docker's classic builder re-included them; BuildKit does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from manyarch.dockerfile.values import go_clean
from manyarch.errors import DockerfileError

_ESCAPED = frozenset(".+()|{}$")


@dataclass(frozen=True)
class _Pattern:
    text: str
    exclusion: bool
    kind: str  # exact | prefix | suffix | regexp
    regex: re.Pattern[str] | None

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regex is not None
        return self.regex.match(path) is not None


def _class_char(p: str, i: int) -> int:
    """Index after one (maybe escaped) character of a ``[...]`` class; ValueError if bad."""
    if i >= len(p) or p[i] in "-]":
        raise ValueError("bad character class")
    if p[i] == "\\":
        i += 1
        if i >= len(p):
            raise ValueError("trailing escape")
    i += 1
    if i >= len(p):
        raise ValueError("unclosed character class")
    return i


def check_pattern(pattern: str) -> None:
    """Raise ValueError where Go's ``filepath.Match`` would return ``ErrBadPattern``."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "\\":
            if i >= n:
                raise ValueError("trailing escape")
            i += 1
        elif ch == "[":
            if i < n and pattern[i] == "^":
                i += 1
            ranges = 0
            while True:
                if i < n and pattern[i] == "]" and ranges:
                    i += 1
                    break
                i = _class_char(pattern, i)
                if pattern[i] == "-":
                    i = _class_char(pattern, i + 1)
                ranges += 1


def _compile(pattern: str, exclusion: bool) -> _Pattern:
    """patternmatcher's ``Pattern.compile`` for ``/`` separators."""
    reg = "^"
    kind = "exact"
    i = 0
    n = len(pattern)
    first = True
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                if i >= n:
                    # "**" at the end matches everything below, like .gitignore.
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        reg += ".*"
                        kind = "regexp"
                else:
                    reg += "(.*/)?"
                    kind = "regexp"
                if first:
                    kind = "suffix"
            else:
                reg += "[^/]*"
                kind = "regexp"
        elif ch == "?":
            reg += "[^/]"
            kind = "regexp"
        elif ch in _ESCAPED:
            reg += "\\" + ch
        elif ch == "\\":
            if i < n:
                reg += re.escape(pattern[i])
                i += 1
                kind = "regexp"
            else:
                reg += "\\\\"
        elif ch in "[]":
            reg += ch
            kind = "regexp"
        else:
            reg += ch
        first = False
    regex: re.Pattern[str] | None = None
    if kind == "regexp":
        regex = re.compile(reg + "$", re.DOTALL)
    return _Pattern(pattern, exclusion, kind, regex)


class DockerIgnore:
    """The patterns of a ``.dockerignore`` file; :meth:`matches` says what is left out."""

    def __init__(self, patterns: list[str] | tuple[str, ...] = (), *,
                 file: str = ".dockerignore") -> None:  # fmt: skip
        self.patterns: tuple[str, ...] = tuple(patterns)
        self.file = file
        self._compiled: list[_Pattern] = []
        for p in self.patterns:
            p = p.strip()
            if not p:
                continue
            p = go_clean(p)
            exclusion = p.startswith("!")
            if exclusion:
                if len(p) == 1:
                    raise DockerfileError('illegal exclusion pattern: "!"', file=file, line=None)
                p = p[1:]
            try:
                check_pattern(p)
                self._compiled.append(_compile(p, exclusion))
            except (ValueError, re.error) as e:
                raise DockerfileError(f"bad pattern {p!r}: {e}", file=file, line=None) from e

    @classmethod
    def parse(cls, text: str, *, file: str = ".dockerignore") -> DockerIgnore:
        """Read the text of a ``.dockerignore`` file (``ignorefile.ReadAll``)."""
        patterns: list[str] = []
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = raw.removeprefix("\ufeff") if lineno == 1 else raw
            if line.startswith("#"):
                continue
            line = line.strip()
            if not line:
                continue
            invert = line.startswith("!")
            if invert:
                line = line[1:].strip()
            if line:
                line = go_clean(line)
                if len(line) > 1 and line.startswith("/"):
                    line = line[1:]
            if invert:
                if not line:
                    raise DockerfileError('illegal exclusion pattern: "!"', file=file,
                                          line=lineno)  # fmt: skip
                line = "!" + line
            try:
                cls([line])
            except DockerfileError as e:
                raise DockerfileError(e.message.split(": ", 1)[-1], file=file,
                                      line=lineno) from e  # fmt: skip
            patterns.append(line)
        return cls(patterns, file=file)

    @property
    def has_exclusions(self) -> bool:
        """Whether any pattern is a ``!`` exception (a walker must then enter excluded dirs)."""
        return any(p.exclusion for p in self._compiled)

    def matches(self, path: str) -> bool:
        """Whether ``path`` (slash-separated, relative to the context) is left out."""
        path = go_clean(path.lstrip("/") or ".")
        if path == ".":
            return False
        parents = path.split("/")[:-1]
        matched = False
        for pat in self._compiled:
            if pat.exclusion != matched:
                continue
            hit = pat.match(path)
            if not hit:
                for i in range(len(parents)):
                    if pat.match("/".join(parents[: i + 1])):
                        hit = True
                        break
            if hit:
                matched = not pat.exclusion
        return matched

    def __bool__(self) -> bool:
        return bool(self._compiled)
