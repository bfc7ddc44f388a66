"""Build benchmark: manyarch (native installs, emulated pip, rebuilds) against buildah.

On the demo app (Dockerfile.fastapi, requirements.txt, app/), linux/amd64 +
linux/arm64, pushed to a fresh loopback registry (Debian's docker-registry),
all in one run:

  (cold) manyarch, every cache empty: no wheel/uv/pyc cache, no build cache,
         no store, no unpacked base
  (warm) manyarch, the download caches warm (wheels, uv's index pages, pycs),
         still no build cache, no store, no unpacked base
  (b) manyarch --no-native-pip --no-cache (pip under QEMU, as buildx does)
  (c) manyarch rebuild after editing only app/ (bytes the registry received)
  (d) buildah build --isolation chroot --platform ... --manifest, manifest push --all
  (e) app copied before requirements (pip re-runs): manyarch and buildah rebuilds

The base (Debian bookworm python3 + pip, both platforms) is pushed to the
registry first; every build pulls it from there. Prints each time, the
native install step's time per platform (cold and warm), and the ratios
d/cold, d/warm, b/warm, e(buildah)/e(manyarch).
"""

from __future__ import annotations

import argparse
import os
import shutil
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
from tests.helpers.base_fixture import BASE_TAG, python_base_options, save_base  # noqa: E402
from tests.helpers.registry_server import start_registry  # noqa: E402

MANYARCH = [str(ROOT / ".venv" / "bin" / "manyarch")]
PLATFORMS = "linux/amd64,linux/arm64"
CA = "/etc/ssl/certs/ca-certificates.crt"


def du(path: Path) -> int:
    """Bytes of the regular files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def timed(cmd: list[str], env: dict[str, str], log: Path) -> float:
    """Run ``cmd``; its output goes to ``log``; returns the wall-clock seconds."""
    t0 = time.monotonic()
    with log.open("ab") as f:
        f.write(f"\n$ {' '.join(cmd)}\n".encode())
        f.flush()
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=False)
    took = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}; see {log}")
    return took


def manyarch_env(work: Path) -> dict[str, str]:
    """manyarch's store, caches, unpacked trees and scratch space, all under ``work``."""
    env = dict(os.environ)
    env.update(
        MANYARCH_STORE=str(work / "store"),
        XDG_CACHE_HOME=str(work / "xdg"),
        XDG_DATA_HOME=str(work / "data"),
        MANYARCH_TMPDIR=str(work),
    )
    return env


def install_step_seconds(log: Path, since: int) -> dict[str, float]:
    """The pip RUN step's seconds per platform, from the plain progress after byte ``since``."""
    import re

    text = log.read_bytes()[since:].decode(errors="replace")
    steps: dict[str, str] = {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"#(\d+) \[(linux/\w+) \d+/\d+\] RUN .*pip install", line)
        if m:
            steps[m.group(1)] = m.group(2)
        m = re.match(r"#(\d+) DONE ([\d.]+)s", line)
        if m and m.group(1) in steps:
            out[steps[m.group(1)]] = float(m.group(2))
    return out


