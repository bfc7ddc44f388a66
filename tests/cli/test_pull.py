"""``manyarch pull`` against the real registry: docker's lines, the host's platform, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from manyarch.cli.main import main
from tests.helpers.images import make_index
from tests.helpers.registry_server import RegistryServer


@pytest.fixture
def pushed(tmp_path: Path, registry: RegistryServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MANYARCH_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    make_index(tmp_path / "lay")
    ref = f"{registry.host}/pulltest-{tmp_path.name[-12:].lower().strip('_')}:latest"
    ref = ref.replace("_", "-")
    assert main(["copy", f"oci-layout://{tmp_path / 'lay'}:latest", ref]) == 0
    return ref


def test_pull_prints_like_docker_and_is_then_up_to_date(
    pushed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["pull", pushed]) == 0
    lines = capsys.readouterr().out.splitlines()
    repo = pushed.split("/", 1)[1].split(":")[0]
    assert lines[0] == f"latest: Pulling from {repo}"
    assert lines[1:3] and all(line.endswith(": Pull complete") for line in lines[1:3])
    assert lines[-3].startswith("Digest: sha256:")
    assert lines[-2] == f"Status: Downloaded newer image for {pushed}"
    assert lines[-1] == pushed
    assert main(["pull", pushed]) == 0
    out = capsys.readouterr().out
    assert f"Status: Image is up to date for {pushed}" in out
    assert main(["images"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "PLATFORM", "CREATED", "SIZE"]
    assert table[1].split()[:2] == [pushed.rsplit(":", 1)[0], "latest"]
    assert table[1].split()[3] == "linux/amd64"


def test_forced_platform_and_quiet(pushed: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["pull", "-q", "--platform", "linux/arm64", pushed]) == 0
    assert capsys.readouterr().out == pushed + "\n"
    assert main(["images"]) == 0
    assert "linux/arm64" in capsys.readouterr().out


def test_a_platform_the_index_lacks_lists_the_ones_it_has(
    pushed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["pull", "--platform", "linux/s390x", pushed]) == 1
    err = capsys.readouterr().err
    assert "no manifest for platform linux/s390x" in err
    assert "platforms available: linux/amd64, linux/arm64" in err
