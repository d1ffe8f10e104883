"""The operator console (/console) in a real browser, as an operator uses it.

Needs, from the environment:
  PAYORCH_BASE       the server, e.g. http://127.0.0.1:PORT
  PAYORCH_KEY        a merchant API key (po_sk_…): the test makes a payment
                     and a webhook endpoint with it
  CONSOLE_NAME       an operator's name
  CONSOLE_PASSWORD   that operator's password
  CONSOLE_REVIEW_ID  an open review to resolve (empty: that step is skipped)
  CONSOLE_DEAD_LETTER_ID  a message parked in the webhooks dead-letter queue
                     (a body that is not an event) to inspect and replay
                     (empty: that step is skipped)
  AXE_JS             path to axe.min.js (npm package axe-core)
  SCREENSHOTS        a folder for overview.png, payments.png, payment.png,
                     reviews.png, dead-letters.png, endpoints.png,
                     clients.png, connectors.png, audit.png (the names
                     docs/operations.md shows under docs/console/)
  BROWSER_TMP        (optional) a scratch folder for the browser profile

Steps, one line each: through the merchant API, a payment whose email and
metadata carry <script> and <img onerror> and a webhook endpoint on a port
nothing listens on; then in the browser: sign-in redirect, a wrong password
(401 and a message), signing in, the overview (and its 5 s refresh),
searching for that payment and opening it (its timeline; the markup shown
as text, never run), resolving a review with a note that holds a <script>
tag, inspecting and replaying a dead letter, redelivering an event to the
endpoint and disabling it (two steps), creating an API client, using its
key, rotating it with a grace period (both keys work), revoking it (its
keys stop within PAYORCH_AUTH_CACHE_MS), the connectors (breaker, refresh),
the audit log showing the note as text and every action, Tab-only
navigation on every page, axe-core on every page, signing out. Console
errors, page errors and dialogs (an alert() would be an XSS) fail the run.
Exits 1 on any failure.
"""

import json
import os
import re
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["PAYORCH_BASE"].rstrip("/")
KEY = os.environ["PAYORCH_KEY"]
NAME = os.environ["CONSOLE_NAME"]
PASSWORD = os.environ["CONSOLE_PASSWORD"]
REVIEW_ID = os.environ.get("CONSOLE_REVIEW_ID", "").strip()
DEAD_LETTER_ID = os.environ.get("CONSOLE_DEAD_LETTER_ID", "").strip()
AXE_JS = os.environ["AXE_JS"]
SCREENSHOTS = os.environ.get("SCREENSHOTS") or "target/console-screenshots"
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
REFRESH_S = 5.0  # the overview's and connectors' refresh interval (console.js REFRESH_MS)
REVOKE_S = 15.0  # a revoked key stops within PAYORCH_AUTH_CACHE_MS (default 5 s) on every instance
MAX_TABS = 60  # the payment search's date fields take a Tab per part

# A note an attacker would like to see run: it must come back as plain text.
NOTE = 'browser test <script>window.__xss = 1; alert(1)</script> & "quoted"'
SIGN_IN_URL = re.compile(re.escape(f"{BASE}/console/sign-in") + r"(\?.*)?$")
WRONG_PASSWORD_MESSAGE = "Name or password is wrong"
NAV_LINKS = {
    "#/overview": "Overview",
    "#/payments": "Payments",
    "#/reviews": "Reviews",
    "#/dead-letters": "Dead letters",
    "#/endpoints": "Endpoints",
    "#/clients": "API clients",
    "#/connectors": "Connectors",
    "#/audit": "Audit log",
}
# Content each console page shows once loaded (test ids; any one of several).
PAGE_READY = {
    "overview": ("open-reviews",),
    "payments": ("payment-results",),
    "reviews": ("reviews",),
    "dead-letters": ("dead-letters", "dead-letters-empty"),  # the table, or "No parked messages in …"
    "endpoints": ("endpoints",),
    "clients": ("clients",),
    "connectors": ("connector-health",),
    "audit": ("audit",),
}
# A payment whose merchant-controlled text is markup: shown as text, never run.
XSS_EMAIL = "<script>alert(1)</script>@example.com"
XSS_METADATA = {"note": "<script>window.__xss = 1</script>", "html": "<img src=x onerror=window.__xss=2>"}
XSS_AMOUNT = (500000, "NGN", "NGN 5,000.00")
# A webhook endpoint nobody answers at (the discard port on loopback; embedded mode allows loopback).
UNREACHABLE_URL = "http://127.0.0.1:9/payorch-browser-test"
CLIENT_NAME = "browser-client"
KEY_PATTERN = re.compile(r"^po_sk_[0-9a-f]{64}$")
# Any route that needs an API key: an unknown payment is 404 for a working key, 401 otherwise.
KEY_PROBE = "/v1/payments/does-not-exist"
# The parked body is raw text in the message (JSON in a JSON string: its quotes
# escaped) or parsed JSON: either way its key shows quoted in the <pre>.
PARKED_KEY = re.compile(r'\\?"not-an-event\\?"')


