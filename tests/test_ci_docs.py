"""docs/ci.md's pipelines, run step after step as their runners would run them, against a
loopback registry: GitHub Actions (native runners per architecture, merged by digest),
GitLab CI (the same with its matrix and artifacts), one runner with the registry cache."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli.test_build import skopeo_raw, tags
from tests.helpers.registry_server import RegistryServer
from tests.helpers.tiny_base import TinyBase, tiny_base

__all__ = ["tiny_base"]

DOC = Path(__file__).resolve().parents[1] / "docs" / "ci.md"
#: steps the test leaves out: they install, log in, or register emulation (make test does)
SKIPPED = {"Install manyarch", "Login", "Emulation for arm64"}
_EXPR = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")


def block(name: str) -> dict[Any, Any]:
    """The YAML block after ``<!-- ci: NAME -->`` in docs/ci.md."""
    text = DOC.read_text()
    start = text.index(f"<!-- ci: {name} -->")
    body = text[start:].split("```yaml\n", 1)[1].split("```", 1)[0]
    loaded: dict[Any, Any] = yaml.safe_load(body)
    return loaded


def bash(script: str, cwd: Path, env: Mapping[str, str]) -> None:
    r = subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=dict(env), capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, f"{script}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


def base_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # manyarch, as pip installs it
    env["SOURCE_DATE_EPOCH"] = "1700000000"
    return env


class Actions:
    """Just enough of a GitHub Actions runner for docs/ci.md's workflows."""

    def __init__(self, workflow: dict[Any, Any], context: Path, tmp: Path, image: str) -> None:
        self.workflow = workflow
        self.context = context
        self.tmp = tmp
        self.env = {**workflow.get("env", {}), "REGISTRY_IMAGE": image}
        self.artifacts: dict[str, list[Path]] = {}
        self.github = {"repository": "owner/app", "ref_name": "main", "actor": "tester"}

    def expr(self, text: str, ctx: Mapping[str, Mapping[str, str]]) -> str:
        def one(m: re.Match[str]) -> str:
            scope, _, key = m.group(1).partition(".")
            return str(ctx[scope][key])

        return _EXPR.sub(one, text)

    def run(self) -> None:
        for name, job in self.workflow["jobs"].items():
            matrix = job.get("strategy", {}).get("matrix", {}).get("include", [{}])
            for n, entry in enumerate(matrix):
                self.job(f"{name}{n}", job, entry)

    def job(self, name: str, job: dict[str, Any], matrix: Mapping[str, str]) -> None:
        work, temp = self.tmp / name / "work", self.tmp / name / "temp"
        work.mkdir(parents=True)
        temp.mkdir()
        github_env = temp / "github_env"
        github_env.touch()
        env = {**self.env}
        for step in job["steps"]:
            ctx = {"env": env, "matrix": matrix, "runner": {"temp": str(temp)},
                   "github": self.github, "secrets": {"GITHUB_TOKEN": "unused"}}  # fmt: skip
            uses = step.get("uses", "")
            with_ = {k: self.expr(str(v), ctx) for k, v in step.get("with", {}).items()}
            if uses.startswith("actions/checkout"):
                shutil.copytree(self.context, work, dirs_exist_ok=True)
            elif uses.startswith("actions/upload-artifact"):
                folder = Path(with_["path"].removesuffix("/*"))
                self.artifacts[with_["name"]] = sorted(folder.iterdir())
                assert self.artifacts[with_["name"]], "if-no-files-found: error"
            elif uses.startswith("actions/download-artifact"):
                dest = Path(with_["path"])
                dest.mkdir(parents=True, exist_ok=True)
                prefix = with_["pattern"].removesuffix("*")
                for artifact, files in self.artifacts.items():
                    if artifact.startswith(prefix):
                        for f in files:
                            shutil.copy(f, dest / f.name)
            elif "run" in step and step.get("name") not in SKIPPED:
                cwd = Path(self.expr(step.get("working-directory", str(work)), ctx))
                script = self.expr(step["run"], ctx)
                bash(script, cwd, {**base_env(self.tmp), **env, "GITHUB_ENV": str(github_env)})
                for line in github_env.read_text().splitlines():
                    key, _, value = line.partition("=")
                    env[key] = value


