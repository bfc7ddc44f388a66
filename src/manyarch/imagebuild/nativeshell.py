"""The executor's hook for a foreign platform's ``RUN mkdir -p DIR...``: done on the host.

A RUN that only makes directories (``mkdir -p /app/static``, the line many Python
Dockerfiles have after ``COPY . .``) needs no emulation: under QEMU it costs the
whole rootfs unpacked and an emulated ``sh`` and ``mkdir``. Here the directories are
made in a partial tree of the paths on the way (or in the rootfs when the stage
has one) as ``mkdir -p`` makes them: with the process's umask (the sandbox's own),
parents ``u+wx`` on top, owned by root, the time of the step (clamped in the layer
as any RUN's). Anything else (another command or option, a non-root ``USER``, a
mount, a link or a file on the way, an image without ``/bin/sh`` or ``mkdir``) is
left to the executor, which runs it as before.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any

from manyarch import dockerfile as df
from manyarch.imagebuild.nativepip.command import Fallback, run_words
from manyarch.imagebuild.nativepip.place import process_umask
from manyarch.imagebuild.nativepip.target import DEFAULT_PATH
from manyarch.imagebuild.options import RAN, Ran, StepContext
from manyarch.sandbox import emulation
from manyarch.sandbox.rootpath import resolve_in_root

_ROOT = ("", "root", "0", "0:0", "root:root")
_GLOB = set("*?[")


def mkdir_targets(ctx: StepContext) -> list[str] | None:
    """The image paths of a ``mkdir -p`` line (``&&``-joined ones too), else None."""
    step, spec = ctx.step, ctx.sandbox
    if not isinstance(step, df.RunStep) or spec is None or step.mounts or step.files:
        return None
    if spec.user not in _ROOT:
        return None
    env = {"HOME": "/root", **spec.env}
    parts = run_words(step.argv, step.shell_form, env)
    if isinstance(parts, Fallback) or not parts:
        return None
    out: list[str] = []
    for words in parts:
        texts = [w.text for w in words]
        if texts[:1] != ["mkdir"] or any(w.glob for w in words):
            return None
        flags = [t for t in texts[1:] if t.startswith("-")]
        paths = [t for t in texts[1:] if not t.startswith("-")]
        if set(flags) not in ({"-p"}, {"--parents"}) or not paths:
            return None
        for p in paths:
            full = posixpath.normpath(posixpath.join(spec.cwd, p))
            if full == "/" or ".." in full.split("/") or _GLOB & set(full):
                return None
            out.append(full)
    return out


def _present(rootfs: Path, path: str) -> bool:
    """Whether the image has an entry at ``path`` (its last component not followed: the
    partial tree holds a link, not always what it points to)."""
    parent = resolve_in_root(rootfs, posixpath.dirname(path))
    return os.path.lexists(parent / posixpath.basename(path))


def make_dirs(rootfs: Path, targets: list[str]) -> bool:
    """``mkdir -p`` of ``targets`` in ``rootfs``; False (nothing made) when a link or a
    non-directory stands on the way, where the emulated ``mkdir`` follows or fails."""
    for t in targets:
        p = rootfs
        for part in t.strip("/").split("/"):
            p = p / part
            if p.is_symlink() or (p.exists() and not p.is_dir()):
                return False
    umask = process_umask()
    parent_mode = (0o777 & ~(0o022 if umask is None else umask)) | 0o300
    for t in targets:
        p = rootfs
        parts = t.strip("/").split("/")
        for i, part in enumerate(parts):
            p = p / part
            if not p.exists():
                p.mkdir(0o777)  # the umask applies, as in the sandbox
                if i < len(parts) - 1:
                    os.chmod(p, parent_mode)
    return True


class NativeMkdirInterceptor:
    """The executor's interceptor: a foreign platform's ``mkdir -p`` line on the host."""

    def __init__(self) -> None:
        self.native = 0

    def __call__(self, ctx: StepContext) -> Ran | None:
        """Make the directories and return :data:`RAN`, or None (the executor runs the line)."""
        if emulation.runs_natively(ctx.platform):
            return None
        targets = mkdir_targets(ctx)
        if targets is None:
            return None
        assert ctx.sandbox is not None
        path = ctx.sandbox.env.get("PATH", DEFAULT_PATH)
        tools = ["bin/sh", "usr/bin/sh", *(f"{d.strip('/')}/mkdir" for d in path.split(":") if d)]
        rootfs = (
            ctx.open_partial([*tools, *(t.strip("/") for t in targets)])
            if ctx.open_partial is not None
            else ctx.rootfs
        )
        if not _present(rootfs, "/bin/sh") or not any(
            _present(rootfs, f"{d}/mkdir") for d in path.split(":") if d.startswith("/")
        ):
            return None  # the emulated line would fail: let it
        if not make_dirs(rootfs, targets):
            return None
        self.native += 1
        ctx.log(f"native: mkdir -p {' '.join(targets)} for {ctx.platform} on the host")
        return RAN


def native_interceptors(cache_dir: Path, *, apt: bool, pip: bool) -> list[Any]:
    """A build's interceptors for a foreign platform's lines done on the host, in order:
    ``mkdir -p`` (with native pip: it needs no emulation either), apt, then pip."""
    from manyarch.imagebuild.nativeapt.interceptor import NativeAptInterceptor
    from manyarch.imagebuild.nativepip.interceptor import NativePipInterceptor

    out: list[Any] = [NativeMkdirInterceptor()] if pip else []
    if apt:
        out.append(NativeAptInterceptor(cache_dir))
    if pip:
        out.append(NativePipInterceptor(cache_dir))
    return out