def step(message):
    print(f"console: {message}", flush=True)


# ---- the merchant API ---------------------------------------------------------


def merchant(method, path, body=None, key=KEY):
    """A merchant API request with `key`: (status, parsed JSON body or None)."""
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(BASE + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def key_status(key):
    return merchant("GET", KEY_PROBE, key=key)[0]


@dataclass
class Made:
    """What the test made through the merchant API before opening the console."""

    payment_id: str
    reference: str
    connector: str
    endpoint_id: str
    event_id: str  # an event of the merchant's to redeliver ("" when there is none)


def prepare():
    reference = f"browser-xss-{uuid.uuid4().hex[:12]}"
    amount, currency, _ = XSS_AMOUNT
    status, payment = merchant(
        "POST",
        "/v1/payments/initialize",
        {"amount": amount, "currency": currency, "email": XSS_EMAIL, "reference": reference, "metadata": XSS_METADATA},
    )
    assert status == 201, f"initialize the <script> payment: expected 201, got {status} {payment}"
    assert payment["email"] == XSS_EMAIL, f"the email came back as {payment['email']!r}"
    step(f"payment {reference} made with <script> in its email and metadata ({payment['provider']})")

    status, endpoint = merchant(
        "POST", "/v1/webhook-endpoints", {"url": UNREACHABLE_URL, "description": "browser test: nobody listens"}
    )
    assert status == 201, f"register {UNREACHABLE_URL}: expected 201, got {status} {endpoint}"
    step(f"webhook endpoint {endpoint['id']} registered at {UNREACHABLE_URL}")

    status, events = merchant("GET", "/v1/events?limit=1")
    assert status == 200, f"GET /v1/events: expected 200, got {status} {events}"
    event_id = events["data"][0]["id"] if events.get("data") else ""
    return Made(payment["id"], reference, payment["provider"], endpoint["id"], event_id)


# ---- what the page says behind our back ------------------------------------


class Watch:
    """Console errors, uncaught page errors and dialogs, all failures unless expected.

    A 401 that the test provokes (the wrong password, the session probe
    before signing in) makes Chromium log "Failed to load resource: … 401";
    those are allowed only inside `expecting_401()`.
    """

    def __init__(self, page):
        self.errors = []
        self.dialogs = []
        self.allow_401 = False
        page.on("console", self.on_console)
        page.on("pageerror", lambda err: self.errors.append(f"pageerror: {err}"))
        page.on("dialog", self.on_dialog)

    def on_console(self, msg):
        if msg.type != "error":
            return
        if self.allow_401 and re.search(r"status of 401\b", msg.text):
            return
        self.errors.append(f"console.error: {msg.text} ({msg.location.get('url', '')})")

    def on_dialog(self, dialog):
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    @contextmanager
    def expecting_401(self):
        self.allow_401 = True
        try:
            yield
        finally:
            self.allow_401 = False

    def check(self):
        assert not self.dialogs, f"dialogs opened (script ran?): {self.dialogs}"
        assert not self.errors, "errors in the browser console:\n  " + "\n  ".join(self.errors)


# ---- helpers ------------------------------------------------------------------


def screenshot(page, name):
    os.makedirs(SCREENSHOTS, exist_ok=True)
    path = os.path.join(SCREENSHOTS, name)
    page.screenshot(path=path, full_page=True)
    return path


def console_page_ready(page, route):
    """Waits until `route`'s content is drawn (and the header knows the operator)."""
    expect(page.get_by_test_id("signed-in-as")).to_have_text(f"Signed in as {NAME}")
    first, *others = PAGE_READY[route]
    ready = page.get_by_test_id(first)
    for other in others:
        ready = ready.or_(page.get_by_test_id(other))
    expect(ready).to_be_visible()


def go_by_nav(page, label, route):
    page.get_by_role("navigation", name="Console").get_by_role("link", name=label, exact=True).click()
    page.wait_for_url(re.compile(rf"/console#/{route}$"))
    console_page_ready(page, route)
    link = page.get_by_role("link", name=label, exact=True)
    expect(link).to_have_attribute("aria-current", "page")


AXE = None


def run_axe(page, where):
    """axe-core on the current page; fails on serious or critical violations.

    The page's CSP forbids inline scripts, so add_script_tag is out; code
    run through page.evaluate is not subject to it.
    """
    global AXE
    if AXE is None:
        with open(AXE_JS, encoding="utf-8") as f:
            AXE = f.read()
    # A trailing expression so that evaluate returns a string, not axe's IIFE result.
    loaded = page.evaluate(AXE + "\n;typeof window.axe")
    assert loaded == "object", f"axe-core did not load on {where}: typeof axe = {loaded}"
    violations = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.length, targets: v.nodes.slice(0, 3).map(n => n.target.join(' '))
        }))"""
    )
    for v in violations:
        print(f"  axe {where}: {v['impact']} {v['id']} ({v['nodes']} nodes: {v['targets']}): {v['help']}")
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"axe on {where}: serious/critical violations {[v['id'] for v in bad]}"
    return len(violations)


def focused(page):
    return page.evaluate(
        """() => {
            const e = document.activeElement;
            if (!e || e === document.body) return null;
            return {
                tag: e.tagName.toLowerCase(),
                id: e.id || '',
                href: e.getAttribute('href') || '',
                name: (e.getAttribute('aria-label') || e.innerText || e.value || '').trim().slice(0, 80),
                label: e.labels && e.labels.length ? e.labels[0].innerText.trim() : '',
            };
        }"""
    )


def tab_through(page, route):
    """Loads `route` afresh, presses Tab up to MAX_TABS times, returns what took focus in order."""
    page.goto("about:blank")
    page.goto(f"{BASE}/console#/{route}")
    console_page_ready(page, route)
    stops = []
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        stop = focused(page)
        if stop is None:
            continue  # focus left the document (past the last control): keep going, it wraps
        if stops and stop == stops[0]:
            break  # wrapped around
        stops.append(stop)
    return stops


def check_keyboard(page, route, expected_controls):
    """Tab reaches the skip link, the nav links, Sign out and `expected_controls`:
    [(tag, name or label)], or a function of the loaded page that returns them
    (for controls that depend on what the page lists)."""
    stops = tab_through(page, route)
    if callable(expected_controls):
        expected_controls = expected_controls(page)
    seen = [f"{s['tag']}:{s['name'] or s['label']}" for s in stops]
    assert stops, f"{route}: Tab focused nothing"
    first = stops[0]
    assert first["tag"] == "a" and first["href"] == "#main" and first["name"] == "Skip to content", (
        f"{route}: the first Tab should focus the skip link, got {first}"
    )
    hrefs = {s["href"] for s in stops if s["tag"] == "a"}
    for href, label in NAV_LINKS.items():
        assert href in hrefs, f"{route}: Tab never reached the nav link {label}; focus went {seen}"
    assert any(s["tag"] == "button" and s["name"] == "Sign out" for s in stops), (
        f"{route}: Tab never reached Sign out; focus went {seen}"
    )
    for tag, name in expected_controls:
        assert any(s["tag"] == tag and name in (s["name"], s["label"]) for s in stops), (
            f"{route}: Tab never reached {tag} {name!r}; focus went {seen}"
        )
    # The skip link works from the keyboard and leaves the route alone.
    page.locator("#skip-link").focus()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement && document.activeElement.id") == "main", (
        f"{route}: Enter on the skip link should focus <main>"
    )
    assert page.url.endswith(f"#/{route}"), f"{route}: the skip link changed the URL to {page.url}"
    return len(stops)


# ---- the steps ----------------------------------------------------------------


def sign_in(page, watch):
    with watch.expecting_401():
        page.goto(f"{BASE}/console")
        page.wait_for_url(SIGN_IN_URL)
    step("/console without a session goes to /console/sign-in")

    expect(page).to_have_title(re.compile("Sign in"))
    run_axe(page, "sign-in")
    step("sign-in page passes axe")

    # The form works by keyboard alone: Tab reaches the name, the password and the button.
    labels = []
    for _ in range(10):
        page.keyboard.press("Tab")
        stop = focused(page)
        if stop:
            labels.append(stop["label"] or stop["name"])
        if stop and stop["tag"] == "button":
            break
    assert labels[-3:] == ["Name", "Password", "Sign in"], f"sign-in Tab order: {labels}"

    page.get_by_label("Name").fill(NAME)
    page.get_by_label("Password").fill(PASSWORD + "-wrong")
    with watch.expecting_401():
        with page.expect_response(
            lambda r: urlsplit(r.url).path == "/console/sign-in" and r.request.method == "POST"
        ) as answer:
            page.get_by_role("button", name="Sign in").click()
        assert answer.value.status == 401, f"wrong password: expected 401, got {answer.value.status}"
        expect(page.get_by_role("alert")).to_contain_text(WRONG_PASSWORD_MESSAGE)
    run_axe(page, "sign-in with an error")
    step("wrong password refused (401, message shown)")

    page.get_by_label("Name").fill(NAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/console(#/overview)?$"))
    expect(page.get_by_test_id("signed-in-as")).to_have_text(f"Signed in as {NAME}")
    step(f"signed in as {NAME}")


def overview(page):
    console_page_ready(page, "overview")
    page.wait_for_url(re.compile(r"/console#/overview$"))
    table = page.get_by_test_id("open-reviews")
    expect(table.locator("caption")).to_have_text("Open reviews by kind")
    chart = page.get_by_test_id("open-reviews-chart")
    expect(chart).to_have_attribute("role", "img")
    expect(chart).to_have_attribute("aria-label", re.compile("open reviews by kind"))
    connectors_table = page.get_by_test_id("connectors")
    expect(connectors_table).to_be_visible()
    expect(connectors_table.locator("thead")).to_contain_text("Error rate")
    expect(connectors_table.locator("thead")).to_contain_text("p99")
    expect(page.get_by_test_id("queues")).to_be_visible()
    expect(page.get_by_test_id("outbox-lag")).to_contain_text("Outbox lag")
    expect(page.get_by_test_id("workers")).to_have_text(re.compile(r"^Connected workers: (\d+|unknown)$"))
    # The counts in the chart match the table.
    rows = table.locator("tbody tr").all_inner_texts()
    bars = chart.locator("rect").count()
    counted = [r for r in rows if "\t" in r]
    assert bars == len(counted), f"chart has {bars} bars, table has {len(counted)} kinds: {rows}"
    screenshot(page, "overview.png")
    step(f"overview shown ({len(counted)} kinds with open reviews, screenshot overview.png)")

    # Refreshes in place: the page is not reloaded, the sparklines gain a sample.
    page.evaluate("window.__sameDocument = true")
    page.wait_for_function(
        "() => document.querySelectorAll('svg.sparkline')[0]?.querySelector('polyline')"
        "?.getAttribute('points').split(' ').length >= 2",
        timeout=(REFRESH_S * 2 + 5) * 1000,
    )
    assert page.evaluate("window.__sameDocument === true"), "the overview reloaded the page to refresh"
    step("overview refreshed without reloading the page")
    run_axe(page, "overview")
    step("overview passes axe")


def payments(page, made):
    go_by_nav(page, "Payments", "payments")
    search = page.get_by_test_id("payment-search")
    search.get_by_label("Reference", exact=True).fill(made.reference)
    search.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_url(re.compile(r"/console#/payments\?reference=" + re.escape(quote(made.reference, safe="")) + "$"))
    results = page.get_by_test_id("payment-results")
    expect(results.locator("caption")).to_contain_text("Payments found")
    expect(results.locator("tbody tr")).to_have_count(1)
    row = results.locator("tbody tr").first
    expect(row).to_contain_text(XSS_AMOUNT[2])
    expect(row).to_contain_text(XSS_EMAIL)
    expect(page.get_by_role("status")).to_contain_text("1 payment(s) shown")
    screenshot(page, "payments.png")
    step(f"payments: the search by reference finds {made.reference} (screenshot payments.png)")

    # The search is in the hash: a reload shows it again.
    page.reload()
    console_page_ready(page, "payments")
    expect(search.get_by_label("Reference", exact=True)).to_have_value(made.reference)
    expect(results.locator("tbody tr")).to_have_count(1)
    run_axe(page, "payments")
    step("payments: the search survives a reload; passes axe")

    results.get_by_role("link", name=made.reference, exact=True).click()
    page.wait_for_url(re.compile(rf"/console#/payments/{re.escape(made.payment_id)}$"))
    detail = page.get_by_test_id("payment-detail")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Payment {made.reference}")
    expect(detail).to_contain_text(XSS_EMAIL)
    expect(detail).to_contain_text(XSS_AMOUNT[2])
    metadata = detail.locator("pre")
    expect(metadata).to_contain_text(XSS_METADATA["note"])
    expect(metadata).to_contain_text(XSS_METADATA["html"])
    timeline = page.get_by_test_id("timeline")
    expect(timeline.locator('li[data-kind="transition"], li[data-kind="provider_call"]').first).to_be_visible()
    assert page.evaluate("window.__xss === undefined"), "the payment's <script> or <img onerror> ran"
    assert page.locator("#view script, #view img").count() == 0, "the payment's markup became elements"
    screenshot(page, "payment.png")
    entries = timeline.locator("li").count()
    step(f"payment page: details and a timeline of {entries} entries, the markup shown as text (screenshot payment.png)")
    run_axe(page, "payment")
    step("payment page passes axe")


def reviews(page):
    go_by_nav(page, "Reviews", "reviews")
    expect(page.get_by_label("Kind")).to_be_visible()
    expect(page.get_by_label("Show")).to_have_value("open")
    if not REVIEW_ID:
        screenshot(page, "reviews.png")
        step("CONSOLE_REVIEW_ID empty: resolving a review skipped")
    else:
        row = page.get_by_test_id("reviews").locator(f'tr[data-review-id="{REVIEW_ID}"]')
        expect(row).to_be_visible()
        resolve = row.get_by_role("button", name=re.compile(r"^Resolve review \w+ of payment "))
        expect(resolve).to_have_attribute("aria-expanded", "false")
        resolve.click()
        expect(resolve).to_have_attribute("aria-expanded", "true")
        form = page.get_by_test_id("resolve-form")
        expect(form.get_by_label("Action")).to_be_focused()
        form.get_by_label("Action").select_option("dismiss")
        form.get_by_label("Note").fill(NOTE)
        with page.expect_response(
            lambda r: r.url.endswith(f"/v1/operator/reviews/{REVIEW_ID}/resolve")
        ) as answer:
            form.get_by_role("button", name="Resolve review", exact=True).click()
        assert answer.value.status == 200, f"resolve: expected 200, got {answer.value.status}"
        expect(page.get_by_role("status")).to_contain_text("Review resolved")
        # Showing open reviews: the resolved one is gone from the list.
        expect(page.get_by_test_id("reviews").locator(f'tr[data-review-id="{REVIEW_ID}"]')).to_have_count(0)
        step(f"review {REVIEW_ID} resolved (dismiss), 'Review resolved' announced")
        screenshot(page, "reviews.png")
        # And it is listed as resolved, with the note as text.
        page.get_by_label("Show").select_option("resolved")
        page.get_by_role("button", name="Show reviews").click()
        resolved = page.get_by_test_id("reviews").locator(f'tr[data-review-id="{REVIEW_ID}"]')
        expect(resolved).to_contain_text("resolved")
        resolved.locator("summary").click()
        expect(resolved).to_contain_text(NOTE)
        assert page.evaluate("window.__xss === undefined"), "the note's <script> ran on the reviews page"
    step("reviews page shown (screenshot reviews.png)")
    run_axe(page, "reviews")
    step("reviews passes axe")


def dead_letters(page):
    go_by_nav(page, "Dead letters", "dead-letters")
    expect(page.get_by_label("Queue", exact=True)).to_have_value("webhooks")
    if not DEAD_LETTER_ID:
        screenshot(page, "dead-letters.png")
        step("CONSOLE_DEAD_LETTER_ID empty: inspecting and replaying a dead letter skipped")
    else:
        table = page.get_by_test_id("dead-letters")
        expect(table).to_have_attribute("aria-label", "Dead letters")
        row = table.locator(f'tr[data-dead-letter-id="{DEAD_LETTER_ID}"]')
        expect(row).to_be_visible()
        expect(page.get_by_role("button", name="Replay all", exact=True)).to_be_enabled()
        inspect = row.get_by_role("button", name=f"Inspect dead letter {DEAD_LETTER_ID}", exact=True)
        expect(inspect).to_have_attribute("aria-expanded", "false")
        inspect.click()
        expect(inspect).to_have_attribute("aria-expanded", "true")
        message_id = inspect.get_attribute("aria-controls")
        assert message_id, "Inspect names no aria-controls once expanded"
        message = page.locator(f'[id="{message_id}"] pre')
        expect(message).to_be_visible()
        expect(message).to_contain_text(PARKED_KEY)
        step(f"dead letter {DEAD_LETTER_ID} inspected (its message shown as JSON text)")
        replay = row.get_by_role("button", name=f"Replay dead letter {DEAD_LETTER_ID}", exact=True)
        with page.expect_response(
            lambda r: urlsplit(r.url).path == "/v1/operator/dead-letters/replay" and r.request.method == "POST"
        ) as answer:
            replay.click()
        assert answer.value.status == 200, f"replay: expected 200, got {answer.value.status}"
        expect(page.get_by_role("status")).to_contain_text("1 message(s) replayed")
        # The list is drawn again (the message, still no event, may be parked again).
        expect(page.get_by_test_id("dead-letters").or_(page.get_by_test_id("dead-letters-empty"))).to_be_visible()
        step(f"dead letter {DEAD_LETTER_ID} replayed, '1 message(s) replayed' announced")
        screenshot(page, "dead-letters.png")
    step("dead letters page shown (screenshot dead-letters.png)")
    run_axe(page, "dead letters")
    step("dead letters passes axe")


def dead_letter_controls(page):
    """The dead-letters page's controls: the form, "Replay all" when there is
    something to replay, and the first listed message's buttons."""
    controls = [("select", "Queue"), ("button", "Show dead letters")]
    if page.get_by_role("button", name="Replay all", exact=True).is_enabled():
        controls.append(("button", "Replay all"))
    first = page.locator("tr[data-dead-letter-id]").first
    if first.count():
        letter = first.get_attribute("data-dead-letter-id")
        controls += [("button", f"Inspect dead letter {letter}"), ("button", f"Replay dead letter {letter}")]
    return controls


