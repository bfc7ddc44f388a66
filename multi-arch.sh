#!/usr/bin/env bash
# The seed's demo script: build for linux/amd64 and linux/arm64, push ONE reference
# to the local registry on port 5000, pull it, inspect the manifest list.
# With a working `docker buildx` it drives Docker exactly as the seed does;
# otherwise it runs the same steps with manyarch (no Docker daemon needed).
set -euo pipefail
cd "$(dirname "$0")"

IMAGE=host.docker.internal:5000/fastapi-multiarch:latest
BUILDER=multiarch-builder

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }

if docker info >/dev/null 2>&1 && docker buildx version >/dev/null 2>&1; then
  docker buildx rm "$BUILDER" >/dev/null 2>&1 || true
  run docker buildx create --name "$BUILDER" --driver docker-container --config ./buildkitd.toml --use
  run docker compose -f registry.yml up -d
  run docker buildx build --platform linux/amd64,linux/arm64 \
    -t "$IMAGE" \
    -f Dockerfile.fastapi \
    --push \
    --build-arg BUILDKIT_INLINE_CACHE=1 \
    .
  run docker pull "$IMAGE"
  run docker pull --platform linux/arm64 "$IMAGE"
  run docker buildx imagetools inspect "$IMAGE"
  exit 0
fi

echo "No working docker buildx here: running the same steps with manyarch."
if [ -x .venv/bin/manyarch ]; then PATH="$PWD/.venv/bin:$PATH"; fi
command -v manyarch >/dev/null || { echo "manyarch is not installed: run 'make demo' (or 'make venv')" >&2; exit 1; }
BASE=${PYTHON_IMAGE:-localhost:5000/python:3.11-bookworm}
manyarch rm "$BUILDER" >/dev/null 2>&1 || true
run manyarch create --name "$BUILDER" --driver docker-container --config ./buildkitd.toml --use
run scripts/registry.sh up
run manyarch base --preset python --platform linux/amd64,linux/arm64 -t "$BASE" --push
run manyarch build --platform linux/amd64,linux/arm64 \
  -t "$IMAGE" \
  -f Dockerfile.fastapi \
  --push \
  --build-arg BUILDKIT_INLINE_CACHE=1 \
  --build-arg PYTHON_IMAGE="$BASE" \
  .
run manyarch pull "$IMAGE"
run manyarch pull --platform linux/arm64 "$IMAGE"
run manyarch imagetools inspect "$IMAGE"
