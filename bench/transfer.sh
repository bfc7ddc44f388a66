#!/bin/sh
# Registry push/pull throughput: manyarch against skopeo copy, ~200 MB image
# (8 x 25 MB incompressible layers) to loopback registries, in the same run.
# Usage: bench/transfer.sh [--layers N] [--layer-mb MB] [--rounds N] [--jobs N]
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
py="$here/.venv/bin/python"
[ -x "$py" ] || py=python3
exec "$py" "$here/bench/transfer.py" "$@"
