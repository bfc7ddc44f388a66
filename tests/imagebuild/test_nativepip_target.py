"""The target's facts read from the image's files (nativepip.target)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from manyarch.imagebuild.nativepip import target


def test_sysconfig_is_parsed_one_thread_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two platforms' steps read their _sysconfigdata at once; CPython 3.11's ast.parse is
    # not safe in two threads (a build failed: "AST constructor recursion depth mismatch")
    stdlib = tmp_path / "python3.11"
    stdlib.mkdir()
    (stdlib / "_sysconfigdata__linux_aarch64-linux-gnu.py").write_text(
        "build_time_vars = {'MULTIARCH': 'aarch64-linux-gnu'}\n"
    )
    inside, most = [0], [0]
    parse = target.ast.parse

    def slow_parse(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            return parse(*args, **kwargs)  # pytest's own (a failure's source)
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.05)  # another thread would come in here
        try:
            return parse(*args, **kwargs)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(target.ast, "parse", slow_parse)
    got: list[object] = []
    threads = [
        threading.Thread(target=lambda: got.append(target._sysconfig_vars(stdlib)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [{"MULTIARCH": "aarch64-linux-gnu"}] * 4
    assert most[0] == 1
