#!/usr/bin/env bash
# make drill: fault drills under a moderate load — restart Redis, restart
# RabbitMQ, stop/start PostgreSQL — then check that every webhook answered
# 200 was processed, and the money-safety invariants.
# It restarts this machine's services: not while the test suite runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-18081}
DB=payorch_drill_$$
PREFIX=drill_$$
cargo build --release --quiet --bin payorch
BIN=target/release/payorch
bash scripts/services.sh >/dev/null
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $DB"
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB REDIS_URL=redis://127.0.0.1:6379 \
  PAYORCH_PROVIDER=sandbox PAYSTACK_SECRET_KEY=sk_test_payorch_sandbox \
  PAYORCH_SECRETS_KEY="$(head -c 32 /dev/urandom | base64)" \
  AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f PAYORCH_QUEUE_PREFIX=$PREFIX PAYORCH_REDIS_PREFIX=$PREFIX \
  PAYORCH_HTTP_ADDR=127.0.0.1:$PORT RUST_LOG=warn PAYORCH_DB_ACQUIRE_TIMEOUT_MS=1000 \
  PAYORCH_RATE_LIMITS="initialize=100000/60,verify=100000/60,unauthenticated=100000/60"
keys=$(for i in $(seq 1 8); do $BIN apikey create --name "drill-$i" | tail -n1; done | paste -sd, -)
acked=$(mktemp)
cleanup() {
  kill -TERM "$api" 2>/dev/null || true
  RUN_DIR=run/drill BIN=$BIN bash scripts/workers.sh stop >/dev/null || true
  bash scripts/services.sh >/dev/null || true
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
  # This run's queues, so runs do not pile up in the broker.
  for q in $(rabbitmqctl -q list_queues name 2>/dev/null | grep "^$PREFIX\."); do
    rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
  done
  rm -f "$acked"
}
trap cleanup EXIT
mkdir -p run/drill
$BIN serve >run/drill/api.log 2>&1 & api=$!
RUN_DIR=run/drill BIN=$BIN bash scripts/workers.sh start 2 >/dev/null
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

PAYORCH_BASE=http://127.0.0.1:$PORT PAYORCH_LOAD_KEYS=$keys DRILL_ACKED=$acked python3 load/drill.py
bash scripts/services.sh >/dev/null

q() { psql -h 127.0.0.1 -U postgres -d "$DB" -Atc "$1"; }
for _ in $(seq 600); do
  missing=$(comm -23 <(sort "$acked") <(q "SELECT event_id FROM webhook_events WHERE processed_at IS NOT NULL" | sort) | wc -l)
  [ "$missing" = 0 ] && break; sleep 0.2
done
echo "webhooks acknowledged: $(grep -c "" "$acked"), processed: $(q 'SELECT COUNT(*) FROM webhook_events WHERE processed_at IS NOT NULL'), acknowledged but not processed: $missing"
twice=$(q "SELECT COUNT(*) FROM (SELECT payment_id FROM payment_transitions WHERE to_status='succeeded' AND from_status<>'succeeded' GROUP BY payment_id HAVING COUNT(*)>1) x")
echo "payments credited twice: $twice"
[ "$missing" = 0 ] && [ "$twice" = 0 ] && echo "drill passed" || { echo "DRILL FAILED"; exit 1; }
