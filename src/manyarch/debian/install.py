"""dpkg installing into a rootfs of any architecture: files unpacked at native speed,
only the maintainer scripts and triggers run as the target (under QEMU when foreign).

``unpack`` runs the *host's* dpkg (``dpkg --root=ROOT --unpack``) in the host-tool
sandbox: decompressing and writing files, the database (status, ``info/*.list``,
``md5sums``, ``conffiles``, scripts, diversions, triggers) kept by dpkg itself.
dpkg chroots into ROOT for the preinst scripts, so those run as the target.
``configure`` then runs the *image's* dpkg inside the rootfs (``dpkg --configure
-a``): postinsts and triggers, with the image's own tools.

Some helpers that postinsts call do arch-independent work slowly under QEMU
(``update-ca-certificates`` spawns a few processes per certificate); a caller
may name them in ``stand_ins``: each is replaced by a no-op while dpkg runs and
put back byte for byte after, and the caller does their work on the host.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from manyarch.errors import BuildError
from manyarch.sandbox.bwrap import SandboxSpec, run
from manyarch.sandbox.host import run_host_tool

#: What dpkg's scripts see: no questions asked, dates from SOURCE_DATE_EPOCH when given.
SCRIPT_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN": "true",
    "LC_ALL": "C",
}


def _script_env(epoch: int | None) -> dict[str, str]:
    env = dict(SCRIPT_ENV)
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(epoch)
    return env


def _tail(out: bytes, lines: int = 12) -> str:
    return "\n".join(out.decode("utf-8", "replace").strip().splitlines()[-lines:])


def unpack(root: Path, debs: Sequence[Path], *, epoch: int | None = None) -> str:
    """Unpack ``debs`` into ``root`` with the host's dpkg (preinsts run as the target).

    Dependencies are not checked here (``--force-depends``): the image's dpkg
    checks them when it configures. Returns dpkg's output.
    """
    if not debs:
        return ""
    # --force-unsafe-io: no fsync per file, the rootfs becomes a layer (or is thrown away)
    argv = ["dpkg", f"--root={root}", "--force-depends,unsafe-io", "--unpack", *map(str, debs)]
    proc = run_host_tool(argv, env=_script_env(epoch), writable=[root])
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise BuildError(
            f"dpkg could not unpack the packages into {root}:\n{_tail(out)}",
            "run again with --debug to see dpkg's whole output",
        )
    return out.decode("utf-8", "replace")


@contextlib.contextmanager
def stand_ins(root: Path, programs: Sequence[str]) -> Iterator[list[str]]:
    """Replace ``programs`` (absolute paths in ``root``) by no-ops; put them back after.

    Yields the programs that were there (and were replaced).
    """
    replaced: list[tuple[Path, Path]] = []
    try:
        for prog in programs:
            path = root / prog.lstrip("/")
            if path.is_symlink() or not path.is_file():
                continue
            fd, name = tempfile.mkstemp(prefix=".manyarch-", dir=path.parent)
            os.close(fd)
            os.replace(path, name)
            replaced.append((path, Path(name)))
            path.write_text("#!/bin/sh\n# manyarch: done on the host after dpkg\nexit 0\n")
            path.chmod(0o755)
        yield ["/" + str(p.relative_to(root)) for p, _ in replaced]
    finally:
        for original, saved in replaced:
            os.replace(saved, original)


def configure(
    root: Path,
    *,
    epoch: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> str:
    """``dpkg --configure -a`` by the image's dpkg in the rootfs (no network).

    ``env``: the scripts' environment (default: :data:`SCRIPT_ENV` and the epoch).
    Returns dpkg's output; a failure is a :class:`BuildError` with its tail.
    """
    spec = SandboxSpec(
        rootfs=root,
        argv=["dpkg", "--configure", "-a"],
        env=dict(env) if env is not None else _script_env(epoch),
        network="none",
        resolv_conf=False,
        hostname="localhost",
    )
    proc = run(spec, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0:
        raise BuildError(
            f"dpkg --configure failed in {root} (exit {proc.returncode}):\n{_tail(proc.stdout)}",
            "a maintainer script failed; run again with --debug to see dpkg's whole output",
        )
    return proc.stdout.decode("utf-8", "replace")
