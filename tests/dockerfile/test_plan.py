"""Planning: stages for a target, expansion as BuildKit does it, steps and their config."""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manyarch.dockerfile import (
    DEFAULT_PATH,
    BuildPlan,
    ConfigStep,
    CopyStep,
    RunStep,
    parse,
    plan,
    stage_base_config,
)
from manyarch.dockerfile.values import parse_duration, parse_port_spec, resolve_dest
from manyarch.errors import DockerfileError
from manyarch.oci import ContainerConfig, Platform

ARM64 = Platform.parse("linux/arm64")
AMD64 = Platform.parse("linux/amd64")
ARMV7 = Platform.parse("linux/arm/v7")

SEED = """\
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY app/ app/
USER nobody
EXPOSE 80
HEALTHCHECK --interval=30s --timeout=5s --start-period=1m30s --retries=3 \\
  CMD python -c "import urllib.request; urllib.request.urlopen('http://localhost/health')"
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "80"]
"""

PYTHON_BASE = ContainerConfig(
    env=("PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "HOME=/root"),
    cmd=("python3",),
)


def base_config(ref: str, platform: Platform) -> ContainerConfig:
    """A stand-in for the executor's image resolver."""
    if ref.startswith("python"):
        return PYTHON_BASE
    if ref.startswith("golang"):
        return ContainerConfig(env=("PATH=/go/bin:/usr/bin", "GOPATH=/go"), working_dir="/go")
    return ContainerConfig()


def make(
    text: str,
    *,
    target_platform: Platform = ARM64,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
) -> BuildPlan:
    return plan(
        parse(text),
        target_platform=target_platform,
        build_platform=AMD64,
        build_args=build_args,
        target=target,
        base_config=base_config,
    )


def final_config(p: BuildPlan, base: ContainerConfig = PYTHON_BASE) -> ContainerConfig:
    steps = [s for s in p.result.steps if isinstance(s, ConfigStep)]
    return reduce(lambda c, s: s.apply(c), steps, stage_base_config(base))


def one_stage_steps(text: str, **kw: object) -> tuple[object, ...]:
    p = make("FROM python:3.12\n" + text, **kw)  # type: ignore[arg-type]
    return p.result.steps


def test_seed_dockerfile() -> None:
    p = make(SEED, build_args={"BUILDKIT_INLINE_CACHE": "1"})
    assert p.unused_build_args == ()
    (stage,) = p.stages
    assert (stage.index, stage.name, stage.base, stage.platform, stage.line) == (
        0, None, "python:3.12-slim", ARM64, 2,
    )  # fmt: skip
    workdir, copy_req, run, copy_app, user, expose, health, cmd = stage.steps
    assert workdir == ConfigStep(3, "WORKDIR /app", working_dir="/app", mkdir=True)
    assert copy_req == CopyStep(4, "COPY requirements.txt .", ("requirements.txt",), "/app/")
    assert isinstance(run, RunStep)
    assert run.argv == ("/bin/sh", "-c", "pip install --no-cache-dir -r requirements.txt")
    assert run.shell_form and run.env == () and run.network == "default"
    assert isinstance(copy_app, CopyStep) and copy_app.dest == "/app/app/"
    assert user == ConfigStep(7, "USER nobody", user="nobody")
    assert isinstance(expose, ConfigStep) and expose.exposed_ports == ("80/tcp",)
    assert isinstance(health, ConfigStep) and health.line == 9
    assert isinstance(cmd, ConfigStep) and cmd.line == 11

    config = final_config(p)
    assert config.working_dir == "/app"
    assert config.user == "nobody"
    assert config.exposed_ports == ("80/tcp",)
    assert config.cmd == ("uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "80")
    assert config.args_escaped is True
    assert config.healthcheck == {
        "Test": [
            "CMD-SHELL",
            "python -c \"import urllib.request; urllib.request.urlopen('http://localhost/health')\"",
        ],
        "Interval": 30_000_000_000,
        "Timeout": 5_000_000_000,
        "StartPeriod": 90_000_000_000,
        "Retries": 3,
    }
    assert config.env_dict()["LANG"] == "C.UTF-8"


def test_seed_build_arg_overrides_the_base_image() -> None:
    p = make(SEED, build_args={"PYTHON_IMAGE": "python:3.13-alpine", "NOT_USED": "x"})
    assert p.result.base == "python:3.13-alpine"
    assert p.unused_build_args == ("NOT_USED",)


GO = """\
FROM --platform=$BUILDPLATFORM golang:1.22 AS build
WORKDIR /src/$TARGETARCH
ARG TARGETOS TARGETARCH
ARG CGO_ENABLED=0
COPY . .
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app .

FROM gcr.io/distroless/static:nonroot
COPY --from=build --chown=65532:65532 /out/app /app
ENTRYPOINT ["/app"]
"""


@pytest.mark.parametrize(
    ("target_platform", "arch"), [(ARM64, "arm64"), (AMD64, "amd64"), (ARMV7, "arm")]
)
def test_cross_compiling_multi_stage(target_platform: Platform, arch: str) -> None:
    p = make(GO, target_platform=target_platform)
    build, final = p.stages
    assert (build.name, build.base, build.platform) == ("build", "golang:1.22", AMD64)
    workdir, _arg_step_free_copy, run = build.steps
    # Inside a stage the platform ARGs exist only once declared with ARG.
    assert isinstance(workdir, ConfigStep) and workdir.working_dir == "/src"
    assert isinstance(run, RunStep)
    assert dict(run.env) == {"TARGETOS": "linux", "TARGETARCH": arch, "CGO_ENABLED": "0"}
    assert run.command_text == "GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app ."
    assert (final.base, final.platform) == ("gcr.io/distroless/static:nonroot", target_platform)
    copy, entry = final.steps
    assert copy == CopyStep(
        9,
        "COPY --from=build --chown=65532:65532 /out/app /app",
        ("/out/app",),
        "/app",
        from_="stage:0",
        chown="65532:65532",
    )
    assert isinstance(entry, ConfigStep) and entry.entrypoint == ("/app",)


TARGETS = """\
FROM alpine AS base
RUN echo base
FROM base AS deps
RUN echo deps
FROM alpine AS tool
RUN echo tool
FROM deps AS test
COPY --from=2 /x /x
FROM alpine AS unrelated
FROM deps AS release
COPY --from=tool /t /t
"""


@pytest.mark.parametrize(
    ("target", "indexes"),
    [
        (None, [0, 1, 2, 5]),
        ("release", [0, 1, 2, 5]),
        ("RELEASE", [0, 1, 2, 5]),
        ("deps", [0, 1]),
        ("base", [0]),
        ("test", [0, 1, 2, 3]),
        ("unrelated", [4]),
    ],
)
def test_target_keeps_only_needed_stages(target: str | None, indexes: list[int]) -> None:
    p = make(TARGETS, target=target)
    assert [s.index for s in p.stages] == indexes
    assert p.result.index == indexes[-1]


def test_stage_from_stage_inherits_config_args_and_platform() -> None:
    p = make(
        "FROM --platform=linux/amd64 python:3 AS a\nARG V=1\nENV E=2\nWORKDIR /w\n"
        "FROM a\nRUN echo\nCOPY x y\n"
    )
    _, b = p.stages
    assert b.base == "stage:0" and b.platform == AMD64 and b.line == 5
    run, copy = b.steps
    assert isinstance(run, RunStep) and run.env == (("V", "1"),)
    assert isinstance(copy, CopyStep) and copy.dest == "/w/y"


def test_base_env_expands_in_the_stage() -> None:
    steps = one_stage_steps("WORKDIR $HOME/app\nWORKDIR sub\nCOPY a $PATH_X${HOME}/\n")
    wd1, wd2, copy = steps
    assert isinstance(wd1, ConfigStep) and wd1.working_dir == "/root/app"
    assert isinstance(wd2, ConfigStep) and wd2.working_dir == "/root/app/sub"
    assert isinstance(copy, CopyStep) and copy.dest == "/root/"


def test_relative_workdir_starts_from_the_base_image() -> None:
    p = make("FROM golang:1\nWORKDIR src\nCOPY a .\n")
    wd, copy = p.result.steps
    assert isinstance(wd, ConfigStep) and wd.working_dir == "/go/src"
    assert isinstance(copy, CopyStep) and copy.dest == "/go/src/"


def test_scratch_gets_the_default_path() -> None:
    p = make("FROM scratch\nENV X=$PATH\n")
    (env,) = p.result.steps
    assert isinstance(env, ConfigStep) and env.env == (("X", DEFAULT_PATH),)
    assert p.result.base == "scratch"


# (instructions after FROM python:3.12, build args, the env of the last RUN)
ARG_CASES = [
    ("ARG A=1\nRUN x", {}, {"A": "1"}),
    ("ARG A=1\nRUN x", {"A": "cli"}, {"A": "cli"}),
    ("ARG A\nRUN x", {}, {}),
    ("ARG A\nRUN x", {"A": "cli"}, {"A": "cli"}),
    ("ARG A=1\nENV A=env\nRUN x", {"A": "cli"}, {"A": "env"}),
    ("ARG A=$HOME/x\nRUN x", {}, {"A": "/root/x"}),
    ("ARG A=\"a b\" B='$A'\nRUN x", {}, {"A": "a b", "B": "$A"}),
    ("ARG TARGETPLATFORM BUILDPLATFORM TARGETVARIANT\nRUN x", {},
     {"TARGETPLATFORM": "linux/arm64", "BUILDPLATFORM": "linux/amd64", "TARGETVARIANT": ""}),
    # BuildKit's ProxyEnv: both spellings (testBuiltinArgs)
    ("RUN x", {"http_proxy": "http://proxy:3128"},
     {"http_proxy": "http://proxy:3128", "HTTP_PROXY": "http://proxy:3128"}),
]  # fmt: skip


@pytest.mark.parametrize(("body", "build_args", "env"), ARG_CASES)
def test_args_reach_run(body: str, build_args: dict[str, str], env: dict[str, str]) -> None:
    run = one_stage_steps(body + "\n", build_args=build_args)[-1]
    assert isinstance(run, RunStep)
    assert dict(run.env) == env


def test_global_args() -> None:
    text = (
        "ARG REG=docker.io\nARG IMG=$REG/library/python\nARG TAG\n"
        "FROM ${IMG}:${TAG:-3.12}\nARG REG\nARG IMG=other\nENV R=$REG I=$IMG T=x$TAG\n"
    )
    p = make(text)
    assert p.result.base == "docker.io/library/python:3.12"
    (env,) = p.result.steps
    # ARG NAME in a stage takes the global value; a default in the stage wins over it;
    # a global ARG not declared again is invisible.
    assert isinstance(env, ConfigStep)
    assert env.env == (("R", "docker.io"), ("I", "other"), ("T", "x"))
    p = make(text, build_args={"TAG": "3.13", "IMG": "python"})
    assert p.result.base == "python:3.13"


# (instruction, expected ConfigStep fields)
CONFIG_CASES = [
    ("ENV A=1 B=$A", {"env": (("A", "1"), ("B", ""))}),  # pairs expand with the old env
    ("ENV A 1 2  3", {"env": (("A", "1 2  3"),)}),
    ('ENV A="x y" B=\\$HOME C=$HOME', {"env": (("A", "x y"), ("B", "$HOME"), ("C", "/root"))}),
    ('LABEL "com.example.a b"="v 1" c=$HOME', {"labels": (("com.example.a b", "v 1"),
                                                         ("c", "/root"))}),
    ("EXPOSE 80 443/udp ${P:-8000-8002}/TCP", {"exposed_ports": (
        "443/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp")}),
    ('VOLUME ["/data", "$HOME/v"]', {"volumes": ("/data", "/root/v")}),
    ("VOLUME /a /b", {"volumes": ("/a", "/b")}),
    ("USER ${U:-app}:app", {"user": "app:app"}),
    ("STOPSIGNAL SIGINT", {"stop_signal": "SIGINT"}),
    ("STOPSIGNAL 9", {"stop_signal": "9"}),
    ("MAINTAINER Jane <jane@example.com>", {"author": "Jane <jane@example.com>"}),
    ("HEALTHCHECK NONE", {"healthcheck": {"Test": ["NONE"]}}),
    ('HEALTHCHECK --start-interval=500ms --interval=1.5s CMD ["curl", "-f", "x"]',
     {"healthcheck": {"Test": ["CMD", "curl", "-f", "x"], "Interval": 1_500_000_000,
                      "StartInterval": 500_000_000}}),
    ("SHELL [\"/bin/bash\", \"-eu\", \"-c\"]", {"shell": ("/bin/bash", "-eu", "-c")}),
    ("CMD echo $HOME", {"set_cmd": True, "cmd": ("/bin/sh", "-c", "echo $HOME")}),
    ("CMD []", {"set_cmd": True, "cmd": ()}),
    ("ENTRYPOINT []", {"set_entrypoint": True, "entrypoint": None, "reset_cmd": True}),
]  # fmt: skip


@pytest.mark.parametrize(("instruction", "fields"), CONFIG_CASES)
def test_config_steps(instruction: str, fields: dict[str, object]) -> None:
    (step,) = one_stage_steps(instruction + "\n")
    assert step == ConfigStep(2, instruction, **fields)  # type: ignore[arg-type]


def test_shell_changes_shell_forms_and_entrypoint_resets_cmd() -> None:
    steps = one_stage_steps(
        'SHELL ["/bin/bash", "-c"]\nRUN echo a\nENTRYPOINT exec app\nCMD ["x"]\nENTRYPOINT ["y"]\n'
    )
    _, run, ep1, _, ep2 = steps
    assert isinstance(run, RunStep) and run.argv == ("/bin/bash", "-c", "echo a")
    assert isinstance(ep1, ConfigStep) and ep1.entrypoint == ("/bin/bash", "-c", "exec app")
    assert ep1.reset_cmd  # no CMD yet in this stage: the base image's CMD is dropped
    assert isinstance(ep2, ConfigStep) and not ep2.reset_cmd
    config = reduce(lambda c, s: s.apply(c), [s for s in steps if isinstance(s, ConfigStep)],
                    PYTHON_BASE)  # fmt: skip
    assert config.shell == ("/bin/bash", "-c")
    assert config.entrypoint == ("y",) and config.cmd == ("x",)
    only_ep = one_stage_steps('ENTRYPOINT ["app"]\n')[0]
    assert isinstance(only_ep, ConfigStep) and only_ep.apply(PYTHON_BASE).cmd is None


def test_run_forms() -> None:
    exec_form, net, simple, chomped, complex_ = one_stage_steps(
        'RUN ["echo", "$HOME"]\n'
        "RUN --network=none make\n"
        "RUN <<EOF\nset -e\necho $HOME\nEOF\n"
        "RUN <<-EOF\n\techo tab\n\tEOF\n"
        "RUN <<EOF bash\necho 1\nEOF\n"
    )
    assert isinstance(exec_form, RunStep)
    assert exec_form.argv == ("echo", "$HOME") and not exec_form.shell_form
    assert isinstance(net, RunStep) and net.network == "none"
    assert isinstance(simple, RunStep)
    assert simple.argv == ("/bin/sh", "-c", "set -e\necho $HOME\n")
    assert isinstance(chomped, RunStep) and chomped.command_text == "echo tab\n"
    assert isinstance(complex_, RunStep)
    assert complex_.command_text == "<<EOF bash\necho 1\nEOF"


def test_copy_and_add() -> None:
    copy, add, link = one_stage_steps(
        "WORKDIR /srv\nCOPY --chmod=0644 a b* ./dir/\nADD pkg.tar.gz /opt/\nCOPY --link x /y/.\n"
    )[1:]
    assert copy == CopyStep(3, "COPY --chmod=0644 a b* ./dir/", ("a", "b*"), "/srv/dir/",
                            chmod="0644")  # fmt: skip
    assert add == CopyStep(4, "ADD pkg.tar.gz /opt/", ("pkg.tar.gz",), "/opt/", is_add=True,
                           extract_tar=True)  # fmt: skip
    assert isinstance(link, CopyStep) and link.link and link.dest == "/y/"


def test_backtick_escape_directive() -> None:
    p = make("# escape=`\nFROM python:3\nENV P=C:\\tools `\n  Q=`$HOME\n")
    (env,) = p.result.steps
    assert isinstance(env, ConfigStep) and env.env == (("P", "C:\\tools"), ("Q", "$HOME"))


# (Dockerfile, line, message fragment)
PLAN_ERRORS = [
    ("FROM a\nCOPY --from=5 /x /y\n", 2, "invalid stage index 5"),
    ("FROM a\nCOPY --from=-1 /x /y\n", 2, "invalid stage index -1"),
    ("FROM a AS one\nCOPY --from=two /x /y\nFROM b AS two\n", 2, "needs to be defined before"),
    ("FROM a AS one\nCOPY --from=1 /x /y\nFROM b\n", 2, "needs to be defined before"),
    ("FROM a AS one\nCOPY --from=one /x /y\n", 2, "needs to be defined before"),
    ("ARG S=one\nFROM a AS one\nFROM b\nCOPY --from=$S /x /y\n", 4, "variable expansion"),
    ("FROM a\nCOPY --from=Not/Valid /x /y\n", 2, "not a valid image reference"),
    ("ARG IMG\nFROM $IMG\n", 2, "should not be blank"),
    ("FROM ${IMG:?required}\n", 1, "IMG: required"),
    ("FROM Python:3\n", 1, "not a valid image reference"),
    ("FROM --platform=linux/nope/x/y a\n", 1, "FROM --platform"),
    ("FROM --platform=$NOPE a\n", 1, "empty platform value"),
    ("FROM a\nRUN --network=bridge true\n", 2, "--network=bridge"),
    ("FROM a\nCOPY https://github.com/a/b.git#main /x\n", 2, "source can't be a URL for COPY"),
    ("FROM a\nCOPY https://example.com/f /x\n", 2, "source can't be a URL for COPY"),
    ("FROM a\nCOPY --parents a/./b /x/\n", 2, "/./ pivot is not supported"),
    ("FROM a\nADD --checksum=sha256:0 a /x\n", 2, "checksum can't be specified for non-HTTP"),
    # COPY <<EOF and RUN <<EOF with #!: tests/imagebuild/test_heredocs.py
    ("FROM a\nCOPY /x <<EOF\nhi\nEOF\n", 2, "cannot be the destination"),
    ("FROM a\nEXPOSE 80/http\n", 2, "invalid proto"),
    ("FROM a\nEXPOSE 99999\n", 2, "invalid port"),
    ("FROM a\nSTOPSIGNAL SIGNOPE\n", 2, "invalid signal"),
    ("FROM a\nHEALTHCHECK --interval=5 CMD true\n", 2, "invalid duration"),
    ("FROM a\nHEALTHCHECK --timeout=1us CMD true\n", 2, "less than 1ms"),
    ("FROM a\nHEALTHCHECK --retries=x CMD true\n", 2, "--retries"),
    ("FROM a\nHEALTHCHECK WHAT true\n", 2, "unknown type"),
    ("FROM a\nHEALTHCHECK --interval=1s NONE\n", 2, "NONE"),
    ("FROM a\nCOPY --chmod=u+y a /b\n", 2, "invalid mode"),  # u+x is chmod(1)'s: accepted
    ("FROM a\nCOPY a b c\n", 2, "must be a directory"),
    ("FROM a\nWORKDIR ${EMPTY}\n", 2, "empty"),
    ("FROM a\nENV A=${B\n", 2, "missing '}'"),
    ("FROM a\nVOLUME [\"$E\"]\n", 2, "empty string"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "fragment"), PLAN_ERRORS)
def test_plan_errors(text: str, line: int, fragment: str) -> None:
    df = parse(text, file="sub/Dockerfile")
    with pytest.raises(DockerfileError) as exc:
        plan(df, target_platform=ARM64, build_platform=AMD64)
    assert exc.value.file == "sub/Dockerfile"
    assert exc.value.line == line
    assert fragment in exc.value.message
    assert str(exc.value).startswith(f"sub/Dockerfile:{line}: ")


def test_unknown_target() -> None:
    with pytest.raises(DockerfileError, match="target stage 'nope' could not be found") as exc:
        make(TARGETS, target="nope")
    assert exc.value.hint is not None and "release" in exc.value.hint


def test_without_base_config_a_base_image_is_empty() -> None:
    p = plan(parse("FROM python:3\nWORKDIR $HOME/x\n"), target_platform=ARM64,
             build_platform=AMD64)  # fmt: skip
    (wd,) = p.result.steps
    assert isinstance(wd, ConfigStep) and wd.working_dir == "/x"


@pytest.mark.parametrize(
    ("workdir", "dest", "expected"),
    [
        ("/app", ".", "/app/"),
        ("/app", "", "/app/"),
        ("/app", "./", "/app/"),
        ("/app", "x", "/app/x"),
        ("/app", "x/", "/app/x/"),
        ("/app", "x/.", "/app/x/"),
        ("/app", "/abs/../y", "/y"),
        ("", "x", "/x"),
        ("/", "../../etc/", "/etc/"),
    ],
)
def test_resolve_dest(workdir: str, dest: str, expected: str) -> None:
    assert resolve_dest(workdir, dest) == expected


@settings(deadline=None)
@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999))
def test_parse_duration(h: int, m: int, s: int, ms: int) -> None:
    ns = ((h * 60 + m) * 60 + s) * 1_000_000_000 + ms * 1_000_000
    assert parse_duration(f"{h}h{m}m{s}s{ms}ms") == ns
    assert parse_duration(f"{s}.5s") == s * 1_000_000_000 + 500_000_000


@settings(deadline=None)
@given(st.integers(1, 65535), st.integers(0, 20), st.sampled_from(["", "/tcp", "/udp", "/sctp"]))
def test_parse_port_spec(start: int, width: int, proto: str) -> None:
    end = min(start + width, 65535)
    spec = f"{start}-{end}{proto}" if end != start else f"{start}{proto}"
    ports = parse_port_spec(spec)
    assert ports == [f"{p}/{proto[1:] or 'tcp'}" for p in range(start, end + 1)]


@settings(deadline=None)
@given(st.text(alphabet="ab./", max_size=12), st.text(alphabet="ab./", max_size=12))
def test_resolved_dest_is_absolute_and_clean(workdir: str, dest: str) -> None:
    out = resolve_dest("/" + workdir, dest)
    assert out.startswith("/")
    assert "/../" not in out and "/./" not in out and "//" not in out
