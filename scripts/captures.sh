#!/usr/bin/env bash
# docs/captures/*.png from a real run, never by hand:
#   multi-arch-1.png, multi-arch-2.png  scripts/demo.sh on a terminal, with its colours
#   webapp-amd64.png, webapp-arm64.png  the page / of the amd64 and the arm64 container
# CAPTURES_TEXT=DIR also writes the terminal text there (for quoting in docs/demo.fr.md).
# Needs what `make demo` installs (chromium, pngquant). The registry on :5000 is
# stopped afterwards only if it was not already running.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

OUT=${CAPTURES_DIR:-docs/captures}
COLS=${CAPTURES_COLUMNS:-140}  # wide enough for imagetools' "Name: ...@sha256:..." lines
IMAGE=${DEMO_REGISTRY:-host.docker.internal:5000}/fastapi-multiarch:latest
PORT_AMD64=${CAPTURES_PORT_AMD64:-8090}
PORT_ARM64=${CAPTURES_PORT_ARM64:-8091}
WORK=$(mktemp -d /var/tmp/manyarch-captures.XXXXXX)
mkdir -p "$OUT"

# A cold start by default (own store, caches, containers): the captures show a real first
# build, and the user's store is left alone. CAPTURES_WARM=1 uses the user's.
if [ -z "${CAPTURES_WARM:-}" ]; then
  unset MANYARCH_STORE
  export XDG_DATA_HOME="$WORK/data" XDG_CACHE_HOME="$WORK/cache"
fi

registry_was_up=0
scripts/registry.sh status | grep -q ': up' && registry_was_up=1

cleanup() {
  manyarch stop captures-amd64 captures-arm64 >/dev/null 2>&1 || true
  manyarch rm captures-amd64 captures-arm64 >/dev/null 2>&1 || true
  [ $registry_was_up = 1 ] || scripts/registry.sh down >/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# 1. The demo on a pseudo-terminal of COLS columns, so that it draws as it does for a person.
echo "captures: running scripts/demo.sh (recorded in $WORK/demo.typescript)"
script -q -e -c "stty cols $COLS rows 50; scripts/demo.sh" "$WORK/demo.typescript" </dev/null
demo_rc=$?
[ $demo_rc = 0 ] || echo "captures: scripts/demo.sh exited with $demo_rc; its output is captured as it is" >&2
python3 scripts/captures.py "$WORK/demo.typescript" "$OUT/multi-arch" --width "$COLS" \
  --split '== Inspect the manifest list' ${CAPTURES_TEXT:+--text "$CAPTURES_TEXT"} || exit 1

# 2. The page / of each platform's container (the arm64 one under QEMU).
shot() {
  local name=$1 port=$2; shift 2
  manyarch run --rm -d -q --name "captures-$name" -p "$port:80" "$@" "$IMAGE" >/dev/null || return 1
  python3 scripts/screenshot.py --wait 120 --size 1000,760 "http://127.0.0.1:$port/" "$OUT/webapp-$name.png"
}
shot amd64 "$PORT_AMD64" --platform linux/amd64 || demo_rc=1
shot arm64 "$PORT_ARM64" --platform linux/arm64 || demo_rc=1
# 3. Smaller files: a terminal has few colours, so a palette loses nothing one can see.
if command -v pngquant >/dev/null; then
  pngquant --quality 60-95 --speed 1 --strip --force --ext .png "$OUT"/multi-arch-*.png "$OUT"/webapp-*.png
else
  echo "captures: pngquant is not installed (apt-get install pngquant); PNGs left as Chromium wrote them" >&2
fi
ls -l "$OUT"/*.png
exit $demo_rc
