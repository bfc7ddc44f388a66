"""``manyarch rmi | save`` on images the store does not hold: error and hint on stderr."""

from __future__ import annotations

from pathlib import Path

import pytest

from manyarch.cli.main import main


@pytest.fixture(autouse=True)
def _private_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("MANYARCH_STORE", str(tmp_path / "store"))


def test_rmi_of_an_unknown_image(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rmi", "no-such-image", "other-missing"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "error: no such image: no-such-image",
        "hint: list them with `manyarch images`",
        "error: no such image: other-missing",
        "hint: list them with `manyarch images`",
    ]


def test_save_into_a_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "missing" / "x.tar"
    assert main(["save", "-o", str(dest), "anything"]) == 2
    err = capsys.readouterr().err
    assert f"error: directory {dest.parent} does not exist" in err
    assert "hint: " in err
