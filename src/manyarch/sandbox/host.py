"""Host tools in a sandbox: the host's own system, read-only, and only the directories given.

Resolvers, build backends, compilers and byte-compilers that read an image's
files (or a build context's) are untrusted input's first readers: they run
here, on the host architecture at native speed, in a bubblewrap sandbox
(:mod:`manyarch.sandbox.bwrap`, so its hardening applies) whose root is an
empty directory with the host's system directories and this Python bound
read-only, plus the directories the caller names, never the whole host.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from manyarch.sandbox.bwrap import Bind, SandboxSpec, run

#: The host's system, read-only: programs, libraries, compilers, the CA bundles.
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
_ETC = (
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/localtime",
)


def _python_dirs() -> list[str]:
    """This interpreter, its virtual environment and manyarch's own source (an editable install)."""
    here = Path(__file__).resolve().parents[2]  # the directory holding the manyarch package
    dirs = {sys.base_prefix, sys.prefix, str(here)}
    return sorted(d for d in dirs if not d.startswith(_SYSTEM))


def host_binds(readonly: Sequence[Path] = (), writable: Sequence[Path] = ()) -> list[Bind]:
    """The host's system read-only, then ``readonly`` and ``writable`` at their own paths."""
    binds = [Bind(Path(p), p) for p in (*_SYSTEM, *_ETC, *_python_dirs()) if Path(p).exists()]
    binds += [Bind(p, str(p)) for p in readonly]
    binds += [Bind(p, str(p), readonly=False) for p in writable]
    return binds


def run_host_tool(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    readonly: Sequence[Path] = (),
    writable: Sequence[Path] = (),
    mounts: Sequence[Bind] = (),
    cwd: str = "/",
    network: bool = False,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a host program sandboxed; stdout and stderr are captured.

    The sandbox sees the host's system read-only, ``readonly`` and
    ``writable`` (host paths, mounted at the same paths) and nothing else of
    the host; a fresh /tmp, no network unless ``network`` (then the host's, for
    a resolver's downloads). ``mounts`` are mounted last, where they say
    (over the host's own directories: an image's directory at its own path).
    """
    scratch = Path(tempfile.mkdtemp(prefix="manyarch-host-"))
    try:
        spec = SandboxSpec(
            rootfs=scratch,
            argv=list(argv),
            env={"HOME": "/tmp", **env},
            cwd=cwd,
            network="host" if network else "none",
            binds=[*host_binds(readonly, writable), *mounts],
            hostname="manyarch-host",
        )
        return run(spec, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
