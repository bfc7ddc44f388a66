#!/usr/bin/env bash
# The demo's local registry on port 5000, as in the seed (registry:2).
#   scripts/registry.sh up      start one unless something answers on localhost:5000
#   scripts/registry.sh down    stop the one this script started
#   scripts/registry.sh status
# With a working Docker engine it uses `docker compose -f registry.yml`; otherwise
# the CNCF distribution registry from Debian's docker-registry package.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${REGISTRY_PORT:-5000}
STATE=${MANYARCH_REGISTRY_DIR:-/var/tmp/manyarch-registry}
PIDFILE="$STATE/registry.pid"

answers() { curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/v2/"; }
docker_ok() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

up() {
  if answers; then echo "registry: already answering on localhost:$PORT"; return 0; fi
  if docker_ok; then
    docker compose -f registry.yml up -d
  else
    command -v docker-registry >/dev/null || { echo "docker-registry is not installed: sudo apt-get install docker-registry" >&2; exit 1; }
    mkdir -p "$STATE/data"
    cat >"$STATE/config.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STATE/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
YML
    nohup docker-registry serve "$STATE/config.yml" >"$STATE/registry.log" 2>&1 &
    echo $! >"$PIDFILE"
  fi
  for _ in $(seq 1 50); do answers && { echo "registry: up on localhost:$PORT (stop it with: make registry-down)"; return 0; }; sleep 0.1; done
  echo "registry: did not answer on localhost:$PORT; see $STATE/registry.log" >&2; exit 1
}

down() {
  if [ -f "$PIDFILE" ]; then
    kill "$(cat "$PIDFILE")" 2>/dev/null || true
    rm -f "$PIDFILE"
    echo "registry: stopped"
  elif docker_ok && docker compose -f registry.yml ps -q 2>/dev/null | grep -q .; then
    docker compose -f registry.yml down
  else
    echo "registry: none started by manyarch"
  fi
}

case "${1:-status}" in
  up) up ;;
  down) down ;;
  status) if answers; then echo "registry: up on localhost:$PORT"; else echo "registry: down"; fi ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
