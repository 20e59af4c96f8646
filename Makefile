# portcullis — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
NODE_TEST := node --import tsx --test --test-reporter=spec --test-timeout=180000
TIER_FILES = $(shell find test/$(1) -name '*.test.ts' 2>/dev/null | sort)

.PHONY: help install tools build run test typecheck lint format test-unit test-contract test-integration test-integration-grpc-js test-integration-grpc-js-full bench bench-quick clean

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

run: build ## start portcullis on the embedded example catalog (gRPC 127.0.0.1:9001, admin 127.0.0.1:9090; other binds via ARGS)
	node dist/cli/main.js serve $(ARGS)

typecheck: install ## tsc --noEmit over src, test and bench
	npx tsc --noEmit -p .

lint: install ## biome (lint and format check), then the layering rules (.dependency-cruiser.cjs)
	npx biome check .
	npx depcruise src --config .dependency-cruiser.cjs

format: install ## biome: apply formatting and safe fixes
	npx biome check --write .

test-unit: install ## pure logic, fast (no servers but a loopback decoy)
	$(NODE_TEST) $(call TIER_FILES,unit)

test-contract: install tools ## our protos, envoy.yaml and deploy/ against the official schemas (and promtool)
	$(NODE_TEST) $(call TIER_FILES,contract)

test-integration: install tools ## real gRPC servers, clients and redis-server on loopback (default transport: http2)
	PORTCULLIS_TRANSPORT=http2 $(NODE_TEST) $(call TIER_FILES,integration)

# The second transport in `make test`: the Check, health and drain behaviour (the whole tier twice
# took about 19 min on a loaded 2-core host); `make test-integration-grpc-js-full` runs all of it.
GRPC_JS_SUBSET := test/integration/check-handler.test.ts test/integration/lifecycle.test.ts \
	test/integration/content.test.ts test/integration/rules.test.ts

test-integration-grpc-js: install tools ## Check/health/drain integration tests, served by serve --transport grpc-js
	PORTCULLIS_TRANSPORT=grpc-js $(NODE_TEST) $(GRPC_JS_SUBSET)

test-integration-grpc-js-full: install tools ## the whole integration tier, served by serve --transport grpc-js
	PORTCULLIS_TRANSPORT=grpc-js $(NODE_TEST) $(call TIER_FILES,integration)

test: typecheck lint test-unit test-contract test-integration test-integration-grpc-js ## everything CI runs, from a fresh machine

bench: build ## the benchmark: every case against the bare grpc-js baseline, in one run (ARGS=--quick for a short one)
	scripts/ensure-tools.sh h2load redis-server
	node --import tsx bench/run.ts $(ARGS)

bench-quick: ## one short round of the benchmark: checks the harness, figures not to quote
	$(MAKE) bench ARGS=--quick

clean: ## remove build output
	rm -rf dist .tmp