class GitLab:
    """Just enough of a GitLab runner for docs/ci.md's pipeline."""

    def __init__(self, pipeline: dict[str, Any], context: Path, tmp: Path, image: str) -> None:
        self.pipeline = pipeline
        self.context = context
        self.tmp = tmp
        self.env = {"CI_REGISTRY_IMAGE": image, "CI_REGISTRY": image.split("/")[0],
                    "CI_COMMIT_REF_SLUG": "main", "CI_REGISTRY_USER": "u",
                    "CI_REGISTRY_PASSWORD": "p"}  # fmt: skip
        self.artifacts: dict[str, list[Path]] = {}

    def run(self) -> None:
        for stage in self.pipeline["stages"]:
            for name, job in self.pipeline.items():
                if isinstance(job, dict) and job.get("stage") == stage:
                    for n, variables in enumerate(job.get("parallel", {}).get("matrix", [{}])):
                        self.job(f"{name}{n}", name, job, variables)

    def job(self, key: str, name: str, job: dict[str, Any], variables: Mapping[str, str]) -> None:
        work = self.tmp / key
        shutil.copytree(self.context, work)
        for need in job.get("needs", []):
            for folder in [p for k, ps in self.artifacts.items() if k == need for p in ps]:
                shutil.copytree(folder, work / folder.name, dirs_exist_ok=True)
        env = {**base_env(self.tmp), **self.env, **variables}
        for k, v in self.pipeline.get("variables", {}).items():
            env[k] = (
                os.path.expandvars(v)
                if False
                else re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), str(v))
            )
        bash("\n".join(job["script"]), work, env)
        for path in job.get("artifacts", {}).get("paths", []):
            self.artifacts.setdefault(name, []).append(work / path.rstrip("/"))


@pytest.fixture
def context(tmp_path: Path, tiny_base: TinyBase, isolated_build: Path) -> Path:
    ctx = tmp_path / "repo"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello from CI\n")
    (ctx / "Dockerfile").write_text(
        f'FROM {tiny_base.ref}\nCOPY hello.txt /srv/hello.txt\nCMD ["cat", "/srv/hello.txt"]\n'
    )
    return ctx


def entries(ref: str) -> list[tuple[str, str | None]]:
    index = skopeo_raw(f"docker://{ref}")
    ms = index["manifests"]
    assert isinstance(ms, list)
    kind = "vnd.docker.reference.type"
    return [(m["platform"]["architecture"], m.get("annotations", {}).get(kind)) for m in ms]


def attested(got: list[tuple[str, str | None]]) -> bool:
    """Both platforms, each image followed by its attestation manifest (the digests' order:
    the merge lists them as ``printf ... *`` finds the digest files)."""
    images = sorted(a for a, _ in got[0::2])
    return images == ["amd64", "arm64"] and got[1::2] == [("unknown", "attestation-manifest")] * 2


@pytest.mark.slow
def test_github_actions_native_runners_merged(
    context: Path, tmp_path: Path, registry: RegistryServer
) -> None:
    image = f"{registry.host}/ci-github"
    Actions(block("github"), context, tmp_path / "gh", image).run()
    assert sorted(tags(registry, "ci-github")) == ["latest", "main"]
    assert attested(entries(f"{image}:latest"))


@pytest.mark.slow
def test_gitlab_ci_native_runners_merged(
    context: Path, tmp_path: Path, registry: RegistryServer
) -> None:
    image = f"{registry.host}/ci-gitlab"
    GitLab(block("gitlab"), context, tmp_path / "gl", image).run()
    assert sorted(tags(registry, "ci-gitlab")) == ["latest", "main"]
    assert attested(entries(f"{image}:latest"))


@pytest.mark.slow
def test_one_runner_with_emulation_and_the_registry_cache(
    context: Path, tmp_path: Path, registry: RegistryServer
) -> None:
    image = f"{registry.host}/ci-one"
    Actions(block("single"), context, tmp_path / "one", image).run()
    assert sorted(tags(registry, "ci-one")) == ["buildcache", "latest"]
    assert entries(f"{image}:latest") == [("amd64", None), ("arm64", None)]
    meta = json.loads(next((tmp_path / "one").glob("*/temp/metadata.json")).read_text())
    assert meta["containerimage.descriptor"]["mediaType"].endswith("manifest.list.v2+json")
