"""The seed's builder lines with manyarch: rm (none yet), create --config --use, version."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from manyarch import __version__
from manyarch.cli.common import registry_options

REPO = Path(__file__).resolve().parents[2]


def manyarch(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "manyarch", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_seeds_builder_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    env = dict(os.environ)
    assert manyarch(env, REPO, "version").stdout == f"manyarch {__version__}\n"
    r = manyarch(env, REPO, "rm", "multiarch-builder")
    assert r.returncode == 1 and "no such container: multiarch-builder" in r.stderr
    create = ["create", "--name", "multiarch-builder", "--driver", "docker-container"]
    r = manyarch(env, REPO, *create, "--config", "./buildkitd.toml", "--use")
    assert (r.returncode, r.stdout) == (0, "multiarch-builder\n"), r.stderr
    # elsewhere, with no buildkitd.toml around, the builder's one still applies
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    opts = registry_options(argparse.Namespace())
    assert "host.docker.internal:5000" in opts.insecure
    assert manyarch(env, elsewhere, "rm", "multiarch-builder").stdout == "multiarch-builder\n"
    assert "host.docker.internal:5000" not in registry_options(argparse.Namespace()).insecure