def endpoints(page, made):
    go_by_nav(page, "Endpoints", "endpoints")
    row = page.get_by_test_id("endpoints").locator(f'tr[data-endpoint-id="{made.endpoint_id}"]')
    expect(row).to_contain_text(UNREACHABLE_URL)
    enabled = row.locator("td").nth(2)
    expect(enabled).to_have_text("yes")
    status = page.get_by_role("status")

    if made.event_id:
        opener = row.get_by_role("button", name=f"Redeliver an event to {UNREACHABLE_URL}", exact=True)
        opener.click()
        expect(opener).to_have_attribute("aria-expanded", "true")
        form = page.get_by_test_id("redeliver-form")
        expect(form.get_by_label("Event ID")).to_be_focused()
        form.get_by_label("Event ID").fill(made.event_id)
        with page.expect_response(
            lambda r: urlsplit(r.url).path == f"/v1/operator/events/{made.event_id}/redeliver"
        ) as answer:
            form.get_by_role("button", name="Redeliver", exact=True).click()
        assert answer.value.status == 202, f"redeliver: expected 202, got {answer.value.status}"
        expect(status).to_contain_text(f"Event {made.event_id} queued for redelivery")
        expect(page.get_by_test_id("redeliver-form")).to_have_count(0)
        step(f"endpoints: event {made.event_id} redelivered to the endpoint")
    else:
        step("endpoints: the merchant has no event: redelivery skipped")

    disable = row.get_by_role("button", name=f"Disable endpoint {UNREACHABLE_URL}", exact=True)
    disable.click()
    confirm = row.get_by_role("button", name=f"Confirm disable endpoint {UNREACHABLE_URL}", exact=True)
    expect(confirm).to_have_text("Confirm disable")
    expect(status).to_contain_text('Select "Confirm disable"')
    expect(enabled).to_have_text("yes")  # nothing happens on the first click
    with page.expect_response(
        lambda r: urlsplit(r.url).path == f"/v1/operator/endpoints/{made.endpoint_id}/disable"
    ) as answer:
        confirm.click()
    assert answer.value.status == 200, f"disable: expected 200, got {answer.value.status}"
    expect(status).to_contain_text(f"Endpoint {UNREACHABLE_URL} disabled")
    expect(enabled).to_have_text("no")
    expect(row.get_by_role("button", name=re.compile(r"^(Confirm )?[Dd]isable endpoint"))).to_have_count(0)
    screenshot(page, "endpoints.png")
    step("endpoints: disabled in two steps, listed as enabled: no (screenshot endpoints.png)")
    run_axe(page, "endpoints")
    step("endpoints passes axe")


