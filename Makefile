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

# Mutation testing of src/core (StrykerJS, tap runner over the core's unit
# tests; not part of `make test`): prints the mutation score and fails below
# 85%. One module: `make mutate MUTATE=src/core/rollout.ts`. Incremental: each
# scope keeps its results under .tmp/stryker, so reruns test only what changed.
# More workers (the config keeps one): `make mutate STRYKER_FLAGS="--concurrency 2"`.
# The whole of src/core is about 6,200 mutants, each run against every test file
# that covers it: hours on two shared cores. Stopped (Ctrl-C), a run keeps what it
# finished in its results file and the next run goes on from there.
mutate: deps
	npx stryker run $(STRYKER_FLAGS) $(if $(MUTATE),--mutate $(MUTATE) --incrementalFile .tmp/stryker/$(subst /,_,$(MUTATE)).json)

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
