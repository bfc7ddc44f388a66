import os
from pathlib import Path

import pytest

from manyarch.errors import SandboxError
from manyarch.sandbox.rootpath import resolve_in_root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "usr/bin").mkdir(parents=True)
    (r / "usr/bin/python3.11").write_text("")
    os.symlink("python3.11", r / "usr/bin/python3")
    os.symlink("usr/bin", r / "bin")
    os.symlink("/usr/bin", r / "abs")
    os.symlink("../../../../../etc", r / "usr/escape")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    return r


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("/bin/python3", "usr/bin/python3.11"),
        ("/abs/python3", "usr/bin/python3.11"),
        ("/usr/bin/../bin/./python3", "usr/bin/python3.11"),
        ("/../../usr/bin/python3", "usr/bin/python3.11"),
        ("/usr/escape/passwd", "etc/passwd"),  # never the host's /etc
        ("/missing/x", "missing/x"),
    ],
)
def test_resolves_inside_the_root(root: Path, path: str, want: str) -> None:
    assert resolve_in_root(root, path) == root / want


def test_symlink_loop(root: Path) -> None:
    with pytest.raises(SandboxError, match="too many levels"):
        resolve_in_root(root, "/loop1/x")