def endpoint_controls(page):
    """The filter form, and the first listed endpoint's buttons."""
    controls = [("input", "Client ID (empty: every client)"), ("button", "Show endpoints")]
    first = page.locator("tr[data-endpoint-id]").first
    if first.count():
        controls += [("button", b.get_attribute("aria-label")) for b in first.locator("button").all()]
    return controls


def wait_for_key_status(key, expected, timeout):
    deadline = time.monotonic() + timeout
    while True:
        status = key_status(key)
        if status == expected or time.monotonic() >= deadline:
            return status
        time.sleep(0.25)  # poll interval: the loop waits on the answer


def clients(page):
    go_by_nav(page, "API clients", "clients")
    page.get_by_label("Name of the new client").fill(CLIENT_NAME)
    with page.expect_response(
        lambda r: urlsplit(r.url).path == "/v1/operator/clients" and r.request.method == "POST"
    ) as answer:
        page.get_by_role("button", name="Create client", exact=True).click()
    assert answer.value.status == 201, f"create client: expected 201, got {answer.value.status}"
    client_id = answer.value.json()["client"]["id"]
    key_box = page.get_by_test_id("new-key")
    expect(key_box).to_have_value(KEY_PATTERN)
    expect(key_box).to_have_attribute("readonly", "")
    expect(key_box).to_be_focused()
    first_key = key_box.input_value()
    row = page.get_by_test_id("clients").locator(f'tr[data-client-id="{client_id}"]')
    expect(row).to_contain_text(CLIENT_NAME)
    expect(row).to_contain_text("active")
    status = key_status(first_key)
    assert status == 404, f"the new client's key: expected 404 from {KEY_PROBE}, got {status}"
    step(f"clients: {CLIENT_NAME} created, its key shown once and accepted by the merchant API")

    row.get_by_role("button", name=f"Rotate key of {CLIENT_NAME}", exact=True).click()
    form = page.get_by_test_id("rotate-form")
    grace = form.get_by_label("Grace period for the old key")
    expect(grace).to_be_focused()
    grace.select_option(label="1 hour")
    form.get_by_label("Note").fill("browser test: rotation")
    with page.expect_response(lambda r: urlsplit(r.url).path == f"/v1/operator/clients/{client_id}/rotate") as answer:
        form.get_by_role("button", name="Rotate key", exact=True).click()
    assert answer.value.status == 200, f"rotate: expected 200, got {answer.value.status}"
    expect(key_box).not_to_have_value(first_key)
    expect(key_box).to_have_value(KEY_PATTERN)
    second_key = key_box.input_value()
    expect(row).to_contain_text("old key valid until")
    for which, key in (("old", first_key), ("new", second_key)):
        status = key_status(key)
        assert status == 404, f"after rotating with a grace period, the {which} key: expected 404, got {status}"
    screenshot(page, "clients.png")
    step("clients: key rotated with 1 hour of grace, old and new keys both work (screenshot clients.png)")

    row.get_by_role("button", name=f"Revoke {CLIENT_NAME}", exact=True).click()
    form = page.get_by_test_id("revoke-form")
    expect(form.get_by_label("Note")).to_be_focused()
    form.get_by_label("Note").fill("browser test: revoked")
    with page.expect_response(lambda r: urlsplit(r.url).path == f"/v1/operator/clients/{client_id}/revoke") as answer:
        form.get_by_role("button", name="Confirm revoke", exact=True).click()
    assert answer.value.status == 200, f"revoke: expected 200, got {answer.value.status}"
    expect(page.get_by_role("status")).to_contain_text(f"{CLIENT_NAME} revoked")
    expect(row).to_contain_text("revoked at")
    expect(row.get_by_role("button")).to_have_count(0)
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    started = time.monotonic()
    for which, key in (("new", second_key), ("old", first_key)):
        status = wait_for_key_status(key, 401, REVOKE_S - (time.monotonic() - started))
        assert status == 401, f"the revoked client's {which} key still answers {status} after {REVOKE_S:.0f} s"
    step(f"clients: {CLIENT_NAME} revoked; both keys refused (401) after {time.monotonic() - started:.1f} s")
    run_axe(page, "clients")
    step("clients passes axe")


