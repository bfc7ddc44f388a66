"""apt benchmark: a foreign platform's apt line, native (host apt, scripts under QEMU)
against wholly emulated (``--no-native-apt``), in one run.

On the python-slim bookworm base (built once, or taken from the tests' cache),
linux/arm64, the issue's line::

    RUN apt-get update && apt-get install -y --no-install-recommends gcc libpq-dev \\
        && rm -rf /var/lib/apt/lists/*

  (emulated) --no-native-apt: apt and dpkg under QEMU, no build cache
  (cold)     native, every cache empty (no .deb cache, no lists, no build cache)
  (warm)     native, the .debs and lists of (cold) kept, still no build cache
  (amd64)    the same line for linux/amd64 (the host's architecture): the floor

Each build then runs ``gcc --version`` and ``pg_config --version`` under QEMU.
Prints the apt step's seconds and the ratios emulated/cold, emulated/warm.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.helpers
sys.path.insert(0, str(ROOT / "src"))

from manyarch.baseimage.image import build_base  # noqa: E402
from manyarch.layout import Layout  # noqa: E402
from tests.helpers.base_fixture import SLIM_TAG, python_base_options, save_base  # noqa: E402

MANYARCH = str(ROOT / ".venv" / "bin" / "manyarch")
DOCKERFILE = """\
FROM {base}
RUN apt-get update && apt-get install -y --no-install-recommends {packages} \\
    && rm -rf /var/lib/apt/lists/*
RUN gcc --version | head -1 && pg_config --version
"""


def build(
    ctx: Path, work: Path, xdg: Path, data: Path, platform: str, *extra: str
) -> tuple[float, str]:
    """One build; returns the apt step's seconds and the whole plain progress."""
    env = dict(os.environ)
    env.update(
        MANYARCH_STORE=str(work / "store"),
        XDG_CACHE_HOME=str(xdg),
        XDG_DATA_HOME=str(data),
        MANYARCH_TMPDIR=str(work),
    )
    cmd = [MANYARCH, "build", "--progress", "plain", "--no-cache", "--platform", platform]
    t0 = time.monotonic()
    r = subprocess.run(
        [*cmd, *extra, str(ctx)], env=env, capture_output=True, text=True, check=False
    )
    if r.returncode != 0:
        sys.exit(f"build failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    out = r.stdout + r.stderr
    step = re.search(r"^#(\d+) \[[^\]]*\] RUN (apt-get update|true)", out, re.M)
    done = re.search(rf"^#{step.group(1)} DONE ([\d.]+)s", out, re.M) if step else None
    took = float(done.group(1)) if done else time.monotonic() - t0
    return took, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packages", default="gcc libpq-dev")
    ap.add_argument("--tmpdir", type=Path, default=Path("/var/tmp"))
    args = ap.parse_args()
    base_image = build_base(python_base_options(preset="python-slim"))
    with tempfile.TemporaryDirectory(prefix="manyarch-bench-apt-", dir=args.tmpdir) as t:
        tmp = Path(t)
        save_base(base_image, Layout.open(tmp / "base", create=True), SLIM_TAG)
        ctx = tmp / "ctx"
        ctx.mkdir()
        base = f"oci-layout://{tmp / 'base'}:{SLIM_TAG}"
        (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base, packages=args.packages))
        runs = {}
        xdg = tmp / "xdg"
        # The unpacked base (XDG_DATA_HOME) is shared and made first, by a build of
        # `RUN true`, so no apt step below pays for it. Each build has its own store.
        prime = tmp / "prime"
        prime.mkdir()
        (prime / "Dockerfile").write_text(f"FROM {base}\nRUN true\n")
        for platform in ("linux/arm64", "linux/amd64"):
            (tmp / "w0").mkdir(exist_ok=True)
            build(prime, tmp / "w0", tmp / "x0", tmp / "data", platform)
        for name, work, platform, extra in (
            ("emulated", tmp / "w3", "linux/arm64", ("--no-native-apt",)),
            ("cold", tmp / "w1", "linux/arm64", ()),
            ("warm", tmp / "w2", "linux/arm64", ()),
            ("amd64", tmp / "w4", "linux/amd64", ()),
        ):
            work.mkdir()
            cache = xdg if name != "emulated" else tmp / "x3"
            runs[name], out = build(ctx, work, cache, tmp / "data", platform, *extra)
            for line in re.findall(r"^#\d+ [\d.]+ ((?:native|emulated \(QEMU\)): .*)$", out, re.M):
                print(f"{'':>11}{line}")
            ver = re.search(r"PostgreSQL \d\S*", out)
            print(f"{name:>9}: {runs[name]:6.1f} s  ({platform}; {ver.group(0) if ver else '?'})")
        print(f"emulated/cold: {runs['emulated'] / runs['cold']:.1f}x")
        print(f"emulated/warm: {runs['emulated'] / runs['warm']:.1f}x")


if __name__ == "__main__":
    main()
