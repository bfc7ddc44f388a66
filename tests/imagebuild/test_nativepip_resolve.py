"""Native pip's resolution: what it asks uv, and when it does not ask at all."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from manyarch.imagebuild.nativepip import resolve
from manyarch.imagebuild.nativepip.resolve import ResolveRequest


def test_offline_is_not_tried_with_no_index_page_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the real uv, watched: not started offline on a cold cache; offline once it holds the
    # index pages of an online resolution (PyPI through the host's CAs)
    ran: list[Sequence[str]] = []
    real = resolve._run_uv

    def run_uv(argv: Sequence[str], cache: Path, tmp: Path, rootfs: Path) -> str:
        ran.append(argv)
        return real(argv, cache, tmp, rootfs)

    monkeypatch.setattr(resolve, "_run_uv", run_uv)
    request = ResolveRequest(requirements=["six==1.16.0"], pins={"six": "1.16.0"})
    (tmp_path / "in.txt").write_text("six==1.16.0\n")
    lock = tmp_path / "pylock.toml"
    compile_cmd = [resolve.uv_binary(), "pip", "compile", "--python", sys.executable]
    compile_cmd += ["--python-platform", "aarch64-manylinux_2_36", "--python-version", "3.11"]
    compile_cmd += ["--quiet", "--format", "pylock.toml", "--no-header", "-o", str(lock)]
    inputs = [str(tmp_path / "in.txt")]
    args = (request, compile_cmd, inputs, tmp_path, tmp_path, tmp_path, lock)
    assert resolve._offline(*args) is None
    assert ran == []  # a cold cache: no uv started for nothing
    resolve._run_uv([*compile_cmd, *inputs], tmp_path, tmp_path, tmp_path)  # online
    lock.unlink()
    got = resolve._offline(*args)
    assert "--offline" in ran[-1]
    assert got is not None and [(p["name"], p["version"]) for p in got] == [("six", "1.16.0")]
