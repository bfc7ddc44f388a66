"""Corpus benchmark: real-world-shaped Python Dockerfiles, manyarch against buildah.

Each directory of bench/corpus/ is a build context whose Dockerfile follows
a public project's (its first line says which). Every case is built for
linux/amd64 + linux/arm64 and pushed to one loopback registry (Debian's
docker-registry), by manyarch (``--no-cache``: no build cache; the download
caches and the store are shared by the cases, as buildah's storage is) and by
``buildah build --isolation chroot`` + ``buildah manifest push --all``, from
the same bases: the ``--preset python`` base, for a C-extension case the
same base with gcc and python3-dev (``BUILD_IMAGE``), and for an apt line the
``--preset python-slim`` base (``SLIM_IMAGE``).

Prints per case: both times, the ratio, how many RUN lines ran natively and
how many under emulation (both platforms counted), and the reason of every
emulated line of a foreign platform; then the median ratio.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.helpers
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from build import buildah_env, install_step_seconds, manyarch_env, timed  # noqa: E402

from manyarch.baseimage.image import build_base  # noqa: E402
from manyarch.layout import Layout  # noqa: E402
from tests.helpers.base_fixture import BASE_TAG, python_base_options, save_base  # noqa: E402
from tests.helpers.registry_server import start_registry  # noqa: E402

MANYARCH = [str(ROOT / ".venv" / "bin" / "manyarch")]
PLATFORMS = "linux/amd64,linux/arm64"
CA = "/etc/ssl/certs/ca-certificates.crt"
BUILD_PACKAGES = ("gcc", "libc6-dev", "python3-dev")


def count_lines(text: str) -> tuple[int, int, list[str]]:
    """RUN lines that ran natively, under emulation, and the emulated ones' reasons."""
    native = len(re.findall(r"^#\d+ [\d.]+ native: ", text, re.M))
    reasons = re.findall(r"^#\d+ [\d.]+ emulated \(QEMU\): (.*)$", text, re.M)
    return native, len(reasons), reasons


def push_base(work: Path, reg: str, name: str, **overrides: object) -> str:
    """Build (or take from the tests' cache) a base and push it; its reference."""
    base = build_base(python_base_options(**overrides))
    layout = work / f"base-{name}"
    save_base(base, Layout.open(layout, create=True), BASE_TAG)
    ref = f"{reg}/{name}:bookworm"
    subprocess.run(
        ["skopeo", "copy", "--all", "--dest-tls-verify=false", "-q",
         f"oci:{layout}:{BASE_TAG}", f"docker://{ref}"],
        check=True,
    )  # fmt: skip
    return ref


def cross_vs_qemu(
    case: Path, bargs: list[str], reg: str, env: dict[str, str], log: Path, mark: int
) -> None:
    """The C-extension install step for arm64: cross-built (the run just done) vs under QEMU."""
    cross = install_step_seconds(log, mark).get("linux/arm64")
    mark = log.stat().st_size
    timed(
        [*MANYARCH, "build", str(case), "--platform", "linux/arm64", *bargs, "--no-native-pip",
         "--no-cache", "-t", f"{reg}/{case.name}:qemu", "--progress", "plain"],
        env, log,
    )  # fmt: skip
    qemu = install_step_seconds(log, mark).get("linux/arm64")
    if cross and qemu:
        print(f"  {case.name}: arm64 install step cross-built {cross:.1f} s, "
              f"compiled under QEMU {qemu:.1f} s: {qemu / cross:.1f}x", flush=True)  # fmt: skip


def main() -> int:
    """Build every case both ways and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cases", nargs="*", help="case directories (default: all)")
    ap.add_argument("--skip-buildah", action="store_true")
    ap.add_argument("--tmpdir", default="/var/tmp")
    args = ap.parse_args()
    corpus = ROOT / "bench" / "corpus"
    cases = [corpus / c for c in args.cases] or sorted(p for p in corpus.iterdir() if p.is_dir())
    work = Path(tempfile.mkdtemp(prefix="manyarch-bench-corpus-", dir=args.tmpdir))
    log = work / "bench.log"
    print(f"work dir {work} (log: {log})", flush=True)
    (work / "registry").mkdir()
    server = start_registry(work / "registry")
    reg = server.host
    rows = []
    try:
        env = manyarch_env(work)
        python_ref = push_base(work, reg, "python")
        build_ref = push_base(work, reg, "python-build", include=BUILD_PACKAGES)
        slim_ref = push_base(work, reg, "python-slim", preset="python-slim")
        bargs = ["--build-arg", f"PYTHON_IMAGE={python_ref}", "--build-arg",
                 f"BUILD_IMAGE={build_ref}", "--build-arg", f"SLIM_IMAGE={slim_ref}"]  # fmt: skip
        benv = buildah_env(work, reg) if not args.skip_buildah else {}
        ca = ["--volume", f"{CA}:{CA}:ro"] if Path(CA).exists() else []
        for case in cases:
            name = case.name
            mark = log.stat().st_size if log.exists() else 0
            m = timed(
                [*MANYARCH, "build", str(case), "--platform", PLATFORMS, *bargs, "--push",
                 "-t", f"{reg}/{name}:manyarch", "--progress", "plain", "--no-cache",
                 "--insecure-registry", reg],
                env, log,
            )  # fmt: skip
            text = log.read_bytes()[mark:].decode(errors="replace")
            native, emulated, reasons = count_lines(text)
            if "c-extension" in name:
                cross_vs_qemu(case, bargs, reg, env, log, mark)
            b = None
            if not args.skip_buildah:
                t0 = time.monotonic()
                try:
                    timed(
                        [
                            "buildah",
                            "build",
                            "--isolation",
                            "chroot",
                            "--platform",
                            PLATFORMS,
                            "--manifest",
                            f"{name}-b",
                            *bargs,
                            *ca,
                            str(case),
                        ],
                        benv,
                        log,
                    )
                    timed(
                        [
                            "buildah",
                            "manifest",
                            "push",
                            "--all",
                            "--tls-verify=false",
                            f"{name}-b",
                            f"docker://{reg}/{name}:buildah",
                        ],
                        benv,
                        log,
                    )
                    b = time.monotonic() - t0
                except SystemExit as e:  # buildah failed: say so, go on with the next case
                    print(f"{name}: buildah failed ({e})", flush=True)  # fmt: skip
            rows.append((name, m, b, native, emulated, reasons))
            ratio = f"{b / m:5.1f}x" if b else "  -  "
            print(f"{name:<26} manyarch {m:6.1f} s  buildah {b or 0:6.1f} s  {ratio}  "
                  f"RUN native {native:2d} emulated {emulated:2d}", flush=True)  # fmt: skip
    finally:
        server.stop()
    print()
    for name, _, _, _, _, reasons in rows:
        for r in reasons:
            print(f"  {name}: emulated (QEMU): {r}")
    ratios = [b / m for _, m, b, _, _, _ in rows if b]
    if ratios:
        median = statistics.median(ratios)
        print(f"\nmedian buildah/manyarch = {median:.1f}x over {len(ratios)} cases")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
