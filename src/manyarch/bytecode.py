"""Bytecode for an image's Python, compiled by a host interpreter, reproducibly.

Bytecode does not depend on the CPU: a host interpreter with the target's
bytecode magic number compiles for every architecture, without emulation.
The pycs are hash-checked (PEP 552), so they stay valid when a layer clamps
mtimes; a fixed hash seed (sets of constants are marshalled in hash order)
and a process per batch keep them byte-for-byte reproducible. Without such a
host interpreter nothing is compiled and Python compiles at first import.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


def bytecode_magic(lib: Path) -> int | None:
    """The magic number of the Python whose standard library is ``lib``, from its source."""
    ext = lib / "importlib/_bootstrap_external.py"
    if not ext.is_file():
        return None
    m = re.search(r"^MAGIC_NUMBER = \((\d+)\)\.to_bytes", ext.read_text("utf-8", "replace"), re.M)
    return int(m.group(1)) if m else None


@functools.cache  # asked for every pip line and base: the host does not change meanwhile
def host_python(version: str, magic: int) -> str | None:
    """A host interpreter (ours, else ``version`` on PATH) whose bytecode has ``magic``."""
    probe = "import importlib.util as u; print(int.from_bytes(u.MAGIC_NUMBER[:2], 'little'))"
    for candidate in dict.fromkeys(filter(None, (sys.executable, shutil.which(version)))):
        proc = subprocess.run(
            [candidate, "-I", "-c", probe], capture_output=True, text=True, check=False
        )
        if proc.returncode == 0 and proc.stdout.strip() == str(magic):
            return candidate
    return None


@functools.cache  # asked for every native pip line: the host does not change meanwhile
def exact_python(version: str, magic: int) -> tuple[str, str] | None:
    """A host interpreter of ``version`` (X.Y.Z) if there is one, else one of ``magic``.

    Returns ``(path, its X.Y.Z)``. The compiler changes between micro
    versions (a few code objects differ): the image's own version gives the
    pycs its pip would write (Debian's python3.11 on a Debian host is the
    same build as a Debian image's).
    """
    xy = ".".join(version.split(".")[:2])
    probe = (
        "import importlib.util as u, platform; "
        "print(int.from_bytes(u.MAGIC_NUMBER[:2], 'little'), platform.python_version())"
    )
    candidates = [f"/usr/bin/python{xy}", f"/usr/local/bin/python{xy}", shutil.which(f"python{xy}")]
    candidates.append(sys.executable)
    same_magic: tuple[str, str] | None = None
    for c in dict.fromkeys(filter(None, candidates)):
        if not os.access(c, os.X_OK):
            continue
        proc = subprocess.run([c, "-I", "-c", probe], capture_output=True, text=True, check=False)
        got = proc.stdout.split()
        if proc.returncode != 0 or len(got) != 2 or got[0] != str(magic):
            continue
        if got[1] == version:
            return c, got[1]
        same_magic = same_magic or (c, got[1])
    return same_magic


def compile_argv(interp: str, root: Path, listing: Path, jobs: int = 1) -> list[str]:
    """compileall's command line for the modules listed in ``listing`` (host paths in ``root``).

    ``jobs`` worker processes: each module is compiled alone whatever their
    number, so the pycs are the same bytes.
    """
    cmd = [interp, "-I", "-m", "compileall", "-q", "-j", str(jobs)]
    cmd += ["--invalidation-mode", "checked-hash", "-s", str(root), "-p", "/"]
    return [*cmd, "-i", str(listing)]


def compile_tree(
    interp: str, root: Path, paths: Sequence[Path]
) -> subprocess.CompletedProcess[str]:
    """Compile the modules in ``paths`` (files or directories inside ``root``).

    Each pyc records the module's path as the image sees it (``root`` stripped).
    A file that does not compile (test data for another Python) is left as it is.
    """
    # Sets of constants are marshalled in hash order: the seed must be fixed.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    with tempfile.NamedTemporaryFile("w", suffix=".list") as listing:
        listing.write("".join(f"{p}\n" for p in paths))
        listing.flush()
        cmd = compile_argv(interp, root, Path(listing.name))
        return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
