#!/usr/bin/env bash
# Schema-driven API tests (part of `make test`): schemathesis against payorch's
# own OpenAPI document, served by `payorch serve` in embedded mode (SQLite in
# a temporary directory, in-process queue, sandbox provider) on a free port.
#
# The served document carries the request rules (currency enum, amount
# range, reference pattern, UUID Idempotency-Key...) and OpenAPI links
# (initialize -> get/verify/refunds), so generated payments are accepted
# (201) and the stateful phase follows initialize -> get/verify/refunds.
#
# Checks: not_a_server_error, response_schema_conformance, status_code_conformance.
# A paid payment (sandbox checkout) with one refund is seeded for each run and the
# two refund operations are pointed at it, so RefundView answers are checked too.
# The webhook endpoint is fuzzed too: its 401 (bad signature) and 404 (unknown
# provider) are documented answers.
#
# Environment: BIN (default target/debug/payorch), SEED, MAX_EXAMPLES,
# REPORT_DIR (write JUnit + HAR reports there; default: none).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV=.venv-schema
BIN=${BIN:-target/debug/payorch}
SEED=${SEED:-20261129}
MAX_EXAMPLES=${MAX_EXAMPLES:-100}
CHECKS=not_a_server_error,response_schema_conformance,status_code_conformance

if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
[ -x "$BIN" ] || { echo "schemathesis.sh: no executable $BIN (build it first)" >&2; exit 2; }

# A hermetic embedded instance: nothing from the caller's environment.
for var in $(compgen -e | grep -E '^(PAYORCH_|PAYSTACK_)' || true); do unset "$var"; done
unset DATABASE_URL REDIS_URL AMQP_URL
WORK=$(mktemp -d "${TMPDIR:-/tmp}/payorch-schema.XXXXXX")
export DATABASE_URL="sqlite://$WORK/payorch.db?mode=rwc" RUST_LOG=${RUST_LOG:-warn} NO_COLOR=1
# Far above what one run sends, so fuzzing meets no 429 (the limiter stays on).
export PAYORCH_RATE_LIMITS="initialize=100000/60,verify=100000/60,refund=100000/60,unauthenticated=100000/60"
# Both connectors (the sandbox's two dialects), so both webhook paths and pins answer.
export PAYORCH_PROVIDERS=paystack,flutterwave

api=
cleanup() {
  if [ -n "$api" ]; then kill -TERM "$api" 2>/dev/null || true; wait "$api" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

KEY=$("$BIN" apikey create --name schema | tail -n1)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for attempt in 1 2 3; do
  PORT=$(free_port)
  PAYORCH_HTTP_ADDR=127.0.0.1:$PORT "$BIN" serve >"$WORK/api.log" 2>&1 & api=$!
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break 2
    kill -0 "$api" 2>/dev/null || break
    sleep 0.1
  done
  kill -TERM "$api" 2>/dev/null || true; wait "$api" 2>/dev/null || true; api=
  [ "$attempt" = 3 ] && { echo "schemathesis.sh: payorch did not start:" >&2; tail -n 20 "$WORK/api.log" >&2; exit 1; }
done
BASE=http://127.0.0.1:$PORT
echo "payorch $("$BIN" --version | awk '{print $2}') on $BASE (database in $WORK)"

# A paid payment with one refund per run, so the refund operations reach their
# 201/200 answers (each run's config points them at its own payment: a refund
# without `amount` takes all that is left); nothing else makes a payment succeed.
auth=(-H "Authorization: Bearer $KEY")
seed_paid() { # $1: run name -> $WORK/$1.toml
  local ref=schema-$1-$$ access_code
  curl -fs "${auth[@]}" -H 'Content-Type: application/json' -X POST "$BASE/v1/payments/initialize" \
    -d "{\"amount\": 1000000000000, \"currency\": \"NGN\", \"email\": \"schema@example.com\", \"reference\": \"$ref\"}" >"$WORK/$1.paid.json"
  access_code=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["access_code"])' "$WORK/$1.paid.json")
  curl -fs -X POST "$BASE/sandbox/checkout/$access_code" -d outcome=success >/dev/null
  for _ in $(seq 100); do
    curl -fs "${auth[@]}" "$BASE/v1/payments/$ref" | grep -q '"status":"succeeded"' && break
    sleep 0.1
  done
  curl -fs "${auth[@]}" -H 'Content-Type: application/json' -X POST "$BASE/v1/payments/$ref/refunds" -d '{"amount": 100}' >/dev/null
  # No [cache]: schemathesis would replay earlier runs' failures from ./.schemathesis.
  printf '[cache]\nenabled = false\n\n[[operations]]\ninclude-path = "/v1/payments/{reference}/refunds"\nparameters = { "path.reference" = "%s" }\n' "$ref" >"$WORK/$1.toml"
}
seed_paid served

st() { # $1: run name (its config and report names), then schemathesis arguments
  local run=$1 reports=()
  shift
  if [ -n "${REPORT_DIR:-}" ]; then
    mkdir -p "$REPORT_DIR"
    reports=(--report junit,har --report-junit-path "$REPORT_DIR/$run.junit.xml" --report-har-path "$REPORT_DIR/$run.har.json")
  fi
  # One worker: CPython 3.11's ast.parse is not safe across threads
  # ("AST constructor recursion depth mismatch" inside hypothesis, seen once
  # in CI: a crash of the tool, with every generated case passing).
  "$VENV/bin/schemathesis" --config-file "$WORK/$run.toml" run "$@" "${reports[@]}" \
    -H "Authorization: Bearer $KEY" --checks "$CHECKS" --seed "$SEED" --max-examples "$MAX_EXAMPLES" \
    --continue-on-failure --generation-database none --workers 1 --no-color --output-sanitize true
}
status=0
echo "== schemathesis $SCHEMATHESIS_VERSION: $BASE/openapi.json =="
st served "$BASE/openapi.json" --phases examples,coverage,fuzzing,stateful || status=1
if [ "$status" != 0 ]; then
  echo "schemathesis found failures; server log (warnings):" >&2
  grep -v '^\s*$' "$WORK/api.log" | tail -n 20 >&2 || true
fi
exit "$status"
