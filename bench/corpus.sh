#!/bin/sh
# Real-world-shaped Python Dockerfiles (bench/corpus/*/Dockerfile), built for linux/amd64 and
# linux/arm64 by manyarch and by buildah in the same run: times, ratio, native vs emulated RUN lines.
# Usage: bench/corpus.sh [--skip-buildah] [--tmpdir DIR] [CASE...]
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
py="$here/.venv/bin/python"
[ -x "$py" ] || py=python3
exec "$py" "$here/bench/corpus.py" "$@"