def make_context(dest: Path, app_first: bool) -> Path:
    """The demo's context; ``app_first`` moves ``COPY app/`` before the pip install."""
    dest.mkdir(parents=True)
    shutil.copytree(ROOT / "app", dest / "app", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("requirements.txt", "Dockerfile.fastapi", ".dockerignore"):
        shutil.copy(ROOT / f, dest / f)
    if app_first:
        text = (dest / "Dockerfile.fastapi").read_text()
        text = text.replace("COPY app/ app/\n", "")
        text = text.replace(
            "COPY requirements.txt .\n", "COPY app/ app/\nCOPY requirements.txt .\n"
        )
        (dest / "Dockerfile.fastapi").write_text(text)
    return dest


def edit_app(ctx: Path, n: int) -> None:
    """Change only the app's source."""
    with (ctx / "app" / "main.py").open("a") as f:
        f.write(f"# edit {n} {time.time()}\n")


def main() -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-buildah", action="store_true")
    ap.add_argument("--tmpdir", default="/var/tmp", help="where stores and rootfs trees go")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="manyarch-bench-build-", dir=args.tmpdir))
    log = work / "bench.log"
    print(f"work dir {work} (log: {log})", flush=True)
    (work / "registry").mkdir()
    server = start_registry(work / "registry")
    reg = server.host
    try:
        env = manyarch_env(work)
        reg_flag = ["--insecure-registry", reg]
        # the base, once, into the registry
        base = build_base(python_base_options())
        save_base(base, Layout.open(work / "base", create=True), BASE_TAG)
        subprocess.run(
            ["skopeo", "copy", "--all", "--dest-tls-verify=false", "-q",
             f"oci:{work / 'base'}:{BASE_TAG}", f"docker://{reg}/python:bookworm"],
            check=True,
        )  # fmt: skip
        base_arg = ["--build-arg", f"PYTHON_IMAGE={reg}/python:bookworm"]

        def build(ctx: Path, tag: str, *extra: str) -> float:
            cmd = [*MANYARCH, "build", str(ctx), "-f", str(ctx / "Dockerfile.fastapi"),
                   "--platform", PLATFORMS, *base_arg, "--push", "-t", f"{reg}/demo:{tag}",
                   "--progress", "plain", *reg_flag, *extra]  # fmt: skip
            return timed(cmd, env, log)

        ctx = make_context(work / "ctx", app_first=False)

        def forget(downloads: bool) -> None:
            """Drop the build cache, the store and the unpacked bases (and the downloads)."""
            shutil.rmtree(work / "xdg" / "manyarch" / "buildcache", ignore_errors=True)
            if downloads:
                shutil.rmtree(work / "xdg", ignore_errors=True)
            shutil.rmtree(work / "store", ignore_errors=True)
            shutil.rmtree(work / "data", ignore_errors=True)

        t = {}
        steps = {}
        forget(downloads=True)
        mark = log.stat().st_size if log.exists() else 0
        t["cold"] = build(ctx, "cold")
        steps["cold"] = install_step_seconds(log, mark)
        forget(downloads=False)
        mark = log.stat().st_size
        t["warm"] = build(ctx, "a")
        steps["warm"] = install_step_seconds(log, mark)
        t["b"] = build(ctx, "b", "--no-native-pip", "--no-cache")
        edit_app(ctx, 1)
        before = du(work / "registry" / "data")
        t["c"] = build(ctx, "a")
        uploaded = du(work / "registry" / "data") - before

        ctx2 = make_context(work / "ctx2", app_first=True)
        build(ctx2, "e")
        edit_app(ctx2, 2)
        t["e_manyarch"] = build(ctx2, "e")

        if not args.skip_buildah and shutil.which("buildah"):
            benv = buildah_env(work, reg)

            # the host's CA bundle (a TLS-intercepting proxy), as manyarch binds it for RUN
            ca = ["--volume", f"{CA}:{CA}:ro"] if Path(CA).exists() else []

            def bbuild(c: Path, name: str) -> float:
                t0 = time.monotonic()
                timed(["buildah", "build", "--isolation", "chroot", "--platform", PLATFORMS,
                       "--manifest", name, "-f", str(c / "Dockerfile.fastapi"), *base_arg, *ca,
                       str(c)],
                      benv, log)  # fmt: skip
                timed(["buildah", "manifest", "push", "--all", "--tls-verify=false", name,
                       f"docker://{reg}/{name}:latest"], benv, log)  # fmt: skip
                return time.monotonic() - t0

            t["d"] = bbuild(ctx, "demo-d")
            bbuild(ctx2, "demo-e")
            edit_app(ctx2, 3)
            t["e_buildah"] = bbuild(ctx2, "demo-e2")
    finally:
        server.stop()

    rows = [
        ("(cold) manyarch, every cache empty", t["cold"], ""),
        ("(warm) manyarch, download caches warm", t["warm"], ""),
        (
            "(b) manyarch --no-native-pip (pip under QEMU)",
            t["b"],
            f"b/warm = {t['b'] / t['warm']:.1f}",
        ),
        ("(c) rebuild after editing app/ only", t["c"], f"uploaded {uploaded} bytes"),
    ]
    if "d" in t:
        rows.append(
            (
                "(d) buildah, same Dockerfile and base",
                t["d"],
                f"d/cold = {t['d'] / t['cold']:.1f}, d/warm = {t['d'] / t['warm']:.1f}",
            )
        )
    rows.append(("(e) app before pip, rebuild: manyarch", t["e_manyarch"], ""))
    if "e_buildah" in t:
        ratio = f"buildah/manyarch = {t['e_buildah'] / t['e_manyarch']:.1f}"
        rows.append(("(e) app before pip, rebuild: buildah", t["e_buildah"], ratio))
    for which in ("cold", "warm"):
        for plat, secs in sorted(steps[which].items()):
            rows.append((f"    native install step, {which}, {plat}", secs, ""))
    for name, secs, note in rows:
        print(f"{name:<48} {secs:7.1f} s   {note}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def buildah_env(work: Path, reg: str) -> dict[str, str]:
    """A private storage.conf and a registries.conf that trusts the loopback registry."""
    conf = work / "buildah"
    conf.mkdir()
    (conf / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{conf / "graph"}"\n'
        f'runroot = "{conf / "run"}"\n'
    )
    (conf / "registries.conf").write_text(
        f'unqualified-search-registries = []\n[[registry]]\nlocation = "{reg}"\ninsecure = true\n'
    )
    env = dict(os.environ)
    env.update(
        CONTAINERS_STORAGE_CONF=str(conf / "storage.conf"),
        CONTAINERS_REGISTRIES_CONF=str(conf / "registries.conf"),
        TMPDIR=str(work),
    )
    if shutil.which("runc"):
        env["BUILDAH_RUNTIME"] = shutil.which("runc") or ""
    return env


if __name__ == "__main__":
    raise SystemExit(main())
