"""COPY and ADD as BuildKit does them (each test names the BuildKit test it follows, from
frontend/dockerfile/dockerfile_copy_test.go, dockerfile_image_test.go, dockerfile_args_test.go)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import stat
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from manyarch.errors import BuildError, DockerfileError
from manyarch.oci.platform import Platform
from tests.helpers.tiny_base import TinyBase, tiny_base
from tests.imagebuild.build_helpers import make_context, run_build

__all__ = ["tiny_base"]

AMD64 = (Platform.parse("linux/amd64"),)


#: every test here builds in a store and work dir of its own (see conftest)
pytestmark = pytest.mark.usefixtures("isolated_build")


def test_copy_from_a_stage_keeps_its_owners(tmp_path: Path, tiny_base: TinyBase) -> None:
    # testCopyChownExistingDir: the source's owners unless --chown; a directory the COPY
    # creates is root's
    df = """\
ARG BASE
FROM $BASE AS source
RUN mkdir -p /dir/subdir && touch /file /dir/subdir/nestedfile && chown 100:200 /file && \\
    chown 101:201 /dir/subdir && chown 102:202 /dir/subdir/nestedfile
FROM $BASE
COPY --from=source /file /
COPY --from=source /dir /dir
COPY --chown=300:400 --from=source /dir /dir2
"""
    built = run_build(make_context(tmp_path, df), tiny_base.ref, AMD64)

    def owners(i: int) -> dict[str, tuple[int, int]]:
        return {k: (t.uid, t.gid) for k, (t, _) in built.layer("linux/amd64", i).items()}

    assert owners(-3)["file"] == (100, 200)
    assert {k: v for k, v in owners(-2).items() if k.startswith("dir")} == {
        "dir": (0, 0), "dir/subdir": (101, 201), "dir/subdir/nestedfile": (102, 202),
    }  # fmt: skip
    assert {v for k, v in owners(-1).items() if k.startswith("dir2/")} == {(300, 400)}


def test_wildcards_match_dotfiles_and_may_match_nothing(
    tmp_path: Path, tiny_base: TinyBase
) -> None:
    # testEmptyWildcard (COPY foo nomatch* /), testCopyWildcards; Go's filepath.Match has
    # no dotfile rule: * matches .yarnrc
    files = {"foo": "f", "assets/.yarnrc": "y", "assets/x-yarn-y": "x", "assets/other": "o"}
    df = "ARG BASE\nFROM $BASE\nCOPY foo nomatch* /d/\nCOPY assets/*yarn* /y/\n"
    ctx = make_context(tmp_path, df, files)
    built = run_build(ctx, tiny_base.ref, AMD64)
    assert [k for k in built.layer("linux/amd64", -2) if k.startswith("d/")] == ["d/foo"]
    assert sorted(k for k in built.layer("linux/amd64", -1) if k.startswith("y/")) == [
        "y/.yarnrc", "y/x-yarn-y",
    ]  # fmt: skip
    (ctx / "Dockerfile").write_text("ARG BASE\nFROM $BASE\nCOPY nomatch* /d/\n")
    with pytest.raises(BuildError, match="no source files were specified"):
        run_build(ctx, tiny_base.ref, AMD64)


def test_hard_links_in_a_copied_tree_stay_links(tmp_path: Path, tiny_base: TinyBase) -> None:
    # BuildKit's context transfer and copy (fsutil) keep hard links within what they copy
    ctx = make_context(tmp_path, "ARG BASE\nFROM $BASE\nCOPY tree/ /t/\n", {"tree/a": "same"})
    os.link(ctx / "tree/a", ctx / "tree/b")
    built = run_build(ctx, tiny_base.ref, AMD64)
    layer = built.layer("linux/amd64", -1)
    a, b = layer["t/a"][0], layer["t/b"][0]
    assert (a.isfile() and b.islnk() and b.linkname == "t/a") or (
        b.isfile() and a.islnk() and a.linkname == "t/b"
    )


def test_chmod_symbolic_and_on_the_directories_copy_makes(
    tmp_path: Path, tiny_base: TinyBase
) -> None:
    # testChmodNonOctal (each mode as chmod(1) gives it), testCopyChmod (the parents a COPY
    # creates get the mode too)
    modes = ["go-w", "u=rw,g=r,o=r", "a+X", "u+x", "g=u"]
    copies = "".join(
        f"COPY --from=base --chmod={m} /input/file /f{i}\n"
        f"COPY --from=base --chmod={m} /input/dir /d{i}\n"
        for i, m in enumerate(modes)
    )
    expect = " && ".join(
        f"cp -a /input/file /ef{i} && chmod {m} /ef{i} && cp -a /input/dir /ed{i} && "
        f"chmod {m} /ed{i} /ed{i}/f"
        for i, m in enumerate(modes)
    )
    checks = " ".join(f"/f{i} /ef{i} /d{i}/f /ed{i}/f" for i in range(len(modes)))
    df = f"""\
