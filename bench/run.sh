#!/bin/sh
# Time from `manyarch run -d -p PORT:80 IMAGE` to the first 200 on /arch, for the
# host's amd64 and for arm64 under QEMU; cold (pull + unpack into an empty store)
# and warm (store and rootfs cache filled), with the ratios between them.
# Usage: bench/run.sh [IMAGE]   (default: the demo image the tests built and cached,
# oci-layout:///var/tmp/manyarch-tests/demo/<key>/layout:latest; or any registry
# reference holding linux/amd64 and linux/arm64, e.g. localhost:5000/fastapi-multiarch)
# Needs root (pasta, overlayfs) and an arm64 binfmt handler for the arm64 rows.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
py="$here/.venv/bin/python"
[ -x "$py" ] || py=python3
image=${1:-}
if [ -z "$image" ]; then
    layout=$(ls -dt /var/tmp/manyarch-tests/demo/*/layout 2>/dev/null | head -n1 || true)
    if [ -z "$layout" ]; then
        echo "no demo image: run the tests once (pytest tests/cli/test_run_demo.py) or give IMAGE" >&2
        exit 2
    fi
    image="oci-layout://$layout:latest"
fi
work=$(mktemp -d /var/tmp/manyarch-bench-run.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
export MANYARCH_STORE="$work/store" XDG_DATA_HOME="$work/data"
cd "$here"
"$py" - "$image" <<'PY'
import json, socket, subprocess, sys, time, urllib.request

image = sys.argv[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_200(platform: str) -> tuple[float, str]:
    port = free_port()
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "manyarch", "run", "--rm", "-d", "-q", "--platform", platform,
         "-p", f"{port}:80", image],
        capture_output=True, text=True,
    )
    if r.returncode != 0:
        sys.exit(f"manyarch run failed: {r.stderr}")
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/arch", timeout=5) as resp:
                    if resp.status == 200:
                        return time.monotonic() - t0, json.loads(resp.read())["architecture"]
            except OSError:
                if time.monotonic() - t0 > 300:
                    sys.exit("no answer within 300 s")
                time.sleep(0.05)
    finally:
        subprocess.run([sys.executable, "-m", "manyarch", "stop", r.stdout.strip()],
                       capture_output=True)


print(f"image: {image}")
print(f"{'platform':<14} {'arch':<8} {'cold s':>8} {'warm s':>8} {'cold/warm':>10}")
rows = {}
for platform in ("linux/amd64", "linux/arm64"):
    cold, arch = first_200(platform)
    warm, _ = first_200(platform)
    rows[platform] = (cold, warm)
    print(f"{platform:<14} {arch:<8} {cold:8.2f} {warm:8.2f} {cold / warm:10.2f}")
a, b = rows["linux/amd64"][1], rows["linux/arm64"][1]
print(f"emulated arm64 / native amd64 (warm): {b / a:.2f}x")
PY
