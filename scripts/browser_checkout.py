"""The sandbox checkout page in a real browser (run by scripts/browser-test.sh).

Needs PAYORCH_BASE (the API, sandbox mounted at /sandbox), PAYORCH_KEY (an
API key) and BROWSER_TMP (a scratch folder). Each case initializes a
payment with a callback_url on a small HTTP server run here, opens the
checkout link in a fresh Chromium, checks the amount shown, pays or
declines, then checks that the browser came back to the callback_url with
the reference and that the payment reached its final status.
"""

import http.server
import json
import os
import re
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid

from playwright.sync_api import sync_playwright

BASE = os.environ["PAYORCH_BASE"].rstrip("/")
KEY = os.environ["PAYORCH_KEY"]
SCRATCH = os.environ.get("BROWSER_TMP") or tempfile.mkdtemp()
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEADLINE_S = 15.0


# ---- the merchant's callback endpoint ----------------------------------------


class Callbacks:
    """Records every GET to the callback server; waiters wake on each hit."""

    def __init__(self):
        self.hits = []
        self.cond = threading.Condition()

    def record(self, path):
        with self.cond:
            self.hits.append(path)
            self.cond.notify_all()

    def wait_for(self, order, reference, timeout=DEADLINE_S):
        """The first hit on /return/<order> carrying `reference`, or None."""

        def found():
            for path in self.hits:
                url = urllib.parse.urlsplit(path)
                query = urllib.parse.parse_qs(url.query)
                refs = query.get("reference", []) + query.get("trxref", [])
                if url.path == f"/return/{order}" and reference in refs:
                    return path
            return None

        with self.cond:
            return self.cond.wait_for(found, timeout=timeout)


CALLBACKS = Callbacks()


class CallbackHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        CALLBACKS.record(self.path)
        body = b"<!doctype html><title>Thanks</title><h1>Back at the shop</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


def start_callback_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CallbackHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# ---- payorch API -------------------------------------------------------------


def api(method, path, body=None, idempotency_key=None):
    headers = {"Authorization": f"Bearer {KEY}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    req = urllib.request.Request(BASE + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def initialize(amount, currency, callback_url):
    status, payment = api(
        "POST",
        "/v1/payments/initialize",
        {
            "amount": amount,
            "currency": currency,
            "email": "ada@example.com",
            "callback_url": callback_url,
        },
        idempotency_key=str(uuid.uuid4()),
    )
    assert status == 201, f"initialize {amount} {currency}: expected 201, got {status} {payment}"
    assert payment["status"] == "pending", f"initialize: status {payment['status']!r}, expected pending"
    assert payment["authorization_url"], f"initialize: no authorization_url in {payment}"
    return payment


def wait_for_status(reference, expected, timeout=DEADLINE_S):
    """Polls GET /v1/payments/{reference} until it leaves created/pending or the deadline."""
    deadline = time.monotonic() + timeout
    payment = None
    while time.monotonic() < deadline:
        status, payment = api("GET", f"/v1/payments/{urllib.parse.quote(reference)}")
        assert status == 200, f"GET {reference}: expected 200, got {status} {payment}"
        if payment["status"] not in ("created", "pending"):
            break
        time.sleep(0.1)  # poll interval, not synchronisation: the loop waits on the state
    assert payment and payment["status"] == expected, (
        f"{reference}: expected status {expected!r} within {timeout:.0f} s, got "
        f"{payment and payment['status']!r} (transitions: {payment and payment.get('transitions')})"
    )
    return payment


# ---- browser -----------------------------------------------------------------


class Browser:
    """A fresh Chromium with its own empty user data dir, closed on exit."""

    def __init__(self, playwright, javascript=True):
        self.playwright = playwright
        self.javascript = javascript

    def __enter__(self):
        profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=SCRATCH)
        self.context = self.playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            java_script_enabled=self.javascript,
        )
        self.context.set_default_timeout(DEADLINE_S * 1000)
        return self.context.pages[0] if self.context.pages else self.context.new_page()

    def __exit__(self, *_):
        self.context.close()


def amount_pattern(currency, major, fraction):
    """`NGN 1,500.75`: major units grouped by thousands, then exactly the decimals in `fraction` (none: none)."""
    grouped = re.sub(r"\B(?=(\d{3})+$)", ",", major)
    tail = rf"\.{fraction}" if fraction else ""
    return re.compile(rf"{currency}\s*{grouped}{tail}(?![\d.,]*\d)")