def client_controls(page):
    """The create form, and the first active client's buttons."""
    controls = [("input", "Name of the new client"), ("button", "Create client")]
    first = page.locator("tr[data-client-id]").filter(has=page.locator('button[data-action="rotate"]')).first
    if first.count():
        controls += [("button", b.get_attribute("aria-label")) for b in first.locator("button").all()]
    return controls


def connectors(page, made):
    go_by_nav(page, "Connectors", "connectors")
    health = page.get_by_test_id("connector-health")
    row = health.locator("tbody tr").filter(has=page.locator("td:first-child", has_text=re.compile(rf"^{re.escape(made.connector)}$")))
    expect(row).to_have_count(1)
    cells = row.locator("td")
    expect(cells.nth(1)).to_have_text("closed")
    calls = int(cells.nth(2).inner_text())
    assert calls >= 1, f"{made.connector}: the payment's initialize is not counted ({calls} calls)"
    chart = row.locator("svg.series-chart")
    expect(chart).to_have_attribute("role", "img")
    expect(chart).to_have_attribute("aria-label", re.compile(rf"^{re.escape(made.connector)}: calls per "))
    expect(page.get_by_test_id("routing")).to_be_visible()
    # Refreshes in place, like the overview.
    page.evaluate("window.__sameDocument = true")
    with page.expect_response(
        lambda r: urlsplit(r.url).path == "/v1/operator/connectors", timeout=(REFRESH_S * 2 + 5) * 1000
    ):
        pass
    assert page.evaluate("window.__sameDocument === true"), "the connectors page reloaded to refresh"
    expect(cells.nth(1)).to_have_text("closed")
    screenshot(page, "connectors.png")
    step(f"connectors: {made.connector} closed, {calls} call(s), refreshed in place (screenshot connectors.png)")
    run_axe(page, "connectors")
    step("connectors passes axe")


