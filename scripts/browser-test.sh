#!/usr/bin/env bash
# End-to-end tests in a real browser (Debian's Chromium driven by Python
# Playwright): `payorch serve` in embedded mode (temporary SQLite,
# in-process queue, sandbox at /sandbox) on a free port, then the sandbox
# checkout page (scripts/browser_checkout.py) and the operator console
# (scripts/browser_console.py, with axe-core from npm; screenshots in
# target/console-screenshots/). BIN: the payorch binary to test.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug/payorch}
PLAYWRIGHT_VERSION=1.65.2
GREENLET_VERSION=3.5.6
VENV=.venv-browser

if [ ! -x /usr/bin/chromium ]; then
  echo "browser-test: installing Debian's chromium" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('playwright') != '$PLAYWRIGHT_VERSION')" 2>/dev/null; then
  echo "browser-test: installing playwright $PLAYWRIGHT_VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  # The wheel carries its own driver; the browser is Debian's (never `playwright install`).
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "playwright==$PLAYWRIGHT_VERSION" "greenlet==$GREENLET_VERSION"
fi

# Embedded mode: nothing outside configured.
unset AMQP_URL REDIS_URL DATABASE_URL PAYORCH_PROVIDER PAYSTACK_BASE_URL PAYORCH_SANDBOX_WEBHOOK_URL
work=$(mktemp -d -t payorch-browser.XXXXXX)
api=
cleanup() {
  status=$?
  if [ -n "$api" ]; then
    kill -TERM "$api" 2>/dev/null || true
    wait "$api" 2>/dev/null || true
  fi
  if [ "$status" != 0 ] && [ -f "$work/serve.log" ]; then
    echo "== last lines of the server log ==" >&2
    tail -n 40 "$work/serve.log" >&2 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export DATABASE_URL="sqlite://$work/payorch.db?mode=rwc"
# Port 0: the kernel picks a free port; serve prints the address it got.
export PAYORCH_HTTP_ADDR=127.0.0.1:0
export PAYORCH_RATE_LIMITS="initialize=60/60,verify=60/60,unauthenticated=60/60"
export RUST_LOG=${RUST_LOG:-warn}

# The key first: this also migrates the new database, before serve opens it.
key=$("$BIN" apikey create --name browser | tail -n1)
[[ $key == po_sk_* ]] || { echo "browser-test: no API key from '$BIN apikey create'" >&2; exit 1; }

"$BIN" serve >"$work/serve.log" 2>&1 &
api=$!
base=
for _ in $(seq 300); do
  base=$(sed -n 's|^payorch (embedded mode) on \(http://[0-9.]*:[0-9]*\).*|\1|p' "$work/serve.log" | head -n1)
  [ -n "$base" ] && curl -fs "$base/healthz" >/dev/null && break
  kill -0 "$api" 2>/dev/null || { echo "browser-test: payorch serve exited" >&2; exit 1; }
  sleep 0.1
done
curl -fs "$base/healthz" >/dev/null || { echo "browser-test: payorch never became healthy" >&2; exit 1; }

PAYORCH_BASE=$base PAYORCH_KEY=$key BROWSER_TMP=$work "$VENV/bin/python" scripts/browser_checkout.py

# The operator console: an operator, an open review (a signed webhook for a
# transaction payorch never made: `unknown_transaction`), axe-core from npm.
AXE_VERSION=4.10.3
axe="$VENV/axe-core-$AXE_VERSION/axe.min.js"
if [ ! -f "$axe" ]; then
  echo "browser-test: fetching axe-core $AXE_VERSION from npm" >&2
  mkdir -p "$VENV/axe-core-$AXE_VERSION"
  (cd "$work" && npm pack --silent "axe-core@$AXE_VERSION" >/dev/null && tar -xzf "axe-core-$AXE_VERSION.tgz")
  cp "$work/package/axe.min.js" "$axe"
fi
password=$("$BIN" operator create --name console-test | tail -n1)
token=$("$BIN" operator token console-test | tail -n1)
[[ $token == pot_* ]] || { echo "browser-test: no operator token" >&2; exit 1; }
secret=$("$VENV/bin/python" - "$work/payorch.db" <<'PY'
import sqlite3, sys
row = sqlite3.connect(sys.argv[1]).execute(
    "SELECT value FROM installation_settings WHERE name = 'sandbox_secret_key'").fetchone()
print(row[0])
PY
)
body='{"event":"charge.success","data":{"id":424242,"reference":"ext-never-made-1","amount":5000,"currency":"NGN","status":"success"}}'
signature=$(printf '%s' "$body" | openssl dgst -sha512 -hmac "$secret" -r | cut -d' ' -f1)
curl -fs -o /dev/null -X POST "$base/v1/webhooks/sandbox" -H 'content-type: application/json' \
  -H "x-paystack-signature: $signature" --data-binary "$body"
review=
for _ in $(seq 100); do
  review=$(curl -fs "$base/v1/operator/reviews?open=true" -H "Authorization: Bearer $token" |
    "$VENV/bin/python" -c 'import json, sys; r = json.load(sys.stdin); print(r[0]["id"] if r else "")')
  [ -n "$review" ] && break
  sleep 0.1
done
[ -n "$review" ] || { echo "browser-test: the unknown transaction opened no review" >&2; exit 1; }
# A dead letter: a signed body that is not an event is parked on receipt.
parked_body='{"not-an-event":true,"data":{"reference":"dlq-1"}}'
signature=$(printf '%s' "$parked_body" | openssl dgst -sha512 -hmac "$secret" -r | cut -d' ' -f1)
curl -fs -o /dev/null -X POST "$base/v1/webhooks/sandbox" -H 'content-type: application/json' \
  -H "x-paystack-signature: $signature" --data-binary "$parked_body"
dead=$(curl -fs "$base/v1/operator/dead-letters?queue=webhooks" -H "Authorization: Bearer $token" |
  "$VENV/bin/python" -c 'import json, sys; d = json.load(sys.stdin); print(d[0]["id"] if d else "")')
[ -n "$dead" ] || { echo "browser-test: the unusable webhook was not parked" >&2; exit 1; }
mkdir -p target/console-screenshots
# The console test also makes a payment and a webhook endpoint with the merchant key.
PAYORCH_BASE=$base PAYORCH_KEY=$key CONSOLE_NAME=console-test CONSOLE_PASSWORD=$password CONSOLE_REVIEW_ID=$review \
  CONSOLE_DEAD_LETTER_ID=$dead \
  AXE_JS=$axe SCREENSHOTS=target/console-screenshots BROWSER_TMP=$work \
  "$VENV/bin/python" scripts/browser_console.py
