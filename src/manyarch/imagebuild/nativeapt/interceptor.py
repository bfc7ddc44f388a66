"""The executor's hook: a foreign platform's apt line resolved, fetched and unpacked
on the host; every other RUN line of a foreign platform is left to QEMU, and the
progress says why."""

from __future__ import annotations

from pathlib import Path

from manyarch import dockerfile as df
from manyarch.debian.archs import debian_arch
from manyarch.errors import InvalidInput
from manyarch.imagebuild.nativeapt.apt import check_config, run_line
from manyarch.imagebuild.nativeapt.command import NativeApt, plan_apt
from manyarch.imagebuild.nativepip.command import NativePipUnavailable
from manyarch.imagebuild.options import RAN, Ran, StepContext
from manyarch.sandbox import emulation

#: What a native apt line writes, in the build cache's keys: bump it when that changes.
OUTPUT_VERSION = 1


class NativeAptInterceptor:
    """The executor's interceptor: an apt line done on the host, else None."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self.native = 0
        self.fallbacks: list[str] = []

    def __call__(self, ctx: StepContext) -> Ran | None:
        """Install natively and return :data:`RAN`, or None (the next hook, or QEMU)."""
        step = ctx.step
        if not isinstance(step, df.RunStep) or ctx.sandbox is None:
            return None
        if emulation.runs_natively(ctx.platform):
            return None
        spec = ctx.sandbox
        plan = plan_apt(step.argv, step.shell_form, spec.env)
        if not isinstance(plan, NativeApt):
            return None  # not an apt line: native pip or QEMU say what they do with it
        why = self._refused(ctx)
        if why is None:
            why = check_config(ctx.rootfs)
        if why is not None:
            return self._fallback(ctx, why)
        try:
            arch = debian_arch(ctx.platform)
            run_line(plan, ctx.rootfs, arch, self.cache_dir, spec.env, ctx.log)
        except (NativePipUnavailable, InvalidInput) as e:
            return self._fallback(ctx, e.message)
        self.native += 1
        return RAN

    @staticmethod
    def _refused(ctx: StepContext) -> str | None:
        spec = ctx.sandbox
        assert spec is not None
        if spec.user not in ("", "root", "0", "0:0", "root:root"):
            return f"runs as user {spec.user}"
        if spec.network == "none":
            return "the network is off"
        if not emulation.can_run(ctx.platform):
            return f"no emulation for {ctx.platform}'s maintainer scripts"
        return None

    def _fallback(self, ctx: StepContext, reason: str) -> Ran | None:
        self.fallbacks.append(reason)
        ctx.log(f"emulated (QEMU): apt line: {reason}")
        return None
