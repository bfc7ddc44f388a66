#!/bin/sh
# Multi-platform build of the demo app: manyarch (native pip, emulated pip,
# rebuilds) against buildah, pushed to a loopback registry, in the same run.
# Usage: bench/build.sh [--skip-buildah] [--tmpdir DIR]
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
py="$here/.venv/bin/python"
[ -x "$py" ] || py=python3
exec "$py" "$here/bench/build.py" "$@"