ARG BASE
FROM $BASE AS base
RUN mkdir -p /input/dir && echo x > /input/file && echo y > /input/dir/f && \\
    chmod 0666 /input/file && chmod 0750 /input/dir && chmod 0604 /input/dir/f
FROM $BASE
COPY --from=base /input /input
{copies}RUN {expect} && stat -c %a {checks}
COPY --chmod=777 foo /parent/foo
COPY --chmod=770 foo /parent/sub/foo
"""
    built = run_build(make_context(tmp_path, df, {"foo": "foo"}), tiny_base.ref, AMD64)
    out = built.output("linux/amd64")
    assert out[0::2] == out[1::2], list(zip(out[0::2], out[1::2], strict=True))
    first, second = built.layer("linux/amd64", -2), built.layer("linux/amd64", -1)
    assert stat.S_IMODE(first["parent"][0].mode) == 0o777
    assert stat.S_IMODE(second["parent/sub"][0].mode) == 0o770
    assert stat.S_IMODE(second["parent/sub/foo"][0].mode) == 0o770


def test_scratch_stage_has_workdir_root(tmp_path: Path, tiny_base: TinyBase) -> None:
    # testDockerfileScratchConfig: BuildKit's empty image has WorkingDir "/"
    built = run_build(make_context(tmp_path, "FROM scratch\nENV foo=bar\n"), tiny_base.ref, AMD64)
    assert built.config("linux/amd64").config.working_dir == "/"


def test_proxy_build_args_set_both_spellings(tmp_path: Path, tiny_base: TinyBase) -> None:
    # testBuiltinArgs (build-arg:http_proxy read as $HTTP_PROXY): BuildKit's ProxyEnv sets
    # both spellings; neither is kept in the image
    df = 'ARG BASE\nFROM $BASE\nRUN echo "$HTTP_PROXY $http_proxy $NO_PROXY $no_proxy"\n'
    args = {"http_proxy": "hpvalue", "NO_PROXY": "npvalue"}
    built = run_build(make_context(tmp_path, df), tiny_base.ref, AMD64, build_args=args)
    assert built.output("linux/amd64") == ["hpvalue hpvalue npvalue npvalue"]
    assert not [e for e in built.config("linux/amd64").config.env if "proxy" in e.lower()]


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_add_unpacks_zstd_and_chowns_the_members(tmp_path: Path, tiny_base: TinyBase) -> None:
    # testDockerfileAddArchive (zstd among the compressions BuildKit detects),
    # testDockerfileAddChownArchive (--chown applies to the archive's members)
    files: dict[str, str | bytes] = {
        "a.tar.zst": zstandard.ZstdCompressor().compress(_tar({"z/inner": b"zst"})),
        "t.tar": _tar({"foo": b"content0", "sub/bar": b"b"}),  # sub/: implied, BuildKit's
    }
    df = "ARG BASE\nFROM $BASE\nADD a.tar.zst /u/\nADD --chown=100:200 t.tar /out/\n"
    built = run_build(make_context(tmp_path, df, files), tiny_base.ref, AMD64)
    assert built.layer("linux/amd64", -2)["u/z/inner"][1] == b"zst"
    out = built.layer("linux/amd64", -1)
    assert out["out/foo"][1] == b"content0"
    owners = {k: (t.uid, t.gid) for k, (t, _) in out.items() if k.startswith("out")}
    assert owners == {"out": (100, 200), "out/foo": (100, 200), "out/sub": (0, 0),
                      "out/sub/bar": (100, 200)}  # fmt: skip


def test_a_sources_symlinks_are_followed(tmp_path: Path, tiny_base: TinyBase) -> None:
    # testCopySymlinks (a source link and each wildcard match followed, under their own
    # names), testCopyFollowAllSymlinks, testCopyThroughSymlinkContext
    files = {"bar": "bar-contents", "sub/lfile": "lfile-contents", "sub/subfile": "subfile",
             "sub/baz": "baz-contents", "real/foo": "contents"}  # fmt: skip
    df = "ARG BASE\nFROM $BASE\nCOPY foo /\nCOPY sub/l* /alllinks/\nCOPY link/foo /t/\n"
    ctx = make_context(tmp_path, df, files)
    for link, target in [("foo", "bar"), ("sub/l0", "subfile"), ("sub/l1", "second"),
                         ("sub/second", "baz"), ("link", "real")]:  # fmt: skip
        (ctx / link).symlink_to(target)
    built = run_build(ctx, tiny_base.ref, AMD64)
    foo, links, t = (built.layer("linux/amd64", i) for i in (-3, -2, -1))
    assert foo["foo"][1] == b"bar-contents"
    assert {k: v[1] for k, v in links.items() if k.startswith("alllinks/")} == {
        "alllinks/l0": b"subfile", "alllinks/l1": b"baz-contents",
        "alllinks/lfile": b"lfile-contents",
    }  # fmt: skip
    assert t["t/foo"][1] == b"contents"


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """A loopback HTTP server of a few files (with Last-Modified); yields its URL."""
    files = {"/foo": b"foo-contents", "/dl/archive.tar": _tar({"x": b"x"})}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", files
    finally:
        server.shutdown()
        server.server_close()


def test_add_url_with_checksum(
    tmp_path: Path, tiny_base: TinyBase, http_files: tuple[str, dict[str, bytes]]
) -> None:
    # testAddChecksum (verified; a mismatch fails; not on a local source),
    # testAddURLChmod (0600 unless --chmod), testDockerfileADDFromURL (named after the
    # URL's path, into a directory, unpacked only with --unpack; mtime from Last-Modified)
    url, files = http_files
    digest = "sha256:" + hashlib.sha256(files["/foo"]).hexdigest()
    df = f"""\
