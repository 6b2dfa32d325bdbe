# sealer (Python): set-up, tests, demo, benchmarks and lint.
# Every target installs what it needs first, so a fresh Debian 12 machine (as root) needs
# nothing typed by hand beyond `make demo` or `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# buildah (~20 MB, 3 packages) is only the build benchmark's peer; time (GNU time) starts every
# benchmark contender, so that its peak RSS is its own (bench/_measure.py). containerd and runc
# (docker.io's dependencies too) run inside test hosts (tests/hosts.py, containerd=True).
APT_PACKAGES := skopeo umoci docker-registry docker.io containerd runc openssh-server zstd iproute2 tar apache2-utils openssl buildah time haproxy
STAMP_APT := $(VENV)/.apt-stamp
STAMP_PY := $(VENV)/.py-stamp

.PHONY: install apt venv test test-unit demo bench bench-quick lint clean hosts hosts-down basefs node-image

install: apt venv

apt: $(STAMP_APT)
$(STAMP_APT): Makefile
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@mkdir -p $(VENV) && touch $@

venv: $(STAMP_PY)
$(STAMP_PY): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

test: install
	$(BIN)/pytest -q tests

test-unit: venv
	$(BIN)/pytest -q tests/unit

# The second half runs a cluster on Docker containers (docs/containers.md): on the engine at
# DOCKER_HOST, else on a private dockerd it starts and stops; where neither can be, one line says so.
demo: install
	bash examples/demo.sh
	bash examples/demo-docker.sh

# The node image of docker hosts (docs/containers.md), imported into the engine at DOCKER_HOST (or
# the default socket), built offline from this machine's programs: `make node-image [TAG=name]`.
node-image: install
	$(BIN)/python -m builder.runtime.infra.node_image $(TAG)

# `make bench BEFORE=REV` also times git revision REV's code in the same rounds (bench/_before.py).
bench: install
	$(if $(BEFORE),SEALER_BENCH_BEFORE=$(BEFORE) )$(BIN)/python -m bench.run_build
	$(if $(BEFORE),SEALER_BENCH_BEFORE=$(BEFORE) )$(BIN)/python -m bench.run_registry
	$(BIN)/python -m bench.run_delivery
	$(BIN)/python -m bench.run_fanout

# The same benchmarks on a tenth of the context, 3 rounds, ratios only (under 2 minutes).
bench-quick: install
	$(BIN)/python -m bench.quick

# A runtime's base ClusterImage from upstream files you supply (basefs/RUNTIME/README.md):
# `make basefs RUNTIME=k3s BIN_DIR=/path/to/files [VERSION=v1.29.4] [TAG=name]`. Nothing is downloaded.
basefs: venv
	@test -n "$(RUNTIME)" -a -n "$(BIN_DIR)" || { echo "usage: make basefs RUNTIME=kubernetes|k3s|k0s BIN_DIR=DIR [VERSION=v1.29.4] [TAG=NAME]" >&2; exit 2; }
	$(BIN)/python scripts/basefs.py $(RUNTIME) $(BIN_DIR) $(if $(VERSION),--version $(VERSION)) $(if $(TAG),--tag $(TAG))

# Test hosts for trying things by hand (docs/hosts.md): `make hosts N=3 [PASSWORD_HOST=3]`.
N ?= 3
hosts: install
	$(BIN)/python scripts/hosts.py up $(N) $(if $(PASSWORD_HOST),--password-host $(PASSWORD_HOST))

hosts-down: venv
	$(BIN)/python scripts/hosts.py down

lint: venv
	$(BIN)/ruff check kubefile_grammar builder tests bench scripts
	$(BIN)/ruff format --check kubefile_grammar builder tests bench scripts
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
