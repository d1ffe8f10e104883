//! Integration tests: the real app on port 0 against the machine's real
//! PostgreSQL (a fresh database per test), Redis and RabbitMQ (random
//! prefixes per test). `TEST_LOG=1` shows the app's logs.

mod helpers;

mod actors;
mod batch;
mod cli;
mod connectors;
mod console;
mod console_pages;
mod events;
mod events_secrets;
mod failover_property;
mod gate;
mod health;
mod idempotency;
mod installation;
mod migrations;
mod money_elsewhere;
mod observability;
mod operator;
mod payments;
mod provider_pages;
mod queue;
mod ratelimit;
mod reconcile;
mod refund_faults_property;
mod refunds;
mod reviews;
mod sandbox_ledger;
mod settlement;
mod ssrf;
mod webhooks;
