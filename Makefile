# payorch — developer and operator targets. `make help` lists them.
CARGO ?= cargo
BIN := target/debug/payorch
RUN_DIR ?= run
N ?= 2

.PHONY: help run test migrate lint fmt services build workers workers-status workers-stop

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

run: ## run the API; with nothing configured: SQLite, in-process queue, sandbox provider
	$(CARGO) run --quiet -- serve

test: ## the whole suite against the local PostgreSQL, Redis and RabbitMQ
	$(CARGO) test --workspace --all-targets --no-fail-fast

migrate: ## apply database migrations (DATABASE_URL, default the SQLite file)
	$(CARGO) run --quiet -- migrate

lint: ## formatting check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

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
