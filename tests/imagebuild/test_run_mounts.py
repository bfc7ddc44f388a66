"""``RUN --mount`` in the executor on the tiny base: cache, bind, tmpfs, secret (each test
names the BuildKit test it follows, from frontend/dockerfile/dockerfile_mount_test.go and
dockerfile_secrets_test.go)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from manyarch import Session
from manyarch import dockerfile as df
from manyarch.errors import BuildError
from manyarch.imagebuild.cachemounts import cache_dir, cachemounts_dir, prune_cachemounts
from manyarch.imagebuild.nativepip.interceptor import mounts_fallback
from manyarch.imagebuild.secrets import SecretSource
from manyarch.oci.platform import Platform
from tests.helpers.tiny_base import TinyBase, tiny_base
from tests.imagebuild.build_helpers import BOTH, Built, make_context, run_build

__all__ = ["tiny_base"]

AMD64 = (Platform.parse("linux/amd64"),)


#: every test here builds in a store and work dir of its own (see conftest)
pytestmark = pytest.mark.usefixtures("isolated_build")


def all_entries(built: Built, platform: str) -> dict[str, bytes | None]:
    """Every entry of every layer above the tiny base's: name -> data."""
    out: dict[str, bytes | None] = {}
    for i in range(1, len(built.manifest(platform).layers)):
        out.update({k: v for k, (_, v) in built.layer(platform, i).items()})
    return out


def test_cache_mount_kept_across_builds_shared_by_platforms(
    tmp_path: Path, tiny_base: TinyBase
) -> None:
    # testMountRWCache, testCacheMountDefaultID (the id is the target), testCacheMountUser
    dockerfile = """\
ARG BASE
FROM $BASE
RUN --mount=type=cache,target=/root/.cache/pip cat /root/.cache/pip/seen 2>/dev/null | sort; \\
    uname -m >> /root/.cache/pip/seen
RUN --mount=type=cache,target=/c,uid=1000,gid=1000,mode=0700 stat -c '%u %g %a' /c
"""
    ctx = make_context(tmp_path, dockerfile)
    first = run_build(ctx, tiny_base.ref, BOTH)
    assert first.output("linux/amd64")[-1] == "1000 1000 700"
    second = run_build(ctx, tiny_base.ref, BOTH)
    for plat in ("linux/amd64", "linux/arm64"):
        # one cache, both platforms: each sees what both wrote in the first build (and
        # maybe the other's line of this build, which may run first)
        assert {"aarch64", "x86_64"} <= set(second.output(plat)[:3])
        # the cache is mounted over the rootfs: no layer holds it, nor its mount point
        assert not [n for n in all_entries(second, plat) if n.startswith(("root", "c"))]
        assert [h.empty_layer for h in second.config(plat).history[-2:]] == [True, True]
    assert len(list(cachemounts_dir().iterdir())) == 2
    assert Session().prune().cache_mounts[0] == 2  # manyarch prune
    assert not list(cachemounts_dir().iterdir())


def test_cache_mount_sharing() -> None:
    # BuildKit's CacheMountShared/Private/Locked (client/llb): private takes another
    # instance while one is held; prune leaves what a build holds
    shared = df.Mount("cache", "/c", readonly=False, id="x")
    private = df.Mount("cache", "/c", readonly=False, id="x", sharing="private")
    amd = AMD64[0]
    with cache_dir(shared, amd, lambda: None) as a, cache_dir(shared, amd, lambda: None) as b:
        assert a == b
        with cache_dir(private, amd, lambda: None) as c:
            assert c != a
        assert prune_cachemounts() == (0, 0)
    with cache_dir(private, amd, lambda: None) as d:
        assert d == a
    assert prune_cachemounts()[0] == 1


