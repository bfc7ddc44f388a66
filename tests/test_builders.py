"""Builders as buildx names them: a name, a driver noted, a buildkitd.toml kept; one current."""

from __future__ import annotations

from pathlib import Path

import pytest

from manyarch import builders
from manyarch.errors import InvalidArgument, InvalidInput, NotFound

TOML = '[registry."host.docker.internal:5000"]\n  http = true\n'


@pytest.fixture(autouse=True)
def _config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def test_create_use_find_remove(tmp_path: Path) -> None:
    cfg = tmp_path / "buildkitd.toml"
    cfg.write_text(TOML)
    b = builders.create("multiarch-builder", config=cfg, use=True)
    cfg.write_text("changed later")  # the builder keeps its own copy
    assert builders.current() == b == builders.find("multiarch-builder")
    assert b.config is not None and b.config.read_text() == TOML
    other = builders.create(driver="remote")  # a generated name, not current
    assert other.name.startswith("builder-") and other.config is None
    assert builders.current() == b
    builders.select(other.name)
    assert builders.current() == other
    builders.remove(other.name)
    assert builders.current() is None and builders.find(other.name) is None
    builders.remove("multiarch-builder")
    assert list(builders.builders_dir().iterdir()) == []


def test_refusals_leave_nothing_behind(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[registry\n")
    with pytest.raises(InvalidInput, match="not valid TOML"):
        builders.create("b", config=bad)
    with pytest.raises(InvalidInput, match="cannot read"):
        builders.create("b", config=tmp_path / "missing.toml")
    with pytest.raises(InvalidArgument, match="invalid builder name"):
        builders.create("../escape")
    assert not builders.builders_dir().exists() or list(builders.builders_dir().iterdir()) == []
    builders.create("b")
    with pytest.raises(InvalidArgument, match='existing instance for "b"'):
        builders.create("b")
    with pytest.raises(NotFound):
        builders.select("nope")
    with pytest.raises(NotFound):
        builders.remove("nope")
    assert builders.find("../b") is None
