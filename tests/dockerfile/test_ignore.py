"""``.dockerignore`` reading and matching, tables from moby/patternmatcher's tests."""

from __future__ import annotations

import pytest

from manyarch.dockerfile import DockerIgnore
from manyarch.errors import DockerfileError

# (pattern, path, matches-or-a-parent-matches): patternmatcher_test.go TestMatches.
SINGLE = [
    ("**", "file", True),
    ("**", "file/", True),
    ("**/", "file", True),
    ("**/", "file/", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**/**", "dir/file", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/dir2/file", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\\\", "a\\", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    ("a*/b", "a/c/b", False),
    ("a?b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[x\\-]", "-", True),
    ("[x\\-]", "z", False),
    ("*x", "xxx", True),
    # A parent directory matching excludes what is inside it.
    ("docs", "docs/README.md", True),
    ("node_modules", "node_modules/a/b/c.js", True),
    ("*.pyc", "pkg/mod.pyc", False),
    ("**/*.pyc", "pkg/mod.pyc", True),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), SINGLE)
def test_single_pattern(pattern: str, path: str, expected: bool) -> None:
    assert DockerIgnore([pattern]).matches(path) is expected


@pytest.mark.parametrize(
    ("patterns", "path", "expected"),
    [
        (["**", "!util/docker/web"], "util/docker/web/foo", False),
        (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
        (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3-py3-none-any.whl", False),
        (["!fileutils.go", "*.go"], "fileutils.go", True),
        (["*.go", "!fileutils.go"], "fileutils.go", False),
        (["docs", "!docs/README.md"], "docs/README.md", False),
        (["docs/", "!docs/README.md"], "docs/README.md", False),
        (["docs/*", "!docs/README.md"], "docs/README.md", False),
        (["docs/*", "!docs/README.md"], "docs/other.md", True),
        (["*"], ".", False),
        ([], "any/path", False),
    ],
)
def test_exceptions(patterns: list[str], path: str, expected: bool) -> None:
    assert DockerIgnore(patterns).matches(path) is expected


@pytest.mark.parametrize(
    "pattern", ["[", "[^", "[^bc", "a[", "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "!"]
)
def test_malformed_patterns(pattern: str) -> None:
    with pytest.raises(DockerfileError):
        DockerIgnore([pattern])


def test_parse_file_text() -> None:
    text = (
        "\ufeff# comment\n"
        "  \n"
        "/build\n"
        "**/__pycache__\n"
        "./docs/../docs/\n"
        "*.md\n"
        "! README.md \n"
        "#!keep\n"
        ".git\n"
    )
    ign = DockerIgnore.parse(text)
    assert ign.patterns == ("build", "**/__pycache__", "docs", "*.md", "!README.md", ".git")
    assert ign.has_exclusions
    assert ign.matches("build/out.o")
    assert ign.matches("app/__pycache__/x.pyc")
    assert ign.matches("docs/a/b")
    assert ign.matches("CHANGES.md")
    assert not ign.matches("README.md")
    assert ign.matches(".git/HEAD")
    assert not ign.matches("app/main.py")
    # BuildKit applies .dockerignore to the context only: the Dockerfile can be excluded
    # from COPY like any other file (the frontend reads it separately).
    assert DockerIgnore.parse("Dockerfile\n.dockerignore\n").matches("Dockerfile")


def test_parse_error_names_file_and_line() -> None:
    with pytest.raises(DockerfileError) as exc:
        DockerIgnore.parse("ok\n\n[oops\n", file="ctx/.dockerignore")
    assert exc.value.file == "ctx/.dockerignore"
    assert exc.value.line == 3
    assert str(exc.value).startswith("ctx/.dockerignore:3: ")