def test_bind_mounts_context_stage_rw(tmp_path: Path, tiny_base: TinyBase) -> None:
    # testMountContext (from the context and from a stage; relative target under WORKDIR),
    # BuildKit's rw bind (writes discarded), .dockerignore applied to the context
    dockerfile = """\
ARG BASE
FROM $BASE AS src
RUN mkdir /out && echo fromstage > /out/f
FROM $BASE
WORKDIR /w
RUN --mount=target=ctx --mount=from=src,source=/out,target=/s \\
    --mount=type=bind,source=data,target=/rw,rw \\
    cat ctx/hello /s/f; ls ctx; echo new > /rw/new; cat /rw/new /rw/d; \\
    (echo no > ctx/no) 2>/dev/null || echo read-only
"""
    files = {"hello": "hi\n", "data/d": "dee\n", "private.key": "k", ".dockerignore": "*.key\n"}
    built = run_build(make_context(tmp_path, dockerfile, files), tiny_base.ref, AMD64)
    out = built.output("linux/amd64")
    assert out == ["hi", "fromstage", "Dockerfile", "data", "hello", "new", "dee", "read-only"]
    assert not [n for n in all_entries(built, "linux/amd64") if n.startswith(("s", "rw", "w/"))]
    assert (tmp_path / "ctx/data").exists() and not (tmp_path / "ctx/data/new").exists()


def test_tmpfs_mount_with_size(tmp_path: Path, tiny_base: TinyBase) -> None:
    # testMountTmpfs, testMountTmpfsSize
    dockerfile = """\
ARG BASE
FROM $BASE
RUN --mount=type=tmpfs,target=/mytmp,size=1m echo x > /mytmp/f && df -k /mytmp | tail -n1
"""
    built = run_build(make_context(tmp_path, dockerfile), tiny_base.ref, AMD64)
    (line,) = built.output("linux/amd64")
    assert line.split()[1] == "1024"
    assert built.config("linux/amd64").history[-1].empty_layer


