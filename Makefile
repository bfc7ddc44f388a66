# manyarch: two commands do all the set-up on a fresh Debian/Ubuntu machine.
#   make test   install what the tests need, then run them
#   make demo   install what the demo needs, then run the seed's flow end to end
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests and the demo use (real parts, no mocks).
APT_PACKAGES := qemu-user-static docker-registry mmdebstrap arch-test bubblewrap skopeo umoci \
	passt chromium pngquant curl apache2-utils ca-certificates python3-venv fonts-dejavu-core \
	tini python3.11 gcc-aarch64-linux-gnu libc6-dev-arm64-cross buildah runc python3-seccomp gcc
# Native installs cross-compile C extensions for arm64 on the host: the arm64 Python
# headers come from Debian's multiarch packages (dpkg learns the arm64 architecture).
CROSS_PACKAGES := libpython3-dev:arm64

.PHONY: test demo lint deps apt cross venv emulation registry-down bench clean

# Three workers, one module each at a time (module fixtures built once): the suite
# mostly waits on QEMU, servers and downloads. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 3

test: deps
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check --no-cache src tests app
	$(BIN)/ruff format --no-cache --check src tests app
	$(BIN)/mypy

demo: deps
	./scripts/demo.sh

deps: apt cross venv emulation

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

cross: apt
	@missing=""; for p in $(CROSS_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install$$missing"; \
		dpkg --print-foreign-architectures | grep -qx arm64 || $(SUDO) dpkg --add-architecture arm64; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

# Register the qemu-user-static handlers (binfmt_misc) so foreign RUN steps work.
emulation: venv
	$(SUDO) $(BIN)/manyarch emulation install arm64

registry-down:
	./scripts/registry.sh down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
