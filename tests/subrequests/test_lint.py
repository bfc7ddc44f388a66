"""BuildKit's build checks: each rule on a Dockerfile that trips it (and one that does not),
with BuildKit's rule names and words; buildx's outline and targets."""

from __future__ import annotations

import pytest

from manyarch.subrequests import lint, outline, print_outline, print_targets, targets
from manyarch.subrequests.lint import results_json, source_lines

ENV = {"PATH": "/usr/bin", "PYTHON_VERSION": "3.11.2"}


def rules(text: str, **kw: object) -> list[str]:
    found, _ = lint(text, base_env=lambda ref: ENV, **kw)  # type: ignore[arg-type]
    return [w.short() for w in found]


CASES = [
    (
        "FROM python as base\n",
        [
            "FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)",
        ],
    ),
    (
        "from python AS base\n",
        [
            "FromAsCasing: 'AS' and 'from' keywords' casing do not match (line 1)",
        ],
    ),
    ("FROM python AS base\n", []),
    (
        "FROM python AS Base\n",
        [
            "StageNameCasing: Stage name 'Base' should be lowercase (line 1)",
        ],
    ),
    (
        "FROM python\nCMD python app.py\n",
        [
            "JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended "
            "behavior related to OS signals (line 2)",
        ],
    ),
    ('FROM python\nSHELL ["/bin/bash", "-c"]\nCMD python app.py\n', []),
    (
        "FROM python\nCOPY $SRC /app\n",
        [
            "UndefinedVar: Usage of undefined variable '$SRC' (line 2)",
        ],
    ),
    (
        "FROM python\nENV V=$PYTHON_VERSON\n",
        [
            "UndefinedVar: Usage of undefined variable '$PYTHON_VERSON' (did you mean "
            "$PYTHON_VERSION?) (line 2)",
        ],
    ),
    ("FROM python\nARG SRC\nCOPY $SRC /app\nRUN echo $UNSET_IN_SHELL\n", []),
    (
        "FROM python\nENV A b\n",
        [
            'LegacyKeyValueFormat: "ENV key=value" should be used instead of legacy "ENV '
            'key value" format (line 2)',
        ],
    ),
    (
        "FROM python\nWORKDIR app\n",
        [
            'WorkdirRelativePath: Relative workdir "app" can have unexpected results if '
            "the base image changes (line 2)",
        ],
    ),
    (
        "FROM python\nMAINTAINER me\n",
        [
            "MaintainerDeprecated: Maintainer instruction is deprecated in favor of using "
            "label (line 2)",
        ],
    ),
    (
        "FROM $BASE\n",
        [
            "UndefinedArgInFrom: FROM argument 'BASE' is not declared (line 1)",
        ],
    ),
    ("ARG BASE=x\nFROM $BASE\n", []),
    (
        'FROM python\nENTRYPOINT ["a"]\nENTRYPOINT ["b"]\n',
        [
            "MultipleInstructionsDisallowed: Multiple ENTRYPOINT instructions should not "
            "be used in the same stage because only the last one will be used (line 2)",
        ],
    ),
    (
        "FROM python\nARG GITHUB_TOKEN\n",
        [
            "SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data "
            '(ARG "GITHUB_TOKEN") (line 2)',
        ],
    ),
    ("FROM python\nARG PUBLIC_KEY_FILE\n", []),
    (
        "FROM python AS scratch\n",
        [
            "ReservedStageName: Stage name should not use the same name as reserved stage "
            '"scratch" (line 1)',
        ],
    ),
    (
        "FROM python\nEXPOSE 80/TCP\n",
        [
            "ExposeProtoCasing: Defined protocol '80/TCP' in EXPOSE instruction should be "
            "lowercase (line 2)",
        ],
    ),
    (
        "FROM --platform=$TARGETPLATFORM python\n",
        [
            "RedundantTargetPlatform: Setting platform to predefined $TARGETPLATFORM in "
            "FROM is redundant as this is the default behavior (line 1)",
        ],
    ),
    (
        "FROM --platform=linux/amd64 python\n",
        [
            "FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant "
            'value "linux/amd64" (line 1)',
        ],
    ),
    ("FROM --platform=linux/amd64 python AS build-amd64\n", []),
    (
        "FROM python\nRUN apt-get update && \\\n\n  apt-get install -y curl\n",
        [
            "NoEmptyContinuation: Empty continuation line (line 2)",
        ],
    ),
    (
        "FROM python\nrun true\nRUN true\nRUN true\n",
        [
            "ConsistentInstructionCasing: Command 'run' should match the case of the "
            "command majority (uppercase) (line 2)",
        ],
    ),
]


@pytest.mark.parametrize(("dockerfile", "expected"), CASES)
def test_rules(dockerfile: str, expected: list[str]) -> None:
    assert rules(dockerfile) == expected


def test_an_unreadable_base_leaves_its_variables_unchecked() -> None:
    found, _ = lint("FROM somewhere/unknown\nENV X=$FROM_BASE\n", base_env=lambda ref: None)
    assert found == []


def test_check_directive_and_build_arg() -> None:
    text = "# check=skip=JSONArgsRecommended;error=true\nFROM python as b\nCMD x\n"
    found, config = lint(text, base_env=lambda ref: ENV)
    assert [w.rule for w in found] == ["FromAsCasing"] and config.error
    found, config = lint(text, build_args={"BUILDKIT_DOCKERFILE_CHECK": "skip=all"})
    assert found == [] and not config.error


def test_buildkits_printing() -> None:
    text = "FROM python\nRUN true\nCMD python app.py\n"
    assert source_lines(text, "Dockerfile", 3, 3) == (
        "Dockerfile:3\n--------------------\n"
        "   1 |     FROM python\n   2 |     RUN true\n   3 | >>> CMD python app.py\n"
        "   4 |     \n--------------------\n"
    )
    found, _ = lint(text)
    got = results_json(found, "Dockerfile", text)
    assert got["warnings"][0]["ruleName"] == "JSONArgsRecommended"
    assert (
        got["warnings"][0]["url"]
        == "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
    )
    assert got["warnings"][0]["location"] == {
        "ranges": [{"start": {"line": 3}, "end": {"line": 3}}]
    }


DOCKERFILE = """\
# BASE the image to start from
ARG BASE=python:3.12-slim
ARG UNUSED=1
# build compiles the wheels
FROM $BASE AS build
# VERSION of the app
ARG VERSION=1.0
RUN echo $VERSION

FROM build AS app
ARG PORT
"""


def test_outline_and_targets_as_buildx_prints_them() -> None:
    o = outline(DOCKERFILE, "app")
    assert [a["name"] for a in o["args"]] == ["BASE", "VERSION", "PORT"]
    assert print_outline(o) == (
        "TARGET: app\n\n"
        "BUILD ARG   VALUE              DESCRIPTION\n"
        "BASE        python:3.12-slim   the image to start from\n"
        "VERSION     1.0                of the app\n"
        "PORT                           \n\n"
    )
    listed = targets(DOCKERFILE)
    assert [t.get("name") for t in listed["targets"]] == ["build", "app"]
    assert print_targets(listed) == (
        "TARGET        DESCRIPTION\nbuild         compiles the wheels\napp (default) \n"
    )
