"""``manyarch stop | rm | logs`` on names that match no container: error and hint on stderr."""

from __future__ import annotations

from pathlib import Path

import pytest

from manyarch.cli.main import main


@pytest.fixture(autouse=True)
def _private_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("MANYARCH_STORE", str(tmp_path / "store"))


@pytest.mark.parametrize("command", ["stop", "rm", "logs"])
def test_unknown_container_gives_error_and_hint_on_stderr(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "no-such-ctr"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "error: no such container: no-such-ctr",
        "hint: list them with `manyarch ps -a`",
    ]


@pytest.mark.parametrize("command", ["stop", "rm"])
def test_one_bad_name_does_not_stop_the_others(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "no-such-a", "no-such-b"]) == 1
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error: ")] == [
        "error: no such container: no-such-a",
        "error: no such container: no-such-b",
    ]