ARG BASE
FROM $BASE
ADD --checksum={digest} {url}/foo /tmp/foo
ADD --chmod=644 {url}/foo {url}/dl/archive.tar /d/
ADD --unpack {url}/dl/archive.tar /unpacked/
"""
    ctx = make_context(tmp_path, df)
    no_proxy = {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in no_proxy.items():
            mp.setenv(k, v)
        built = run_build(ctx, tiny_base.ref, AMD64)
        one, two = built.layer("linux/amd64", -3), built.layer("linux/amd64", -2)
        assert built.layer("linux/amd64", -1)["unpacked/x"][1] == b"x"  # ADD --unpack
        assert one["tmp/foo"][1] == b"foo-contents"
        assert stat.S_IMODE(one["tmp/foo"][0].mode) == 0o600
        assert one["tmp/foo"][0].mtime == 1700000000
        assert two["d/archive.tar"][1] == files["/dl/archive.tar"]  # kept, not unpacked
        assert stat.S_IMODE(two["d/foo"][0].mode) == 0o644
        bad = "sha256:" + "0" * 64
        (ctx / "Dockerfile").write_text(
            f"ARG BASE\nFROM $BASE\nADD --checksum={bad} {url}/foo /x\n"
        )
        with pytest.raises(BuildError, match="digest mismatch"):
            run_build(ctx, tiny_base.ref, AMD64)
    (ctx / "Dockerfile").write_text(f"ARG BASE\nFROM $BASE\nADD --checksum={digest} foo /x\n")
    with pytest.raises(DockerfileError, match="non-HTTP"):
        run_build(ctx, tiny_base.ref, AMD64)


def test_exclude_and_parents(tmp_path: Path, tiny_base: TinyBase) -> None:
    # exclude_patterns_test.go testExcludedFilesOnCopy (patterns relative to each source,
    # on a directory, a wildcard of directories, files), dockerfile_parents_test.go
    # testCopyParents (the source's path kept under the destination, WORKDIR-relative)
    files = {
        "dir1/file-101.png": "2", "dir1/file-102.txt": "3", "dir2/file-201.pdf": "6",
        "dir2/file-203.png": "8", "dir3/file-301.mp3": "9", "dir3/file-302.mpeg": "10",
        "foo1/foo2/bar": "testing", "foo1/foo2/baz": "testing2",
    }  # fmt: skip
    df = """\
