"""Variable expansion and word splitting, a port of BuildKit's Dockerfile lexer.

This follows ``moby/buildkit`` ``frontend/dockerfile/shell/lex.go`` closely (the
same scanner structure, the same quirks) so that ``$VAR``, ``${VAR}``,
``${VAR:-default}``, ``${VAR-default}``, ``${VAR:+x}``, ``${VAR+x}``,
``${VAR?msg}``, ``${VAR#pat}``, ``${VAR%pat}``, ``${VAR/pat/repl}``, quotes and
the escape character expand exactly as ``docker buildx build`` expands them in
ADD, ARG, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME and WORKDIR.
RUN, CMD and ENTRYPOINT are not expanded here: the shell does that at run time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from manyarch.errors import InvalidInput

_EOF = ""

# Go's unicode.IsSpace for Latin-1, plus the Unicode White_Space property beyond.
_LATIN1_SPACE = frozenset("\t\n\v\f\r \x85\xa0")


def _isspace(ch: str) -> bool:
    return ch in _LATIN1_SPACE or (ord(ch) > 0xFF and ch.isspace())


#: Runs of what :func:`_isspace` takes for a space (Python's White_Space beyond Latin-1).
_SPACES = re.compile("[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")


class ShellLexError(InvalidInput):
    """A word does not expand: bad ``${}`` syntax, an unmatched quote, a ``${VAR?}``."""


@dataclass
class WordResult:
    """What :meth:`ShellLex.process` found: the word, its split words, the names used."""

    result: str
    words: list[str]
    matched: set[str] = field(default_factory=set)
    unmatched: set[str] = field(default_factory=set)


class _Words:
    """BuildKit's ``wordsStruct``; the word is kept as parts (one string grown a
    character at a time costs the square of its length: an expanded value of 480 KB
    took 6 s) and expanded text is taken a run of spaces or non-spaces at a time."""

    def __init__(self) -> None:
        self.parts: list[str] = []  # the word being built
        self.words: list[str] = []
        self.in_word = False

    def _end_word(self) -> None:
        # a space after a word: a non-empty word ends (an empty one stays open)
        if self.in_word and any(self.parts):
            self.words.append("".join(self.parts))
            self.parts = []
            self.in_word = False

    def add_char(self, ch: str) -> None:
        if _isspace(ch):
            self._end_word()
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.parts.append(ch)
        self.in_word = True

    def add_string(self, text: str) -> None:
        # the same as add_char for every character: a run of spaces ends the word
        # once, a run of other characters is added as it is
        pos = 0
        for m in _SPACES.finditer(text):
            if m.start() > pos:
                self.add_raw_string(text[pos : m.start()])
            self._end_word()
            pos = m.end()
        if pos < len(text):
            self.add_raw_string(text[pos:])

    def add_raw_string(self, text: str) -> None:
        self.parts.append(text)
        self.in_word = True

    def get_words(self) -> list[str]:
        if any(self.parts):
            self.words.append("".join(self.parts))
            self.parts = []
            self.in_word = False
        return self.words


@dataclass(frozen=True)
class ShellLex:
    """BuildKit's ``shell.Lex``: expands variables and splits words.

    ``raw_quotes`` keeps quote characters, ``raw_escapes`` keeps escape
    characters, ``skip_process_quotes`` treats quotes as plain characters and
    ``skip_unset_env`` leaves references to unset variables as written.
    """

    escape: str = "\\"
    raw_quotes: bool = False
    raw_escapes: bool = False
    skip_process_quotes: bool = False
    skip_unset_env: bool = False

    def process(self, word: str, env: Mapping[str, str]) -> WordResult:
        """Expand ``word`` with ``env``; raise :class:`ShellLexError` on bad syntax."""
        sw = _ShellWord(self, word, env)
        try:
            result, words = sw.process_stop_on(_EOF, self.raw_escapes)
        except ShellLexError as e:
            raise ShellLexError(f"failed to process {_go_quote(word)}: {e.message}") from e
        return WordResult(result, words, sw.matches, sw.nonmatches)

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """The expanded word (``ProcessWord``)."""
        return self.process(word, env).result

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """The expanded word split on unquoted white space (``ProcessWords``)."""
        return self.process(word, env).words


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _ShellWord:
    def __init__(self, lex: ShellLex, word: str, env: Mapping[str, str]) -> None:
        self.lex = lex
        self.text = word
        self.pos = 0
        self.env = env
        self.raw_escapes = lex.raw_escapes
        self.matches: set[str] = set()
        self.nonmatches: set[str] = set()

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def next(self) -> str:
        if self.pos >= len(self.text):
            return _EOF
        ch = self.text[self.pos]
        self.pos += 1
        return ch

    def process_stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            return self._process_stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _process_stop_on(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        escape = self.lex.escape
        quotes = not self.lex.skip_process_quotes
        while self.peek() != _EOF:
            ch = self.peek()
            if stop != _EOF and ch == stop:
                self.next()
                return "".join(result), words.get_words()
            if ch == "$" or (quotes and ch in "'\""):
                if ch == "$":
                    tmp = self.process_dollar()
                    words.add_string(tmp)
                else:
                    tmp = self.process_single_quote() if ch == "'" else self.process_double_quote()
                    words.add_raw_string(tmp)
                result.append(tmp)
                continue
            ch = self.next()
            if ch == escape:
                if self.raw_escapes:
                    words.add_raw_char(ch)
                    result.append(ch)
                ch = self.next()
                if ch == _EOF:
                    break
                words.add_raw_char(ch)
            else:
                words.add_char(ch)
            result.append(ch)
        if stop != _EOF:
            raise ShellLexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.get_words()

    def process_single_quote(self) -> str:
        # Everything up to the next ' is literal; a ' cannot be escaped inside.
        result: list[str] = []
        ch = self.next()
        if self.lex.raw_quotes:
            result.append(ch)
        while True:
            ch = self.next()
            if ch == _EOF:
                raise ShellLexError(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                if self.lex.raw_quotes:
                    result.append(ch)
                return "".join(result)
            result.append(ch)

    def process_double_quote(self) -> str:
        # Literal except $ and the escape character, which escapes only " $ and itself.
        result: list[str] = []
        ch = self.next()
        if self.lex.raw_quotes:
            result.append(ch)
        escape = self.lex.escape
        while True:
            nxt = self.peek()
            if nxt == _EOF:
                raise ShellLexError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if nxt == '"':
                ch = self.next()
                if self.lex.raw_quotes:
                    result.append(ch)
                return "".join(result)
            if nxt == "$":
                result.append(self.process_dollar())
                continue
            ch = self.next()
            if ch == escape:
                if self.raw_escapes:
                    result.append(ch)
                after = self.peek()
                if after == _EOF:
                    continue
                if after in ('"', "$", escape):
                    ch = self.next()
            result.append(ch)

    def get_env(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.matches.add(name)
            return self.env[name], True
        self.nonmatches.add(name)
        return "", False

    def process_dollar(self) -> str:
        # Long on purpose: BuildKit's processDollar (shell/lex.go) case by case, as
        # upstream has it, so that the two can be compared line by line.
        self.next()
        if self.peek() != "{":
            name = self.process_name()
            if not name:
                return "$"
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset_env:
                return "$" + name
            return value

        self.next()
        nxt = self.peek()
        if nxt == _EOF:
            raise ShellLexError("syntax error: missing '}'")
        if nxt in "{}:":
            raise ShellLexError("syntax error: bad substitution")
        name = self.process_name()
        ch = self.next()
        if ch == _EOF:
            # Go reports "unsupported modifier (\ufffd)" here; say what is wrong instead.
            raise ShellLexError("syntax error: missing '}'")
        chs = ch
        null_is_unset = False

        if ch == "}":
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset_env:
                return "${" + name + "}"
            return value
        if ch in (":", "+", "-", "?", "#", "%"):
            if ch == ":":
                null_is_unset = True
                ch = self.next()
                chs += ch
            word, _ = self._stop_on_brace(raw_escapes=ch in ("#", "%"))
            value, found = self.get_env(name)
            if self.lex.skip_unset_env and not found:
                return "${" + name + chs + word + "}"
            if ch == "-":
                if not found or (null_is_unset and value == ""):
                    return word
                return value
            if ch == "+":
                if not found or (null_is_unset and value == ""):
                    return ""
                return word
            if ch == "?":
                if not found:
                    raise ShellLexError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise ShellLexError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            if ch in ("%", "#"):
                greedy = False
                if word and word[0] == ch:
                    greedy = True
                    word = word[1:]
                if ch == "%":
                    return _trim_suffix(word, value, greedy)
                return _trim_prefix(word, value, greedy)
            raise ShellLexError(f"unsupported modifier ({chs}) in substitution")
        if ch == "/":
            replace_all = self.peek() == "/"
            if replace_all:
                self.next()
            try:
                pattern, _ = self.process_stop_on("/", True)
            except ShellLexError as e:
                if self.peek() == _EOF:
                    raise ShellLexError("syntax error: missing '/' in ${}") from e
                raise
            replacement, _ = self._stop_on_brace(raw_escapes=True)
            value, found = self.get_env(name)
            if self.lex.skip_unset_env and not found:
                return "${" + name + "/" + pattern + "/" + replacement + "}"
            rx = _shell_pattern_to_regex(pattern, greedy=True, anchored=False)
            if replace_all:
                return rx.sub(lambda _m: replacement, value)
            m = rx.search(value)
            if m:
                return value[: m.start()] + replacement + value[m.end() :]
            return value
        raise ShellLexError(f"unsupported modifier ({chs}) in substitution")

    def _stop_on_brace(self, *, raw_escapes: bool) -> tuple[str, list[str]]:
        try:
            return self.process_stop_on("}", raw_escapes)
        except ShellLexError as e:
            if self.peek() == _EOF:
                raise ShellLexError("syntax error: missing '}'") from e
            raise

    def process_name(self) -> str:
        name: list[str] = []
        while self.peek() != _EOF:
            ch = self.peek()
            if not name and ch.isdecimal():
                while self.peek() != _EOF and self.peek().isdecimal():
                    name.append(self.next())
                return "".join(name)
            if not name and ch in "@*#?-$!0":
                return self.next()
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            name.append(self.next())
        return "".join(name)


def _shell_pattern_to_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell wildcard (``?``, ``*``, ``\\`` escapes; no brackets) as a regex."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
            continue
        if tok == "?":
            out.append(".")
            continue
        if tok == "\\":
            # } and / are escaped only to get past the ${} parser.
            if i < len(pattern) and pattern[i] in "}/":
                continue
            nxt = pattern[i] if i < len(pattern) else _EOF
            i += 1
            if nxt not in ("*", "?", "\\"):
                raise ShellLexError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'"
                )
            out.append("\\" + nxt)
            continue
        if tok in "[]{}.+()|^$":
            out.append("\\" + tok)
            continue
        out.append(tok)
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    rx = _shell_pattern_to_regex(pattern, greedy=greedy, anchored=True)
    m = rx.search(value)
    return value[m.end() :] if m else value


def _reverse_pattern(pattern: str) -> str:
    # Reverse, keeping each escape before the character it escapes.
    out = [""] * len(pattern)
    last = len(pattern) - 1
    i = 0
    while i <= last:
        tok = pattern[i]
        j = last - i
        if tok == "\\" and i != last:
            out[j - 1] = tok
            out[j] = pattern[i + 1]
            i += 2
        else:
            out[j] = tok
            i += 1
    return "".join(out)


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regex cannot find the shortest rightmost match, so search the reversals.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]
