#!/bin/sh
# A foreign platform's apt line (gcc libpq-dev for linux/arm64): native apt, cold and
# with a warm .deb cache, against apt wholly under QEMU, in the same run.
# Usage: bench/apt.sh [--packages "gcc libpq-dev"] [--tmpdir DIR]
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
py="$here/.venv/bin/python"
[ -x "$py" ] || py=python3
exec "$py" "$here/bench/apt.py" "$@"