def audit(page, made):
    go_by_nav(page, "Audit log", "audit")
    table = page.get_by_test_id("audit")
    actions = ["api_client.create", "api_client.rotate", "api_client.revoke", "endpoint.disable"]
    if made.event_id:
        actions.append("event.redeliver")
    for action in actions:
        expect(table.locator("tbody tr").filter(has_text=action).first).to_be_visible()
    revoked = table.locator("tbody tr").filter(has_text="api_client.revoke").first
    expect(revoked.locator("td").nth(1)).to_have_text(f"operator:{NAME}")
    expect(revoked.locator("td").nth(4)).to_have_text("browser test: revoked")
    step(f"audit log shows {', '.join(actions)}")
    if DEAD_LETTER_ID:
        row = table.locator("tbody tr").filter(has_text="dead_letters.replay").filter(
            has_text=f"queue:webhooks/{DEAD_LETTER_ID}"
        )
        expect(row).to_have_count(1)
        expect(row.first.locator("td").nth(1)).to_have_text(f"operator:{NAME}")
        step("audit log shows dead_letters.replay")
    if REVIEW_ID:
        row = table.locator("tbody tr").filter(has_text="review.dismiss").filter(has_text=f"review:{REVIEW_ID}")
        expect(row).to_have_count(1)
        cells = row.first.locator("td")
        expect(cells.nth(1)).to_have_text(f"operator:{NAME}")
        expect(cells.nth(4)).to_have_text(NOTE)  # the <script> tag shown literally, as text
        assert row.first.locator("script").count() == 0, "the note became a <script> element"
        step("audit log shows review.dismiss with the note as plain text")
    assert page.evaluate("window.__xss === undefined"), "the note's <script> ran"
    screenshot(page, "audit.png")
    step("audit log shown (screenshot audit.png)")
    run_axe(page, "audit")
    step("audit passes axe")


