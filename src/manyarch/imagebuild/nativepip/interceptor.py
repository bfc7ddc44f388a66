"""The executor's hook: a foreign platform's Python install line done on the host.

Every RUN line of a foreign platform gets one progress line saying how it
runs: ``native: ...`` (what was installed, by which python) or
``emulated (QEMU): <why>``.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from manyarch import dockerfile as df
from manyarch.imagebuild.nativepip.command import (
    Fallback,
    NativePip,
    NativePipUnavailable,
    NeedsPaths,
    plan_run,
)
from manyarch.imagebuild.nativepip.install import READ_ALWAYS, Outcome, install, paths_read
from manyarch.imagebuild.options import RAN, Ran, StepContext
from manyarch.sandbox import emulation
from manyarch.sandbox.users import resolve_user

#: What a native install writes, in the build cache's keys: bump it when that
#: changes (2: modules byte-compiled; 3: pip's RECORD, scripts and install order,
#: uv's resolution), so no older result is reused.
OUTPUT_VERSION = 3


def mounts_fallback(mounts: tuple[df.Mount, ...]) -> str | None:
    """Why a line's ``--mount`` s keep it in the sandbox, or None: a cache (or tmpfs) of
    a tool's cache is left out natively, as what it holds is never in the image."""
    for m in mounts:
        if m.type not in ("cache", "tmpfs"):
            return f"RUN --mount=type={m.type} needs the sandbox"
        parts = m.target.split("/")
        if not (m.target == "/tmp" or m.target.startswith("/tmp/")) and not any(
            "cache" in p.lower() for p in parts
        ):
            return f"a {m.type} mount on {m.target}, where the install may write"
    return None


class NativePipInterceptor:
    """The executor's interceptor: a Python install line done on the host, else None."""

    #: what every partial tree of a native install reads (the executor keeps those
    #: members' bytes when it first lists a layer, so the blob is not read twice)
    prefetch = READ_ALWAYS

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self.native = 0
        self.emulated = 0
        self.fallbacks: list[str] = []

    def __call__(self, ctx: StepContext) -> Ran | None:
        """Install natively and return :data:`RAN`, or None (the executor emulates)."""
        step = ctx.step
        if not isinstance(step, df.RunStep) or ctx.sandbox is None:
            return None
        host = emulation.runs_natively(ctx.platform)
        spec = ctx.sandbox
        env = {"HOME": "/root", **spec.env}
        plan = plan_run(step.argv, step.shell_form, env, spec.cwd)
        if isinstance(plan, NativePip):
            if spec.user not in ("", "root", "0", "0:0", "root:root"):
                plan = Fallback(f"runs as user {spec.user}")
            elif spec.network == "none":
                plan = Fallback("the network is off")
            elif (why := mounts_fallback(step.mounts)) is not None:
                plan = Fallback(why)
        if isinstance(plan, Fallback):
            if host:
                ctx.log(f"native: the host's architecture ({plan.reason})")
                return None
            return self._fallback(ctx, plan.reason)
        try:
            done = self._install(ctx, plan, env)
        except NativePipUnavailable as e:
            if host:
                ctx.log(f"native: the host's architecture, the line's own tools ({e.message})")
                return None
            return self._fallback(ctx, e.message)
        self.native += 1
        dists = [d for d in done.installed if "==" in d]
        tools = [d for d in done.installed if "==" not in d]
        saved = ""
        if done.saved:
            where = ", ".join(dict.fromkeys(done.wheel_dirs))
            saved = f"{len(done.saved)} wheels for {ctx.platform} saved into {where}"
        if tools:  # venv and uv lines: the real tool, in the host's twin of the image's python
            more = f" and {len(dists)} distributions" if dists else ""
            more += f" ({saved})" if saved else ""
            ctx.log(f"native: {', '.join(tools)}{more} for {ctx.platform} by the real tool "
                    f"on the host's twin of the image's python {done.python}")  # fmt: skip
        elif saved and not dists:
            ctx.log(f"native: {saved} (python {done.python}) from the host, as the image's "
                    "pip wheel would")  # fmt: skip
        else:
            more = f", and {saved}" if saved else ""
            ctx.log(
                f"native: {len(dists)} distributions for {ctx.platform} "
                f"(python {done.python}) installed from the host, as the image's pip would{more}"
            )
        return RAN

    def _install(self, ctx: StepContext, plan: NativePip, env: dict[str, str]) -> Outcome:
        """``plan`` installed in a partial tree of what it reads (one more try with the paths
        it found missing), else in the rootfs."""
        extra: tuple[str, ...] = ()
        while True:
            scratch = ctx.open_partial is not None
            rootfs = (
                ctx.open_partial([*paths_read(plan, env), *extra])
                if ctx.open_partial is not None
                else ctx.rootfs
            )
            user = ctx.sandbox.user if ctx.sandbox is not None else ""
            home = resolve_user(rootfs, user).home if user else "/root"
            cwd = ctx.sandbox.cwd if ctx.sandbox is not None else "/"
            cached = [
                posixpath.normpath(posixpath.join(cwd, m.target))
                for m in (ctx.step.mounts if isinstance(ctx.step, df.RunStep) else ())
                if m.type in ("cache", "tmpfs")
            ]
            try:
                return install(
                    plan,
                    rootfs,
                    cache_dir=self.cache_dir,
                    home=home,
                    scratch=scratch,
                    cache_mounts=cached,
                )
            except NeedsPaths as e:
                if not scratch or extra:
                    raise
                extra = e.patterns

    def _fallback(self, ctx: StepContext, reason: str) -> Ran | None:
        self.emulated += 1
        self.fallbacks.append(reason)
        ctx.log(f"emulated (QEMU): {reason}")
        return None
