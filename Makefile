# portcullis — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
NODE_TEST := node --import tsx --test --test-reporter=spec --test-timeout=60000
TIER_FILES = $(shell find test/$(1) -name '*.test.ts' 2>/dev/null | sort)

.PHONY: help install tools build run test typecheck lint format test-unit test-contract test-integration bench clean

# Programs the integration tests start themselves (on free loopback ports); installed when missing.
TEST_TOOLS := redis-server openssl promtool clamd

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

node_modules/.installed: package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: node_modules/.installed ## install npm packages from package-lock.json

tools: ## install the programs the tests run (apt-get, when missing and root)
	scripts/ensure-tools.sh $(TEST_TOOLS)

build: install ## compile TypeScript to dist/; then `npx portcullis ...` runs the CLI
	npx tsc -p tsconfig.build.json
	chmod +x dist/cli/main.js

run: build ## start portcullis on the embedded example catalog (gRPC :9001, admin 127.0.0.1:9090)
	node dist/cli/main.js serve $(ARGS)

typecheck: install ## tsc --noEmit over src, test and bench
	npx tsc --noEmit -p .

lint: install ## biome: lint and format check
	npx biome check .

format: install ## biome: apply formatting and safe fixes
	npx biome check --write .

test-unit: install ## pure logic, fast (no servers but a loopback decoy)
	$(NODE_TEST) $(call TIER_FILES,unit)

test-contract: install tools ## our protos, envoy.yaml and deploy/ against the official schemas (and promtool)
	$(NODE_TEST) $(call TIER_FILES,contract)

test-integration: install tools ## real gRPC servers, clients and redis-server on loopback
	$(NODE_TEST) $(call TIER_FILES,integration)

test: typecheck lint test-unit test-contract test-integration ## everything CI runs, from a fresh machine

bench: build ## the benchmark: every case against the bare grpc-js baseline, in one run
	scripts/ensure-tools.sh h2load redis-server
	node --import tsx bench/run.ts

clean: ## remove build output
	rm -rf dist .tmp
