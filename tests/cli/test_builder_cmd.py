"""The seed's builder lines with manyarch: rm (none yet), create --config --use, version."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from manyarch import __version__
from manyarch.config import registry_options
from tests.helpers.cli import manyarch

REPO = Path(__file__).resolve().parents[2]


def test_the_seeds_builder_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    env = dict(os.environ)
    assert manyarch(env, "version", cwd=REPO).stdout == f"manyarch {__version__}\n"
    r = manyarch(env, "rm", "multiarch-builder", cwd=REPO)
    assert r.returncode == 1 and "no such container: multiarch-builder" in r.stderr
    create = ["create", "--name", "multiarch-builder", "--driver", "docker-container"]
    r = manyarch(env, *create, "--config", "./buildkitd.toml", "--use", cwd=REPO)
    assert (r.returncode, r.stdout) == (0, "multiarch-builder\n"), r.stderr
    # elsewhere, with no buildkitd.toml around, the builder's one still applies
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    opts = registry_options()
    assert "host.docker.internal:5000" in opts.insecure
    assert manyarch(env, "rm", "multiarch-builder", cwd=elsewhere).stdout == "multiarch-builder\n"
    assert "host.docker.internal:5000" not in registry_options().insecure
