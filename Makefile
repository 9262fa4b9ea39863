# gpuop: every target installs what it needs (Node 24, npm packages, the
# Go-built cluster binaries) into ignored folders, so a fresh machine works.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
include hack/versions.env

NODE_DIR := $(CURDIR)/.tools/node-$(NODE_VERSION)
export PATH := $(NODE_DIR)/bin:$(CURDIR)/.tools/bin:/usr/local/go/bin:$(PATH)

.PHONY: all node deps tools build typecheck lint unit test mutate cluster-up cluster-down demo bench clean

all: build

node:
	@hack/node.sh

node_modules/.installed: package.json package-lock.json | node
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.installed

tools:
	@hack/build-tools.sh

build: deps
	npm run --silent build

typecheck: deps
	npm run --silent typecheck

lint: deps
	npm run --silent lint

unit: deps
	node --test "src/**/*.test.ts"

# Type-checks, lints, builds, then runs unit and integration tests against a
# real local cluster and registry; ends with one "N passed, N failed" line.
test: deps tools build typecheck lint
	@if [[ -x hack/test-deps.sh ]]; then hack/test-deps.sh; fi
	node test/run.ts

# Mutation testing of src/core (StrykerJS, tap runner; not part of `make test`):
# each module's mutants against its own unit tests (a lower bound of what the
# whole suite kills, in minutes per module rather than hours for all of it);
# prints each module's score and the total, and fails below 85%. One module:
# `make mutate MUTATE=src/core/rollout.ts`. Incremental: results are kept under
# .tmp/stryker/modules, so a rerun tests only what changed. More workers (the
# config keeps one): `make mutate STRYKER_FLAGS="--concurrency 2"`.
mutate: deps
	STRYKER_FLAGS="$(STRYKER_FLAGS)" node hack/mutate.ts $(MUTATE)

cluster-up: deps tools
	@node test/harness/cluster-cli.ts up

cluster-down: deps
	@node test/harness/cluster-cli.ts down

demo: deps tools build
	node test/demo.ts

# NVIDIA's operator (the baseline) is built here only, so `make test` stays short.
bench: deps tools build
	@hack/build-tools.sh nvidia-gpu-operator
	node bench/run.ts

clean:
	rm -rf dist .tmp
