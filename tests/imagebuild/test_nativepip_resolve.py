"""Native pip's resolution: what it asks uv, and when it does not ask at all."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from manyarch.imagebuild.nativepip import resolve
from manyarch.imagebuild.nativepip.resolve import ResolveRequest


def test_offline_is_not_tried_with_no_index_page_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[Sequence[str]] = []

    def run_uv(argv: Sequence[str], cache: Path, tmp: Path, rootfs: Path) -> str:
        ran.append(argv)
        return ""

    monkeypatch.setattr(resolve, "_run_uv", run_uv)
    request = ResolveRequest(requirements=["six==1.16.0"], pins={"six": "1.16.0"})
    lock = tmp_path / "pylock.toml"
    args = (request, ["uv", "pip", "compile"], [], tmp_path, tmp_path, tmp_path, lock)
    assert resolve._offline(*args) is None
    assert ran == []  # a cold cache: no uv started for nothing
    (tmp_path / "uv" / "simple-v28" / "pypi").mkdir(parents=True)
    lock.write_text('[[packages]]\nname = "six"\nversion = "1.16.0"\nwheels = [{url = "x"}]\n')
    six = {"name": "six", "version": "1.16.0", "wheels": [{"url": "x"}]}
    assert resolve._offline(*args) == [six]
    assert ran and "--offline" in ran[0]
