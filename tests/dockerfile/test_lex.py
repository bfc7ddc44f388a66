"""The BuildKit lexer port against the cases of buildkit's shell/lex_test.go and envVarTest."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manyarch.dockerfile import ShellLex, ShellLexError

ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}
ERROR = object()

# (input, expected) with ENV, from buildkit's envVarTest (Unix lines).
ENV_VAR_TEST: list[tuple[str, object]] = [
    ("hello", "hello"),
    ("he'll'o", "hello"),
    ("he'llo", ERROR),
    ("he\\'llo", "he'llo"),
    ("he\\\\'llo", ERROR),
    ("abc\\tdef", "abctdef"),
    ('"abc\\tdef"', "abc\\tdef"),
    ('"abc\\\\tdef"', "abc\\tdef"),
    ("'abc\\tdef'", "abc\\tdef"),
    ("hello\\", "hello"),
    ("hello\\\\", "hello\\"),
    ('"hello', ERROR),
    ('"hello\\"', ERROR),
    ('"hel\'lo"', "hel'lo"),
    ("'hello", ERROR),
    ("'hello\\'", "hello\\"),
    ("'hello\\there'", "hello\\there"),
    ("'hello\\\\there'", "hello\\\\there"),
    ("\"''\"", "''"),
    ("$.", "$."),
    ("he$1x", "hex"),
    ("he$.x", "he$.x"),
    ("he$pwd.", "he."),
    ("he$PWD", "he/home"),
    ("he\\$PWD", "he$PWD"),
    ("he\\\\$PWD", "he\\/home"),
    ('"he\\$PWD"', "he$PWD"),
    ('"he\\\\$PWD"', "he\\/home"),
    ("\\${}", "${}"),
    ("\\${}aaa", "${}aaa"),
    ("he\\${}", "he${}"),
    ("${}", ERROR),
    ("${}xx", ERROR),
    ("he${}", ERROR),
    ("he${hi}", "he"),
    ("he${hi}xx", "hexx"),
    ("he${PWD}", "he/home"),
    ("he${.}", ERROR),
    ("he${XXX:-000}xx", "he000xx"),
    ("he${PWD:-000}xx", "he/homexx"),
    ("he${XXX:-$PWD}xx", "he/homexx"),
    ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
    ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
    ("he${XXX:YYY}", ERROR),
    ("he${XXX?}", ERROR),
    ("he${XXX:?}", ERROR),
    ("he${PWD?}", "he/home"),
    ("he${PWD:?}", "he/home"),
    ("he${NULL?}", "he"),
    ("he${NULL:?}", ERROR),
    ("he${XXX:+${PWD}}xx", "hexx"),
    ("he${PWD:+${XXX}}xx", "hexx"),
    ("he${PWD:+${SHELL}}xx", "hebashxx"),
    ("he${XXX:+000}xx", "hexx"),
    ("he${PWD:+000}xx", "he000xx"),
    ("'he${XX}'", "he${XX}"),
    ('"he${PWD}"', "he/home"),
    ("\"he'$PWD'\"", "he'/home'"),
    ('"$PWD"', "/home"),
    ("'$PWD'", "$PWD"),
    ("'\\$PWD'", "\\$PWD"),
    ("'\"hello\"'", '"hello"'),
    ("he${PWD", ERROR),
    ("he${PWD:=000}xx", ERROR),
    ("he${PWD:+${PWD}:}xx", "he/home:xx"),
    ("he${XXX:-\\$PWD:}xx", "he$PWD:xx"),
    ("he${XXX:-\\${PWD}z}xx", "he${PWDz}xx"),
    ("안녕하세요", "안녕하세요"),
    ("안'녕'하세요", "안녕하세요"),
    ("안'녕하세요", ERROR),
    ("안녕\\'하세요", "안녕'하세요"),
    ("$KOREAN", "한국어"),
    ("안녕$KOREAN", "안녕한국어"),
]


@pytest.mark.parametrize(("word", "expected"), ENV_VAR_TEST)
def test_env_var_table(word: str, expected: object) -> None:
    lex = ShellLex()
    if expected is ERROR:
        with pytest.raises(ShellLexError):
            lex.process_word(word, ENV)
    else:
        assert lex.process_word(word, ENV) == expected


# lex_test.go TestProcessWithMatches: (input, env, expected, matched, unmatched).
WITH_MATCHES: list[tuple[str, dict[str, str], object, set[str], set[str]]] = [
    ("x ${UNUSED}", {"DUMMY": "dummy"}, "x ", set(), {"UNUSED"}),
    ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx  ccc",
     {"FOO", "BAR"}, {"BAZ"}),
    ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx bbb ccc",
     {"FOO", "BAR"}, {"BAZ"}),
    ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa bbb ",
     {"FOO", "BAR"}, {"BAZ"}),
    ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa  ",
     {"FOO", "BAR"}, {"BAZ"}),
    ("${BAR?bbb}", {"BAR": ""}, "", {"BAR"}, set()),
    ("${BAZ?ccc}", {}, ERROR, set(), set()),
    ("${BAR:?bbb}", {"BAR": ""}, ERROR, set(), set()),
    ("${FOO=aaa}", {"FOO": "xxx"}, ERROR, set(), set()),
    ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x", {"FOO"}, set()),
    ("${FOO%%\\**}", {"FOO": "xx**"}, "xx", {"FOO"}, set()),
    ("${FOO#*x*y}", {"FOO": "xxyy"}, "y", {"FOO"}, set()),
    ("${FOO#*}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": "x"}, "xyy", {"FOO", "BAR"}, set()),
    ("${FOO##*x}", {"FOO": "xxyy"}, "yy", {"FOO"}, set()),
    ("${FOO#?\\?}", {"FOO": "???y"}, "?y", {"FOO"}, set()),
    ("${ABC:-.}${FOO%x}${ABC:-.}", {"FOO": "xxyy"}, ".xxyy.", {"FOO"}, {"ABC"}),
    ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a", {"FOO"}, set()),
    ("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", {"FOO": "/foo*/*/*.txt", "NEEDLE": "\\*/"},
     "/foo.*/*.txt - /foo..*.txt", {"FOO", "NEEDLE"}, set()),
    ("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", {"FOO": "/tmp/tmp/bar.txt", "NEEDLE": "/tmp"},
     "/tmp/bar.txt - /bar.txt", {"FOO", "NEEDLE"}, set()),
    ("${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
     {"FOO": "/a/foo/b/c.txt", "NEEDLE": "/?/", "REPLACEMENT": "/"},
     "/foo/b/c.txt - /foo/c.txt", {"FOO", "NEEDLE", "REPLACEMENT"}, set()),
    ("${FOO//\\//\\/}", {"FOO": "/tmp/foo.txt"}, "\\/tmp\\/foo.txt", {"FOO"}, set()),
    ("${FOO/$BAR/ww}", {"FOO": "xxyy", "BAR": ""}, "wwxxyy", {"FOO", "BAR"}, set()),
    ("${FOO//ww}", {"FOO": "xxyy"}, ERROR, set(), set()),
    ("${FOO///}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO///}", {}, "", set(), {"FOO"}),
    ("something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
     {"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7"},
     "something-v1.2.3.linux-arm-v7.tar.gz", {"VERSION", "TARGETOS", "TARGETARCH",
                                               "TARGETVARIANT"}, set()),
]  # fmt: skip


@pytest.mark.parametrize(("word", "env", "expected", "matched", "unmatched"), WITH_MATCHES)
def test_process_with_matches(
    word: str, env: dict[str, str], expected: object, matched: set[str], unmatched: set[str]
) -> None:
    lex = ShellLex()
    if expected is ERROR:
        with pytest.raises(ShellLexError):
            lex.process(word, env)
        return
    res = lex.process(word, env)
    assert res.result == expected
    assert res.matched == matched
    assert res.unmatched == unmatched


WORDS_ENV = {"hi": "hi", "space": "abc  def", "leading": "  ab c", "trailing": "ab c  "}


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("hello", ["hello"]),
        ("hello${hi}bye", ["hellohibye"]),
        ("hello${space}bye", ["helloabc", "defbye"]),
        ('hello"${space}"bye', ["helloabc  defbye"]),
        ('hello "${space}"bye', ["hello", "abc  defbye"]),
        ("hello${leading}def", ["hello", "ab", "cdef"]),
        ('hello"${leading}" def', ["hello  ab c", "def"]),
        ("hello${trailing}", ["helloab", "c"]),
        ("hello${trailing}d", ["helloab", "c", "d"]),
        ('hello"${trailing}"d', ["helloab c  d"]),
        ("80 443/udp", ["80", "443/udp"]),
        ("a\\ b c", ["a b", "c"]),
    ],
)
def test_words(word: str, expected: list[str]) -> None:
    assert ShellLex().process_words(word, WORDS_ENV) == expected


def test_backtick_escape() -> None:
    # With `# escape=``, a backslash is an ordinary character (Windows paths).
    lex = ShellLex(escape="`")
    assert lex.process_word("c:\\dir\\$X", {"X": "y"}) == "c:\\dir\\y"
    assert lex.process_word("`$X", {"X": "y"}) == "$X"


def test_skip_unset_and_raw_quotes() -> None:
    lex = ShellLex(raw_quotes=True, skip_unset_env=True)
    assert lex.process_word("'$A' \"$B\" $C ${D:-x}", {"B": "b"}) == "'$A' \"b\" $C ${D:-x}"


def test_error_names_the_word() -> None:
    with pytest.raises(ShellLexError, match=r'failed to process "\$\{X"'):
        ShellLex().process_word("${X", {})


_plain = st.text(
    alphabet=st.characters(blacklist_characters="$'\"\\", blacklist_categories=("Cs",)), max_size=40
)
_name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)


@settings(deadline=None)
@given(_plain)
def test_plain_text_is_unchanged(text: str) -> None:
    assert ShellLex().process_word(text, {"A": "b"}) == text


# Only Go's white space: Python's str.split() also splits on \x1c-\x1f, Go does not.
@settings(deadline=None)
@given(st.text(alphabet="ab1 \t\n\r\v\f-_/:.=@%", max_size=40))
def test_plain_words_split_like_str_split(text: str) -> None:
    assert ShellLex().process_words(text, {}) == text.split()


@settings(deadline=None)
@given(_name, st.text(max_size=20), st.text(alphabet="abc xyz", max_size=10))
def test_defaults_follow_posix(name: str, value: str, default: str) -> None:
    lex = ShellLex()
    set_env = {name: value}
    assert lex.process_word("${" + name + "}", set_env) == value
    assert lex.process_word("$" + name, set_env) == value
    assert lex.process_word("${" + name + "-" + default + "}", {}) == default
    assert lex.process_word("${" + name + ":-" + default + "}", {name: ""}) == default
    assert lex.process_word("${" + name + "-" + default + "}", {name: ""}) == ""
    assert lex.process_word("${" + name + ":+" + default + "}", set_env) == (
        default if value else ""
    )
    assert lex.process_word("${" + name + "+" + default + "}", set_env) == default
    assert lex.process_word("'$" + name + "'", set_env) == "$" + name
    assert lex.process_word("\\$" + name, set_env) == "$" + name


def test_the_space_runs_are_the_characters_go_calls_spaces() -> None:
    from manyarch.dockerfile.lex import _SPACES, _isspace

    differ = [c for c in range(0x110000) if _isspace(chr(c)) != bool(_SPACES.fullmatch(chr(c)))]
    assert not differ, [hex(c) for c in differ]


@settings(max_examples=300)
@given(st.lists(st.sampled_from(["a", "b", " ", "\t", "\u3000", "\x1c", "", "xy z"])))
def test_a_string_splits_as_its_characters_one_by_one(pieces: list[str]) -> None:
    from manyarch.dockerfile.lex import _Words

    by_string, by_char = _Words(), _Words()
    for p in pieces:
        by_string.add_string(p)
        for ch in p:
            by_char.add_char(ch)
        by_string.add_raw_string("")  # an empty quoted word keeps a word open
        by_char.add_raw_string("")
    assert by_string.get_words() == by_char.get_words()


def test_a_long_expanded_value_splits_in_linear_time() -> None:
    # a character at a time, a 1.2 MB expanded word took ~40 s (the word copied per character)
    lex = ShellLex()
    value = "v" * 1_200_000
    words = lex.process_words("$A $A", {"A": value})
    assert words == [value, value]
