"""``manyarch stop | rm | logs`` on names that match no container: error and hint on stderr."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from manyarch.cli.containers import ago
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


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (5399, "About an hour"),  # hours round: 1.5 h is "2 hours"
        (5400, "2 hours"),
        (47 * 3600, "47 hours"),
        (48 * 3600, "2 days"),
        (13 * 86400, "13 days"),
        (14 * 86400, "2 weeks"),
        (59 * 86400, "8 weeks"),
        (60 * 86400, "2 months"),
        (729 * 86400, "24 months"),
        (730 * 86400, "2 years"),
        (20785 * 86400, "56 years"),  # an image made at the epoch (SOURCE_DATE_EPOCH=0)
    ],
)
def test_ages_are_worded_as_docker_words_them(seconds: float, text: str) -> None:
    now = datetime(2026, 11, 28, tzinfo=UTC)
    assert ago(now - timedelta(seconds=seconds), now) == text