ARG BASE
FROM $BASE
COPY --exclude=*/*.png --exclude=dir3 . /1/
ADD --exclude=*.mp3 dir3/ /3/
COPY --exclude=*.mp3 --exclude=*.png --exclude=*.pdf dir* /4/
COPY --parents foo1/foo2/bar /
WORKDIR /test
COPY --parents foo1/foo2/ba* .
"""
    built = run_build(make_context(tmp_path, df, files), tiny_base.ref, AMD64)

    def names(i: int, prefix: str) -> list[str]:
        entries = built.layer("linux/amd64", i)
        return sorted(k for k, (t, _) in entries.items() if k.startswith(prefix) and t.isfile())

    assert names(-6, "1/dir") == ["1/dir1/file-102.txt", "1/dir2/file-201.pdf"]
    assert names(-5, "3/") == ["3/file-302.mpeg"]
    assert names(-4, "4/") == ["4/file-102.txt", "4/file-302.mpeg"]
    assert names(-3, "foo1") == ["foo1/foo2/bar"]
    assert names(-1, "test/") == ["test/foo1/foo2/bar", "test/foo1/foo2/baz"]


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A repository (tags v0.0.1, v0.0.2) served over git's dumb HTTP protocol on the
    loopback, as BuildKit's testAddGit serves one; yields the URL and v0.0.1's commit."""
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> str:
        env = {**os.environ, "GIT_AUTHOR_DATE": "2023-11-14T22:13:20Z",
               "GIT_COMMITTER_DATE": "2023-11-14T22:13:20Z"}  # fmt: skip
        return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
                              cwd=repo, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()  # fmt: skip

    git("init", "-q", "-b", "main")
    for tag in ("v0.0.1", "v0.0.2"):
        (repo / "foo").write_text(f"foo of {tag}\n")
        (repo / "sub").mkdir(exist_ok=True)
        (repo / "sub/bar").write_text("bar\n")
        git("add", "foo", "sub")
        git("commit", "-q", "-m", tag)
        git("tag", tag)
    first = git("rev-parse", "v0.0.1")
    git("update-server-info")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(repo))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.git", first
    finally:
        server.shutdown()
        server.server_close()


def test_add_git_repository(
    tmp_path: Path, tiny_base: TinyBase, git_server: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # dockerfile_addgit_test.go testAddGit: a tag checked out without .git; with
    # --keep-git-dir and --chown, a --checksum that is the commit; #ref:subdir
    url, first = git_server
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    df = f"""\
ARG BASE
FROM $BASE
ADD {url}#v0.0.1 /x
ADD --keep-git-dir=true --chown=4242:8484 --checksum={first} {url}#v0.0.1 /kept
ADD {url}#v0.0.2:sub /sub
ADD {url}?tag=v0.0.1&subdir=sub&commit={first[:8]} /q
"""
    built = run_build(make_context(tmp_path, df), tiny_base.ref, AMD64)
    x, kept, sub, q = (built.layer("linux/amd64", i) for i in (-4, -3, -2, -1))
    assert sorted(k for k in q if k.startswith("q/")) == ["q/bar"]  # testGitQueryString
    assert x["x/foo"][1] == b"foo of v0.0.1\n" and not [k for k in x if ".git" in k]
    assert "kept/.git/HEAD" in kept and (kept["kept/foo"][0].uid, kept["kept/foo"][0].gid) == (
        4242, 8484,
    )  # fmt: skip
    assert sorted(k for k in sub if k.startswith("sub/")) == ["sub/bar"]
    bad = "0" * 40
    (tmp_path / "ctx/Dockerfile").write_text(
        f"FROM {tiny_base.ref}\nADD --checksum={bad} {url} /y\n"
    )
    with pytest.raises(BuildError, match="expected checksum to match"):
        run_build(tmp_path / "ctx", tiny_base.ref, AMD64)
