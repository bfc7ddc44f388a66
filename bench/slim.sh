#!/bin/sh
# python-slim bases from scratch, bookworm (3.11) and trixie (3.13), linux/amd64 and
# linux/arm64 in parallel: each stage's seconds per platform (mmdebstrap's download
# and extraction, the host's dpkg --unpack, the maintainer scripts, natively or under
# QEMU), then a build on each base that runs apt-get install, useradd and python.
# Trixie's check lives here rather than in `make test`: its arm64 base costs minutes
# (python3.13's postinst byte-compiles the standard library under QEMU).
# Usage: sudo bench/slim.sh [SUITE...]
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
manyarch="$here/.venv/bin/manyarch"
tmp=$(mktemp -d /var/tmp/manyarch-bench-slim.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for suite in ${@:-bookworm trixie}; do
	echo "== $suite"
	start=$(date +%s)
	"$manyarch" base --preset python-slim --suite "$suite" --platform linux/amd64,linux/arm64 \
		--no-cache --cache-dir "$tmp/cache" --output "type=oci,dest=$tmp/$suite.tar" 2>&1 |
		grep '^\[linux'
	echo "total: $(($(date +%s) - start)) s"
	mkdir -p "$tmp/$suite-layout" "$tmp/$suite-ctx"
	tar -xf "$tmp/$suite.tar" -C "$tmp/$suite-layout"
	cat >"$tmp/$suite-ctx/Dockerfile" <<DOCKERFILE
FROM oci-layout://$tmp/$suite-layout:latest
RUN apt-get update && apt-get install -y --no-install-recommends tree && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 999 nonroot && useradd --system --gid 999 --uid 999 nonroot \
    && adduser --disabled-password --gecos "" app && id app && tree --version \
    && python -c 'import sys, sysconfig; print(sys.version.split()[0], sysconfig.get_paths()["include"])' \
    && ls /usr/local/lib/python3.*/site-packages/ >/dev/null && echo "\$PYTHON_VERSION"
DOCKERFILE
	env MANYARCH_STORE="$tmp/store" XDG_CACHE_HOME="$tmp/xdg" \
		"$manyarch" build --progress plain --platform linux/amd64,linux/arm64 "$tmp/$suite-ctx" 2>&1 |
		grep -E 'native|emulated|uid=|tree v|^#[0-9]+ [0-9.]+ 3\.|DONE|ERROR|^built'
done