def keyboard(page):
    count = check_keyboard(page, "overview", [])
    step(f"keyboard: overview reachable by Tab ({count} stops, skip link first)")
    controls = [("select", "Kind"), ("select", "Show"), ("button", "Show reviews")]
    count = check_keyboard(page, "reviews", controls)
    step(f"keyboard: reviews reachable by Tab ({count} stops)")
    count = check_keyboard(page, "dead-letters", dead_letter_controls)
    step(f"keyboard: dead letters reachable by Tab ({count} stops)")
    controls = [
        ("input", "Reference"),
        ("input", "Email"),
        ("select", "Status"),
        ("select", "Connector"),
        ("input", "Client ID"),
        ("input", "Created from (your local time)"),
        ("input", "Created before (your local time)"),
        ("button", "Search"),
    ]
    count = check_keyboard(page, "payments", controls)
    step(f"keyboard: payments reachable by Tab ({count} stops)")
    count = check_keyboard(page, "endpoints", endpoint_controls)
    step(f"keyboard: endpoints reachable by Tab ({count} stops)")
    count = check_keyboard(page, "clients", client_controls)
    step(f"keyboard: API clients reachable by Tab ({count} stops)")
    count = check_keyboard(page, "connectors", [])
    step(f"keyboard: connectors reachable by Tab ({count} stops)")
    count = check_keyboard(page, "audit", [])
    step(f"keyboard: audit reachable by Tab ({count} stops)")


