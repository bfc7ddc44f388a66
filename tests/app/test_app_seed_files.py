"""The seed's files for people who have Docker: they parse and say what the seed needs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import dockerfile
import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[Any]:
    return list(dockerfile.parse_file(str(ROOT / "Dockerfile.fastapi")))


def only(cmd: str) -> Any:
    found = [i for i in instructions() if i.cmd == cmd]
    assert len(found) == 1, f"expected one {cmd}, found {len(found)}"
    return found[0]


def test_registry_compose_file() -> None:
    doc = yaml.safe_load((ROOT / "registry.yml").read_text())
    svc = doc["services"]["registry"]
    assert svc["image"] == "registry:2"
    assert svc["ports"] == ["5000:5000"]
    assert svc["restart"] == "unless-stopped"
    (volume,) = svc["volumes"]
    name, _, target = volume.partition(":")
    assert target == "/var/lib/registry"
    assert name in doc["volumes"]  # a named volume, not a bind mount


@pytest.mark.parametrize("host", ["host.docker.internal:5000", "localhost:5000"])
def test_buildkitd_allows_plain_http(host: str) -> None:
    conf = tomllib.loads((ROOT / "buildkitd.toml").read_text())
    assert conf["registry"][host] == {"http": True, "insecure": True}


def test_dockerfile_base_is_an_argument() -> None:
    ins = instructions()
    assert [i.cmd for i in ins[:2]] == ["ARG", "FROM"]
    assert ins[0].value == ("PYTHON_IMAGE=python:3.12-slim",)
    assert ins[1].value == ("${PYTHON_IMAGE}",)


def test_dockerfile_uses_only_portable_instructions() -> None:
    allowed = {
        "FROM",
        "ARG",
        "WORKDIR",
        "COPY",
        "RUN",
        "ENV",
        "USER",
        "EXPOSE",
        "HEALTHCHECK",
        "CMD",
        "LABEL",
    }
    assert {i.cmd for i in instructions()} <= allowed


def test_dockerfile_installs_requirements_before_copying_the_code() -> None:
    ins = instructions()
    order = [(i.cmd, i.value) for i in ins if i.cmd in ("COPY", "RUN")]
    assert order[0] == ("COPY", ("requirements.txt", "."))
    assert order[1][0] == "RUN"
    assert re.search(r"\bpip install --no-cache-dir -r requirements\.txt\b", order[1][1][0])
    assert order[2] == ("COPY", ("app/", "app/"))


def test_dockerfile_runs_uvicorn_on_port_80_as_a_user() -> None:
    (user,) = only("USER").value
    assert user.split(":")[0] not in ("root", "0", "")
    assert only("EXPOSE").value == ("80",)
    cmd = only("CMD")
    assert cmd.json
    assert cmd.value == ("uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "80")


def test_dockerfile_healthcheck_asks_the_service() -> None:
    hc = only("HEALTHCHECK")
    assert hc.value[0] == "CMD"
    assert hc.value[1].startswith("python")
    assert "http://127.0.0.1/healthz" in " ".join(hc.value)


def test_requirements_are_pinned() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    reqs = {Requirement(line).name.lower(): Requirement(line) for line in lines}
    for r in reqs.values():
        (spec,) = r.specifier
        assert spec.operator == "==", r
        assert not r.extras, f"{r}: extras pull compiled packages (uvloop, httptools)"
    assert {"fastapi", "uvicorn"} <= set(reqs)


def test_requirements_match_what_the_tests_run() -> None:
    # The image must serve the same app the tests check, so pin what is installed here.
    from importlib.metadata import version

    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            r = Requirement(line)
            if r.name in ("fastapi", "uvicorn", "starlette", "pydantic"):
                assert r.specifier.contains(version(r.name)), f"{r} but {version(r.name)} here"


def dockerignore() -> set[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return {s for line in lines if (s := line.strip()) and not s.startswith("#")}


@pytest.mark.parametrize(
    "pattern", [".venv", ".git", "tests", "docs", "bench", "**/__pycache__", "**/*.pyc"]
)
def test_dockerignore_keeps_the_context_small(pattern: str) -> None:
    assert pattern in dockerignore()


def test_dockerignore_keeps_what_the_image_needs() -> None:
    assert not {"app", "app/", "requirements.txt", "*.txt", "*", "*.py"} & dockerignore()
