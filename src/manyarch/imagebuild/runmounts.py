"""``RUN --mount``: what a step's mounts become in its sandbox, as BuildKit mounts them.

- ``bind``: a path of the context (``.dockerignore`` applied, never leaving
  it), of a stage or of an image, read-only; ``rw`` mounts a copy, whose
  writes are discarded.
- ``cache``: a directory kept across builds (:mod:`.cachemounts`).
- ``tmpfs``: a fresh tmpfs (``size`` bytes at most).
- ``secret``: the ``--secret`` of that id as a read-only file (``mode``
  0400 and root's unless told) or an environment variable; a missing one is
  skipped unless ``required``.
- ``ssh``: the ``--ssh`` agent socket of that id, ``SSH_AUTH_SOCK`` naming it.

A RUN heredoc with a shebang is mounted here too, at ``/dev/pipes/<name>``.

What a mount holds is never in the step's layer: it covers the rootfs while
the step runs, its mount point is removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from manyarch import dockerfile as df
from manyarch.dockerfile.heredocs import PIPES
from manyarch.dockerfile.mounts import Mount
from manyarch.errors import BuildError
from manyarch.imagebuild.cachemounts import cache_dir
from manyarch.imagebuild.copying import copy_into, expand_sources
from manyarch.imagebuild.secrets import SecretSource
from manyarch.oci.platform import Platform
from manyarch.sandbox.bwrap import Bind, SandboxSpec
from manyarch.sandbox.rootpath import resolve_in_root

#: Where BuildKit puts an ssh mount without a target.
SSH_DIR = "/run/buildkit"


@dataclass
class RunMounts:
    """The mounts of one platform's RUN steps: where their sources are, the build's secrets."""

    work: Path
    platform: Platform
    context: Path
    ignore: df.DockerIgnore | None
    #: a stage's (``"stage:<i>"``) or an image's root file system
    root_of: Callable[[str], Path]
    secrets: Mapping[str, SecretSource] = field(default_factory=dict)
    ssh: Mapping[str, Path] = field(default_factory=dict)

    @contextlib.contextmanager
    def mounted(self, step: df.RunStep, spec: SandboxSpec) -> Iterator[SandboxSpec]:
        """``spec`` with ``step`` 's mounts while the block runs."""
        if not step.mounts and not step.files:
            yield spec
            return
        with contextlib.ExitStack() as stack:
            tmp = Path(tempfile.mkdtemp(prefix="mounts-", dir=self.work))
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
            binds, tmpfs, env = list(spec.binds), list(spec.tmpfs), dict(spec.env)
            for i, m in enumerate(step.mounts):
                if m.type == "tmpfs":
                    tmpfs.append((m.target, m.size))
                elif m.type == "cache":
                    path = stack.enter_context(cache_dir(m, self.platform, self._seed(m)))
                    binds.append(Bind(path, m.target, m.readonly))
                elif m.type == "bind":
                    binds.append(Bind(self._bind_source(m, tmp / f"bind{i}"), m.target, m.readonly))
                elif m.type == "secret":
                    binds.extend(self._secret(m, tmp / f"secret{i}", env))
                else:
                    binds.extend(self._ssh(m, i, env))
            for name, data in step.files:  # a heredoc with a shebang, run as a file
                path = tmp / "pipes" / name
                path.parent.mkdir(exist_ok=True)
                path.write_text(data)
                path.chmod(0o755)
                binds.append(Bind(path, f"{PIPES}/{name}"))
            yield replace(spec, binds=binds, tmpfs=tmpfs, env=env)

    def _seed(self, m: Mount) -> Callable[[], Path | None]:
        def seed() -> Path | None:
            if m.from_ is None:
                return None
            return resolve_in_root(self.root_of(m.from_), m.source or "/")

        return seed

    def _bind_source(self, m: Mount, copy: Path) -> Path:
        if m.from_ is None:
            # the context as BuildKit sends it: .dockerignore applied, nothing outside it
            step = df.CopyStep(0, "", (m.source or ".",), "/m")
            sources = expand_sources(self.context, step, self.ignore)
            copy.mkdir()
            if len(sources) == 1 and sources[0][0].is_dir():
                step = replace(step, dest="/m/")
            copy_into(step, sources, copy, epoch=None, ignore=self.ignore)
            return copy / "m"
        src = resolve_in_root(self.root_of(m.from_), m.source or "/")
        if not (src.exists() or src.is_symlink()):
            raise BuildError(f"RUN --mount: {m.source or '/'} not found in {m.from_}")
        if m.readonly:
            return src
        # rw: the step writes into a copy, thrown away after it (BuildKit's ForceNoOutput)
        subprocess.run(["cp", "-a", "--reflink=auto", str(src), str(copy)], check=True)
        return copy

    def _secret(self, m: Mount, path: Path, env: dict[str, str]) -> list[Bind]:
        source = self.secrets.get(m.id)
        value = source.read() if source is not None else None
        if value is None:
            if m.required:
                raise BuildError(
                    f"secret {m.id} not found",
                    f"pass it to the build: --secret id={m.id},src=FILE (or env=VAR)",
                )
            return []
        if m.env is not None:
            env[m.env] = value.decode(errors="surrogateescape")
        if not m.target:
            return []
        path.parent.chmod(0o755)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(value)
        os.chown(path, m.uid or 0, m.gid or 0)
        os.chmod(path, m.mode if m.mode is not None else 0o400)
        return [Bind(path, m.target)]

    def _ssh(self, m: Mount, i: int, env: dict[str, str]) -> list[Bind]:
        sock = self.ssh.get(m.id)
        if sock is None or not sock.is_socket():
            if m.required:
                raise BuildError(
                    f"no SSH key {m.id!r} forwarded", f"pass it to the build: --ssh {m.id}"
                )
            return []
        target = m.target or f"{SSH_DIR}/ssh_agent.{i}"
        env.setdefault("SSH_AUTH_SOCK", target)
        return [Bind(sock, target, readonly=False)]
