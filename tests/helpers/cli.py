"""``python -m manyarch`` in a child process, as a user's shell would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def manyarch(
    env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``manyarch ARGS...`` with ``env``; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "manyarch", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
