#!/bin/sh
# Layer pipeline throughput: ours (isal) vs stdlib zlib level 6, on a real rootfs.
# Usage: bench/layers.sh [DIR]   (default: a Debian bookworm rootfs with python3,
# made once with mmdebstrap into $MANYARCH_BENCH_ROOTFS; a synthetic ~64 MB tree if
# mmdebstrap is missing or fails)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
py="$here/.venv/bin/python"
[ -x "$py" ] || py=python3
tree=${1:-}
if [ -z "$tree" ]; then
    tree=${MANYARCH_BENCH_ROOTFS:-/tmp/manyarch-bench-rootfs}
    if [ ! -d "$tree/usr" ]; then
        rm -rf "$tree"
        if command -v mmdebstrap >/dev/null 2>&1 \
            && mmdebstrap --quiet --variant=extract --include=python3 bookworm "$tree" >/dev/null 2>&1
        then
            echo "made $tree with mmdebstrap" >&2
        else
            echo "mmdebstrap unavailable: a synthetic tree instead" >&2
            rm -rf "$tree"
            "$py" - "$tree" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(0)
words = [bytes(rng.choice(b"abcdefghijklmnop \n_=().") for _ in range(rng.randint(3, 12)))
         for _ in range(4000)]
total = 0
i = 0
while total < 64_000_000:
    d = os.path.join(root, "usr", "lib", f"pkg{i // 40}")
    os.makedirs(d, exist_ok=True)
    size = int(rng.paretovariate(1.2) * 4000)
    if i % 10 == 0:  # some binary-ish content, like .so files
        data = rng.randbytes(size // 2) + bytes(size // 2)
    else:  # text-ish content, like .py files
        data = b" ".join(rng.choice(words) for _ in range(size // 7))
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        f.write(data)
    total += len(data)
    i += 1
PY
        fi
    fi
fi
PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}" exec "$py" "$here/bench/layers.py" "$tree"
