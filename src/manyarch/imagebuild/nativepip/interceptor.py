"""The executor's hook: a foreign platform's ``RUN pip install`` done on the host."""

from __future__ import annotations

from pathlib import Path

from manyarch import dockerfile as df
from manyarch.imagebuild.nativepip.command import (
    Fallback,
    NativePip,
    NativePipUnavailable,
    plan_run,
)
from manyarch.imagebuild.nativepip.install import install
from manyarch.imagebuild.nativepip.target import TargetFacts, interpreter_path, target_facts
from manyarch.imagebuild.options import RAN, Ran, StepContext

#: What a native install writes, in the build cache's keys: bump it when that
#: changes (2: modules byte-compiled), so no older result is reused.
OUTPUT_VERSION = 2


class NativePipInterceptor:
    """The executor's interceptor: a ``RUN pip install`` done on the host, else None."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self.native = 0
        self.fallbacks: list[str] = []

    def __call__(self, ctx: StepContext) -> Ran | None:
        """Install natively and return :data:`RAN`, or None (the executor emulates)."""
        step = ctx.step
        if not isinstance(step, df.RunStep) or ctx.sandbox is None:
            return None
        if "pip" not in step.command_text and "pip" not in " ".join(step.argv):
            return None  # not a pip line: nothing to say
        spec = ctx.sandbox
        plan = plan_run(step.argv, step.shell_form, spec.env, spec.cwd)
        if isinstance(plan, NativePip):
            if spec.user not in ("", "root", "0", "0:0", "root:root"):
                plan = Fallback(f"runs as user {spec.user}")
            elif spec.network == "none":
                plan = Fallback("the network is off")
        if isinstance(plan, Fallback):
            return self._fallback(ctx, plan.reason)
        path = spec.env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        base_key = str(ctx.layers[0].digest) if ctx.layers else ""
        try:
            facts_by_python: dict[str, TargetFacts] = {}
            for cmd in plan.commands:
                interp = interpreter_path(ctx.rootfs, cmd.python, path)
                if interp is None:
                    return self._fallback(ctx, f"cannot tell which python {cmd.python} runs")
                if interp not in facts_by_python:
                    facts_by_python[interp] = target_facts(
                        ctx.rootfs, interp, base_key=base_key, cache_dir=self.cache_dir
                    )
            if len(facts_by_python) != 1:
                return self._fallback(ctx, "more than one python")
            facts = next(iter(facts_by_python.values()))
            done = install(
                plan, ctx.rootfs, facts, cache_dir=self.cache_dir, epoch=ctx.options.epoch
            )
        except NativePipUnavailable as e:
            return self._fallback(ctx, e.message)
        self.native += 1
        ctx.log(
            f"native pip: {len(done)} distributions for {ctx.platform} "
            f"(python {facts.python_version}) installed from the host"
        )
        return RAN

    def _fallback(self, ctx: StepContext, reason: str) -> Ran | None:
        self.fallbacks.append(reason)
        ctx.log(f"native pip: not used ({reason}); running it under emulation")
        return None
