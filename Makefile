# payorch — developer and operator targets. `make help` lists them.
CARGO ?= cargo
BIN := target/debug/payorch
RUN_DIR ?= run
N ?= 2
BENCH ?= api
ROUNDS ?= 2
FUZZ_SECONDS ?= 60
MINUTES ?= 10
SEED ?=


.PHONY: chaos bench-api bench-console bench-events bench-webhooks bench-actors bench-reconcile bench-compare load drill coverage
.PHONY: help run test schema-test browser-test fuzz fuzz-merge migrate lint fmt services build workers workers-status workers-stop

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

run: ## run the API; with nothing configured: SQLite, in-process queue, sandbox provider
	$(CARGO) run --quiet -- serve

test: ## the whole suite against the local PostgreSQL, Redis and RabbitMQ (benches are built, not run; a 60 s chaos campaign included), then the checkout page in Chromium, schemathesis, and each fuzz target for 5 s
	$(CARGO) test --workspace --all-targets --no-run
	$(CARGO) test --workspace --lib --bins --tests --no-fail-fast
	BIN=$(BIN) bash scripts/browser-test.sh
	BIN=$(BIN) bash scripts/schemathesis.sh
	bash scripts/fuzz.sh 5

chaos: services ## the chaos campaign for MINUTES (default 10) under a fault schedule from SEED (default: random, printed), restarting RabbitMQ and Redis too unless SERVICES=keep; replays: make chaos SEED=… MINUTES=…
	CHAOS_SERVICES=$(if $(filter keep,$(SERVICES)),keep,restart) CHAOS_SECONDS=$$(( $(MINUTES) * 60 )) $(if $(SEED),CHAOS_SEED=$(SEED)) $(CARGO) test --test chaos

fuzz: ## every fuzz target (cargo fuzz, libFuzzer) for FUZZ_SECONDS each (default 60) from the committed corpus
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

fuzz-merge: ## merge what a fuzz run found into the committed corpus (minimized): make fuzz-merge TARGET=webhook_event DIR=...
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --dev $(TARGET) fuzz/corpus/$(TARGET) $(DIR) -- -merge=1

schema-test: ## schemathesis against the API's own OpenAPI document (embedded mode, $(BIN); ~20 s); installs .venv-schema when missing
	BIN=$(BIN) bash scripts/schemathesis.sh

browser-test: ## the sandbox checkout page in Chromium (Playwright) against $(BIN); installs Chromium and .venv-browser when missing
	BIN=$(BIN) bash scripts/browser-test.sh

migrate: ## apply database migrations (DATABASE_URL, default the SQLite file)
	$(CARGO) run --quiet -- migrate

lint: ## formatting check, clippy with warnings as errors, no module cycles (tests/layers.rs), and cargo deny (bans, licenses, sources: deny.toml; installs cargo-deny when missing)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --test layers
	command -v cargo-deny >/dev/null || $(CARGO) install cargo-deny --locked
	$(CARGO) deny --offline check bans licenses sources

fmt:
	$(CARGO) fmt --all

services: ## start PostgreSQL, Redis and RabbitMQ if they are not running, wait for them
	bash scripts/services.sh

build:
	$(CARGO) build --quiet

workers: build ## start N webhook workers in the background: make workers N=4 (needs AMQP_URL)
	RUN_DIR=$(RUN_DIR) BIN=$(BIN) bash scripts/workers.sh start $(N)

workers-status: ## list the background workers
	RUN_DIR=$(RUN_DIR) bash scripts/workers.sh status

workers-stop: ## stop the background workers, each after it drained
	RUN_DIR=$(RUN_DIR) bash scripts/workers.sh stop

bench-api: services ## API latency at 100 connections (release build), limiter on vs off, Redis commands per request
	$(CARGO) bench --bench api

bench-webhooks: services ## webhook ack rate vs the broker's own, drain with 1/2/4 workers vs pgbench
	$(CARGO) bench --bench webhooks

bench-events: services ## merchant events: 10,000 changes x 10 endpoints, deliveries/s and commit-to-receipt p50/p99 beside RabbitMQ's confirmed-publish rate; then one merchant's 20 hanging endpoints beside another's healthy one (fairness)
	$(CARGO) bench --bench events

bench-reconcile: services ## payorch reconcile over 10,000 stale payments (payments/s, provider calls per payment, beside the sandbox's verify rate), then a settlement pass over them (transactions/s, provider calls per transaction)
	$(CARGO) bench --bench reconcile

bench-compare: services ## the same bench for BASELINE=<other build's payorch> and this tree, alternating: make bench-compare BENCH=api
	BASELINE=$(BASELINE) bash scripts/bench-compare.sh $(BENCH) $(ROUNDS)

bench-console: services ## operator console with 1,000,000 payments seeded: server time p50/p99 of each page and each payment search, database time per request, beside a SELECT 1 round trip
	$(CARGO) bench --bench console

bench-actors: services ## 100,000 actors created and idle-evicted; resident memory before, at peak, after
	$(CARGO) bench --bench actors

load: services ## Locust, 100 users, 60 s, against a release build on PostgreSQL/Redis/RabbitMQ; CSV+HTML in load-report/
	bash scripts/load.sh

drill: ## restart Redis, RabbitMQ, PostgreSQL under load; report 5xx per phase and acked-vs-processed (restarts this machine's services)
	bash scripts/drill.sh

coverage: services ## line coverage of the test suite (cargo-llvm-cov; installs it and rustup's llvm-tools when missing)
	rustup component add llvm-tools >/dev/null
	command -v cargo-llvm-cov >/dev/null || $(CARGO) install cargo-llvm-cov --locked
	$(CARGO) llvm-cov --workspace --lib --bins --tests --no-fail-fast --summary-only