def test_secrets_as_files_and_env_never_kept(
    tmp_path: Path, tiny_base: TinyBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # testSecretFileParams, testSecretAsEnviron, testSecretRequiredWithoutValue
    monkeypatch.setenv("MANYARCH_TEST_TOKEN", "s3cr3t-env")
    pypi = tmp_path / "pypi.txt"
    pypi.write_text("s3cr3t-file")
    dockerfile = """\
ARG BASE
FROM $BASE
RUN --mount=type=secret,id=tok,env=TOKEN --mount=type=secret,id=pypi,mode=0440,uid=1000 \\
    --mount=type=secret,id=absent \\
    test ${#TOKEN} = 10 && stat -c '%a %u' /run/secrets/pypi && \\
    wc -c < /run/secrets/pypi && test ! -e /run/secrets/absent && echo done > /out
"""
    secrets = {
        "tok": SecretSource.parse("id=tok,env=MANYARCH_TEST_TOKEN"),
        "pypi": SecretSource.parse(f"id=pypi,src={pypi}"),
    }
    ctx = make_context(tmp_path, dockerfile)
    built = run_build(ctx, tiny_base.ref, AMD64, secrets=secrets)
    assert built.output("linux/amd64") == ["440 1000", "11"]
    entries = all_entries(built, "linux/amd64")
    assert sorted(entries) == ["out"]  # no /run/secrets left behind
    everything = repr(built.events) + built.config("linux/amd64").to_document().data.decode()
    assert "s3cr3t" not in everything
    (ctx / "Dockerfile").write_text(
        "ARG BASE\nFROM $BASE\nRUN --mount=type=secret,id=absent,required true\n"
    )
    with pytest.raises(BuildError, match="secret absent not found"):
        run_build(ctx, tiny_base.ref, AMD64)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("type=cache,target=/root/.cache/pip", None),
        ("type=cache,target=/root/.cache/uv,sharing=locked", None),
        ("type=tmpfs,target=/tmp", None),
        ("type=cache,target=/app/.venv", "a cache mount on /app/.venv, where the install may"),
        ("type=secret,id=pypi", "RUN --mount=type=secret needs the sandbox"),
        ("type=bind,target=/src", "RUN --mount=type=bind needs the sandbox"),
    ],
)
def test_native_pip_with_a_mount_native_or_says_why(value: str, reason: str | None) -> None:
    text = f"FROM a\nRUN --mount={value} pip install flask\n"
    amd = AMD64[0]
    p = df.plan(df.parse(text), target_platform=amd, build_platform=amd)
    step = p.result.steps[-1]
    assert isinstance(step, df.RunStep)
    why = mounts_fallback(step.mounts)
    assert why == reason if reason is None else (why or "").startswith(reason)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("id=pypi,src=/run/pypi.txt", SecretSource("pypi", file=Path("/run/pypi.txt"))),
        ("id=tok,env=GH_TOKEN", SecretSource("tok", env="GH_TOKEN")),
        ("type=env,id=tok,src=GH_TOKEN", SecretSource("tok", env="GH_TOKEN")),
        ("src=/x/npmrc", SecretSource("npmrc", file=Path("/x/npmrc"))),
        (
            "id=MANYARCH_TEST_SECRET",
            SecretSource("MANYARCH_TEST_SECRET", env="MANYARCH_TEST_SECRET"),
        ),
        ("id=not-in-env", SecretSource("not-in-env", file=Path("not-in-env"))),
    ],
)
def test_secret_flag_as_buildx_reads_it(
    text: str, want: SecretSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    # buildx's util/buildflags/secrets.go: src or env, type=env, the id alone
    monkeypatch.setenv("MANYARCH_TEST_SECRET", "x")
    assert SecretSource.parse(text) == want


def test_ssh_mount_forwards_the_agent_socket(tmp_path: Path, tiny_base: TinyBase) -> None:
    # dockerfile_ssh_test.go testSSHSocketParams: the socket at the target (default
    # /run/buildkit/ssh_agent.N), SSH_AUTH_SOCK naming it; nothing left in the layer
    sock_path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    server.listen(1)
    dockerfile = """\
ARG BASE
FROM $BASE
RUN --mount=type=ssh test -S "$SSH_AUTH_SOCK" && echo "$SSH_AUTH_SOCK"
RUN --mount=type=ssh,id=other,target=/a.sock test ! -e /a.sock && echo skipped
"""
    try:
        built = run_build(
            make_context(tmp_path, dockerfile), tiny_base.ref, AMD64, ssh={"default": sock_path}
        )
    finally:
        server.close()
    assert built.output("linux/amd64") == ["/run/buildkit/ssh_agent.0", "skipped"]
    assert all(h.empty_layer for h in built.config("linux/amd64").history[-2:])


def test_cache_mount_seeded_from_a_stage(tmp_path: Path, tiny_base: TinyBase) -> None:
    # BuildKit's cache mount with from/source: a new cache starts as that stage's path
    # (convert_runmount.go: the mount's base); kept afterwards as any cache
    dockerfile = """\
ARG BASE
FROM $BASE AS seed
RUN mkdir /seed && echo seeded > /seed/s
FROM $BASE
RUN --mount=type=cache,target=/c,from=seed,source=/seed cat /c/s && echo more >> /c/s
"""
    ctx = make_context(tmp_path, dockerfile)
    first = run_build(ctx, tiny_base.ref, AMD64)
    assert first.output("linux/amd64") == ["seeded"]
    again = run_build(ctx, tiny_base.ref, AMD64)
    assert again.output("linux/amd64") == ["seeded", "more"]


def test_bind_mount_from_an_image(tmp_path: Path, tiny_base: TinyBase) -> None:
    # testMountContext's from=<image> form: the image's files, read-only
    dockerfile = f"""\
ARG BASE
FROM $BASE
RUN --mount=from={tiny_base.ref},source=/etc,target=/e head -n1 /e/passwd
"""
    built = run_build(make_context(tmp_path, dockerfile), tiny_base.ref, AMD64)
    assert built.output("linux/amd64") == ["root:x:0:0:root:/root:/bin/sh"]
    assert built.config("linux/amd64").history[-1].empty_layer