def sign_out(page):
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(SIGN_IN_URL)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    step("signed out, back at the sign-in page")


# ---- main -----------------------------------------------------------------------


def main():
    started = time.monotonic()
    failed = None
    with sync_playwright() as pw:
        profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=SCRATCH)
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(DEADLINE_S * 1000)
        expect.set_options(timeout=DEADLINE_S * 1000)
        page = context.pages[0] if context.pages else context.new_page()
        watch = Watch(page)
        try:
            made = prepare()
            sign_in(page, watch)
            overview(page)
            payments(page, made)
            reviews(page)
            dead_letters(page)
            endpoints(page, made)
            clients(page)
            connectors(page, made)
            audit(page, made)
            keyboard(page)
            sign_out(page)
            watch.check()
            step("no console errors, page errors or dialogs")
        except AssertionError as err:
            failed = str(err)
        except Exception:  # a Playwright timeout or similar: a failure, with its trace
            failed = traceback.format_exc()
        finally:
            if failed:
                try:
                    print(f"  (failure screenshot: {screenshot(page, 'failure.png')}; at {page.url})")
                except Exception:
                    pass
                if watch.errors or watch.dialogs:
                    print(f"  browser errors: {watch.errors}; dialogs: {watch.dialogs}")
            context.close()
    print(f"browser console: {time.monotonic() - started:.1f} s")
    if failed:
        print(f"FAIL {failed}")
        print("0 passed, 1 failed")
        return 1
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
