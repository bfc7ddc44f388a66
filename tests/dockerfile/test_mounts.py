"""``RUN --mount`` planned as BuildKit's instructions package reads it: fields, checks,
defaults (each case names the BuildKit test it follows)."""

from __future__ import annotations

import pytest

from manyarch.dockerfile import RunStep, parse, plan
from manyarch.dockerfile.mounts import Mount
from manyarch.errors import DockerfileError
from manyarch.oci import Platform

AMD64 = Platform.parse("linux/amd64")


def mounts(text: str, **build_args: str) -> tuple[Mount, ...]:
    """The mounts of the last RUN of ``text``."""
    p = plan(parse(text), target_platform=AMD64, build_platform=AMD64, build_args=build_args)
    runs = [s for s in p.result.steps if isinstance(s, RunStep)]
    return runs[-1].mounts


# (the --mount value after FROM a / WORKDIR /w, the Mount planned; BuildKit's test)
CASES = [
    # testCacheMountDefaultID: the id is the target, cleaned
    ("type=cache,target=/root/.cache/pip/", Mount("cache", "/root/.cache/pip", readonly=False,
                                                  id="/root/.cache/pip")),
    # testCacheMountUser: uid, gid, mode (octal)
    ("type=cache,target=/c,uid=1000,gid=1000,mode=0700,sharing=locked,id=pip",
     Mount("cache", "/c", readonly=False, id="pip", sharing="locked", uid=1000, gid=1000,
           mode=0o700)),
    # testMountContext: a bind of the context by default, read-only, relative to WORKDIR
    ("target=ctx", Mount("bind", "/w/ctx")),
    ("type=bind,source=a,target=/b,rw", Mount("bind", "/b", source="a", readonly=False)),
    # testMountTmpfsSize
    ("type=tmpfs,target=/dev/shm,size=128m", Mount("tmpfs", "/dev/shm", readonly=False,
                                                   size=128 << 20)),
    # testSecretFileParams and the docs: target /run/secrets/<id>, required, env
    ("type=secret,id=pypi", Mount("secret", "/run/secrets/pypi", id="pypi")),
    ("type=secret,id=tok,env=TOKEN,required", Mount("secret", "", id="tok", env="TOKEN",
                                                    required=True)),
    ("type=secret,target=/mysecret,mode=741,uid=100,gid=102",
     Mount("secret", "/mysecret", id="mysecret", mode=0o741, uid=100, gid=102)),
    ("type=ssh", Mount("ssh", "", id="default")),
]  # fmt: skip


@pytest.mark.parametrize(("value", "want"), CASES)
def test_mount_fields_and_defaults(value: str, want: Mount) -> None:
    assert mounts(f"FROM a\nWORKDIR /w\nRUN --mount={value} true\n") == (want,)


def test_mount_values_expand_env_and_args() -> None:
    # testMountEnvVar, testMountArg, testMountMetaArg
    text = """\
ARG META=/meta
FROM a
ARG META
ARG ID=pip
ENV SOME_PATH=/mytmp
RUN --mount=target=$SOME_PATH,type=tmpfs --mount=type=cache,id=$ID,target=$META true
"""
    tmpfs, cache = mounts(text, ID="uv")
    assert (tmpfs.type, tmpfs.target) == ("tmpfs", "/mytmp")
    assert (cache.id, cache.target) == ("uv", "/meta")


def test_mount_from_stage_or_image() -> None:
    # testMountContext (from a stage), testMountFromError (not defined before)
    text = """\
FROM a AS src
RUN true
FROM b
RUN --mount=from=src,target=/s --mount=from=alpine:3,source=/etc,target=/e true
"""
    s, e = mounts(text)
    assert (s.from_, s.target) == ("stage:0", "/s")
    assert (e.from_, e.source) == ("alpine:3", "/etc")
    with pytest.raises(DockerfileError, match="needs to be defined before"):
        mounts("FROM a\nRUN --mount=from=later,target=/x true\nFROM b AS later\n")


# (value, BuildKit's message; testMountInvalid, parse.go's checks)
INVALID = [
    ("typ=tmpfs", "unexpected key 'typ'"),
    ("type=tmp", 'unsupported mount type "tmp"'),
    ("type=cache,target=/c,sharing=all", "unsupported sharing value"),
    ("type=bind,target=/c,sharing=shared", "invalid cache sharing set for bind mount"),
    ("type=bind,target=/c,uid=1", "uid not allowed for 'bind' type mounts"),
    ("type=cache,target=/c,size=1m", "unexpected key 'size' for mount type 'cache'"),
    ("type=cache,target=/c,required", "unexpected key 'required' for mount type 'cache'"),
    ("type=secret,id=a,src=b", "both source and id can't be set"),
    ("type=secret", "one of source, target required"),
    ("type=ssh,source=x", "ssh does not support source"),
    ("type=cache,target=/c,mode=999", "invalid value 999 for mode"),
    ("type=bind,target=/", "invalid mount target"),
    ("type=bind,from=$X,target=/x", "variable expansion"),
]


@pytest.mark.parametrize(("value", "fragment"), INVALID)
def test_invalid_mounts_refused_with_buildkits_words(value: str, fragment: str) -> None:
    with pytest.raises(DockerfileError, match=r"Dockerfile:2") as exc:
        mounts(f"FROM a\nRUN --mount={value} true\n")
    assert fragment in exc.value.message
