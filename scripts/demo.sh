#!/usr/bin/env bash
# The seed's docker buildx demo, end to end, with manyarch and no Docker daemon.
# `make demo` installs what it needs first (apt packages, .venv, binfmt handlers).
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

REGISTRY=${DEMO_REGISTRY:-host.docker.internal:5000}
BASE=${DEMO_BASE:-localhost:5000/python:3.11-bookworm}
IMAGE="$REGISTRY/fastapi-multiarch:latest"
PORT_AMD64=${DEMO_PORT_AMD64:-8080}
PORT_ARM64=${DEMO_PORT_ARM64:-8081}

bold=$'\e[1m'; dim=$'\e[2m'; green=$'\e[32m'; red=$'\e[31m'; off=$'\e[0m'
[ -t 1 ] || { bold=""; dim=""; green=""; red=""; off=""; }
STEPS=(); TIMES=(); RESULTS=(); FAILED=0

# step "title" expect(ok|fail) command...: print the command, run it, time it, record it.
step() {
  local title=$1 expect=$2; shift 2
  printf '\n%s== %s%s\n%s$ %s%s\n' "$bold" "$title" "$off" "$dim" "$*" "$off"
  local t0=$SECONDS rc out
  "$@"; rc=$?
  local took=$((SECONDS - t0))
  if { [ "$expect" = ok ] && [ $rc -eq 0 ]; } || { [ "$expect" = fail ] && [ $rc -ne 0 ]; }; then
    out="${green}ok${off}"; [ "$expect" = fail ] && out="${green}failed as expected (exit $rc)${off}"
  else
    out="${red}FAILED (exit $rc)${off}"; FAILED=1
  fi
  STEPS+=("$title"); TIMES+=("${took}s"); RESULTS+=("$out")
}

get_arch() {  # GET /arch until it answers (the arm64 one starts under QEMU)
  local port=$1 want=$2 body=""
  for _ in $(seq 1 120); do
    body=$(curl -fs "http://127.0.0.1:$port/arch") && break
    sleep 0.5
  done
  echo "GET http://localhost:$port/arch -> $body"
  [[ "$body" == *"\"$want\""* ]]
}

cleanup() {
  manyarch stop fastapi-amd64 fastapi-arm64 >/dev/null 2>&1 || true
  manyarch rm fastapi-amd64 fastapi-arm64 >/dev/null 2>&1 || true
}
trap cleanup EXIT

BUILDER=${DEMO_BUILDER:-multiarch-builder}
manyarch rm "$BUILDER" >/dev/null 2>&1 || true
step "The seed's builder and its buildkitd.toml (plain http)" ok \
  manyarch create --name "$BUILDER" --driver docker-container --config ./buildkitd.toml --use
step "Local registry on port 5000 (registry.yml / docker-registry)" ok scripts/registry.sh up
step "Emulation for arm64 (binfmt_misc + qemu-user-static)" ok manyarch emulation status
step "Python base for both platforms, from Debian packages" ok \
  manyarch base --preset python --platform linux/amd64,linux/arm64 -t "$BASE" --push
step "Multi-platform build, ONE reference pushed" ok \
  manyarch build --platform linux/amd64,linux/arm64 \
    -t "$IMAGE" \
    -f Dockerfile.fastapi \
    --push \
    --build-arg BUILDKIT_INLINE_CACHE=1 \
    --build-arg PYTHON_IMAGE="$BASE" \
    .
step "Inspect the manifest list" ok manyarch imagetools inspect "$IMAGE"
step "Pull: the host picks its own platform" ok manyarch pull "$IMAGE"
step "Pull the other platform by force" ok manyarch pull --platform linux/arm64 "$IMAGE"
step "Run arm64 without emulation: exec format error" fail \
  manyarch run --rm --platform linux/arm64 --emulation=off "$IMAGE"
step "Run the host's image (-p $PORT_AMD64:80)" ok \
  manyarch run --rm -d --name fastapi-amd64 --platform linux/amd64 -p "$PORT_AMD64:80" "$IMAGE"
step "Run the arm64 image under QEMU (-p $PORT_ARM64:80)" ok \
  manyarch run --rm -d --name fastapi-arm64 --platform linux/arm64 -p "$PORT_ARM64:80" "$IMAGE"
step "GET /arch on the amd64 container" ok get_arch "$PORT_AMD64" x86_64
step "GET /arch on the arm64 container" ok get_arch "$PORT_ARM64" aarch64
step "Stop both containers" ok manyarch stop fastapi-amd64 fastapi-arm64

printf '\n%sSummary%s\n' "$bold" "$off"
printf '%-60s %6s  %s\n' "step" "time" "result"
for i in "${!STEPS[@]}"; do printf '%-60s %6s  %s\n' "${STEPS[$i]}" "${TIMES[$i]}" "${RESULTS[$i]}"; done
echo
echo "The registry on localhost:5000 is still running: stop it with 'make registry-down'."
exit $FAILED
