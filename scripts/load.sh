#!/usr/bin/env bash
# make load: Locust, headless, 100 users, against payorch (release build) on
# PostgreSQL, Redis and RabbitMQ with two workers; then the money-safety
# invariants are checked in the database. THINK_MIN/THINK_MAX: a merchant
# user's pause between requests (default 0.5-1.5 s; 0.05-0.2 saturates
# this 2-core machine). Users start SPAWN_RATE per second (default 20).
# LOAD_BIN: a payorch binary to run instead of this tree's release build.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-100}
DURATION=${DURATION:-60s}
OUT=${OUT:-load-report}
PORT=${PORT:-18080}
DB=payorch_load_$$
PREFIX=load_$$

[ -x .venv/bin/locust ] || { python3 -m venv .venv && .venv/bin/pip install --quiet locust; }
# LOAD_BIN: another build to load instead (a side-by-side comparison).
if [ -n "${LOAD_BIN:-}" ]; then
  BIN=$LOAD_BIN
else
  cargo build --release --quiet --bin payorch
  BIN=target/release/payorch
fi

psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $DB"
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB REDIS_URL=redis://127.0.0.1:6379 \
  PAYORCH_PROVIDER=sandbox PAYSTACK_SECRET_KEY=sk_test_payorch_sandbox \
  PAYORCH_SECRETS_KEY="$(head -c 32 /dev/urandom | base64)" \
  PAYORCH_PROVIDERS=paystack,flutterwave PAYORCH_ROUTING="NGN=paystack:70,flutterwave:30" \
  AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f PAYORCH_QUEUE_PREFIX=$PREFIX PAYORCH_REDIS_PREFIX=$PREFIX \
  PAYORCH_HTTP_ADDR=127.0.0.1:$PORT RUST_LOG=warn \
  PAYORCH_RATE_LIMITS="initialize=600/60,verify=1200/60,unauthenticated=600/60"
keys=$(for i in $(seq 1 50); do $BIN apikey create --name "load-$i" | tail -n1; done | paste -sd, -)
cleanup() {
  kill -TERM "$api" 2>/dev/null || true
  RUN_DIR=run/load BIN=$BIN bash scripts/workers.sh stop >/dev/null || true
  wait "$api" 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
  # This run's queues, so runs do not pile up in the broker.
  for q in $(rabbitmqctl -q list_queues name 2>/dev/null | grep "^$PREFIX\."); do
    rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
  done
  # And its rate-limit counters (they would expire within a minute).
  redis-cli --scan --pattern "$PREFIX:*" | xargs -r redis-cli del >/dev/null || true
}
trap cleanup EXIT
mkdir -p run/load
$BIN serve >run/load/api.log 2>&1 & api=$!
RUN_DIR=run/load BIN=$BIN bash scripts/workers.sh start 2 >/dev/null
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

mkdir -p "$OUT"
PAYORCH_LOAD_OUT=$OUT PAYORCH_LOAD_KEYS=$keys /usr/bin/time -f "locust used %U s user + %S s system CPU (%P of one core)" -o "$OUT/locust-cpu.txt" .venv/bin/locust -f load/locustfile.py --headless -u "$USERS" -r "${SPAWN_RATE:-20}" \
  -t "$DURATION" --host "http://127.0.0.1:$PORT" --csv "$OUT/run" --html "$OUT/report.html" \
  --only-summary >"$OUT/locust.log" 2>&1 || true

echo "== latency per endpoint (ms), $USERS users, $DURATION, think ${THINK_MIN:-0.5}-${THINK_MAX:-1.5} s =="
python3 - "$OUT/run_stats.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(f"{'endpoint':32} {'requests':>9} {'failures':>9} {'p50':>6} {'p95':>6} {'p99':>6} {'req/s':>8}")
for r in rows:
    print(f"{r['Name']:32} {r['Request Count']:>9} {r['Failure Count']:>9} {r['50%']:>6} {r['95%']:>6} {r['99%']:>6} {float(r['Requests/s']):>8.1f}")
PY
cat "$OUT/locust-cpu.txt"
echo "== payorch's own time per response (Server-Timing app, ms): what it adds beyond the provider =="
python3 - "$OUT/app_timing.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(f"{'endpoint':32} {'responses':>9} {'p50':>8} {'p99':>8}")
for r in rows:
    print(f"{r['endpoint']:32} {r['count']:>9} {r['p50_ms']:>8} {r['p99_ms']:>8}")
PY

# Let the workers finish what was acknowledged before reading invariants.
for _ in $(seq 300); do
  left=$(rabbitmqctl -q list_queues name messages 2>/dev/null | awk -v q="$PREFIX.webhooks" '$1==q {print $2}')
  [ "${left:-0}" = 0 ] && break; sleep 0.2
done
echo "== money-safety invariants =="
q() { psql -h 127.0.0.1 -U postgres -d "$DB" -Atc "$1"; }
twice=$(q "SELECT COUNT(*) FROM (SELECT payment_id FROM payment_transitions WHERE to_status='succeeded' AND from_status<>'succeeded' GROUP BY payment_id HAVING COUNT(*)>1) x")
dupkey=$(q "SELECT COUNT(*) FROM (SELECT payment_id FROM idempotency_keys WHERE payment_id IS NOT NULL GROUP BY payment_id HAVING COUNT(*)>1) x")
echo "payments: $(q 'SELECT COUNT(*) FROM payments'), succeeded: $(q "SELECT COUNT(*) FROM payments WHERE status='succeeded'"), webhook events: $(q 'SELECT COUNT(*) FROM webhook_events')"
echo "payments credited twice: $twice; idempotency keys sharing a payment: $dupkey"
[ "$twice" = 0 ] && [ "$dupkey" = 0 ] && echo "invariants hold" || { echo "INVARIANT BROKEN"; exit 1; }