def open_checkout(page, payment, currency, major, fraction):
    response = page.goto(payment["authorization_url"])
    assert response and response.status == 200, (
        f"checkout page: expected 200, got {response and response.status}"
    )
    text = page.locator("body").inner_text()
    shown = amount_pattern(currency, major, fraction)
    expected = f"{currency} {int(major):,}" + (f".{fraction}" if fraction else "")
    assert shown.search(text), f"checkout page should show {expected!r} (major units); page text: {text!r}"
    assert "minor units" not in text, f"checkout page shows minor units: {text!r}"
    assert payment["reference"] in text, f"checkout page should show the reference {payment['reference']}"
    pay = page.get_by_role("button", name=re.compile(r"^Pay\b"))
    decline = page.get_by_role("button", name=re.compile(r"^Decline\b"))
    assert pay.count() == 1, f"expected one button named Pay…, found {pay.count()}"
    assert decline.count() == 1, f"expected one button named Decline…, found {decline.count()}"
    assert pay.is_enabled() and decline.is_enabled(), "Pay and Decline should be enabled"
    return pay, decline


def check_back_at_merchant(page, order, reference, callback_base):
    hit = CALLBACKS.wait_for(order, reference)
    assert hit, (
        f"the callback_url {callback_base}/return/{order} was never reached with reference "
        f"{reference} (hits: {CALLBACKS.hits}; browser at {page.url})"
    )
    page.wait_for_url(re.compile(re.escape(f"{callback_base}/return/{order}") + r"\?"))


def focus_by_tab(page, name_prefix, max_tabs=20):
    """Presses Tab until the focused element is a button whose name starts with `name_prefix`."""
    for presses in range(1, max_tabs + 1):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => { const e = document.activeElement;"
            " return e ? [e.tagName, (e.innerText || e.value || '').trim()] : null }"
        )
        if focused and focused[0] == "BUTTON" and focused[1].startswith(name_prefix):
            return presses
    raise AssertionError(f"Tab never focused the {name_prefix} button in {max_tabs} presses")


# ---- cases -------------------------------------------------------------------


def case(pw, callback_base, *, name, amount, currency, major, fraction, act, expected,
         javascript=True):
    order = uuid.uuid4().hex[:12]
    payment = initialize(amount, currency, f"{callback_base}/return/{order}")
    reference = payment["reference"]
    with Browser(pw, javascript=javascript) as page:
        pay, decline = open_checkout(page, payment, currency, major, fraction)
        act(page, pay, decline)
        final = wait_for_status(reference, expected)
        causes = [t["cause"] for t in final.get("transitions", [])]
        event = "webhook:charge_succeeded" if expected == "succeeded" else "webhook:charge_failed"
        assert any(c.startswith(event) for c in causes), (
            f"{name}: expected a {event} transition, got {causes}"
        )
        check_back_at_merchant(page, order, reference, callback_base)


def click(button_name):
    def act(page, pay, decline):
        (pay if button_name == "Pay" else decline).click()
    return act


def keyboard(button_name, key):
    def act(page, pay, decline):
        focus_by_tab(page, button_name)
        page.keyboard.press(key)
    return act


def main():
    server, callback_base = start_callback_server()
    ngn = dict(amount=150075, currency="NGN", major="1500", fraction="75")
    cases = [
        ("a: Pay (click) -> callback, succeeded", dict(**ngn, act=click("Pay"), expected="succeeded")),
        ("b: Decline (click) -> callback, failed", dict(**ngn, act=click("Decline"), expected="failed")),
        ("c: Pay with JavaScript disabled", dict(**ngn, act=click("Pay"), expected="succeeded", javascript=False)),
        ("d: Pay by keyboard (Tab, Enter)", dict(**ngn, act=keyboard("Pay", "Enter"), expected="succeeded")),
        ("e: XOF (0 decimals) shown as XOF 5,000, Pay by keyboard (Tab, Space)",
         dict(amount=5000, currency="XOF", major="5000", fraction="", act=keyboard("Pay", "Space"),
              expected="succeeded")),
    ]
    passed = failed = 0
    started = time.monotonic()
    with sync_playwright() as pw:
        for name, args in cases:
            t0 = time.monotonic()
            try:
                case(pw, callback_base, name=name, **args)
            except AssertionError as err:
                failed += 1
                print(f"FAIL {name} ({time.monotonic() - t0:.1f} s): {err}", flush=True)
            except Exception:  # a Playwright timeout or similar: a failure, with its trace
                failed += 1
                print(f"FAIL {name} ({time.monotonic() - t0:.1f} s):", flush=True)
                traceback.print_exc()
            else:
                passed += 1
                print(f"ok   {name} ({time.monotonic() - t0:.1f} s)", flush=True)
    server.shutdown()
    print(f"browser checkout: {time.monotonic() - started:.1f} s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
