"""The operator console (/console) in a real browser, as an operator uses it.

Needs, from the environment:
  PAYORCH_BASE       the server, e.g. http://127.0.0.1:PORT
  CONSOLE_NAME       an operator's name
  CONSOLE_PASSWORD   that operator's password
  CONSOLE_REVIEW_ID  an open review to resolve (empty: that step is skipped)
  CONSOLE_DEAD_LETTER_ID  a message parked in the webhooks dead-letter queue
                     (a body that is not an event) to inspect and replay
                     (empty: that step is skipped)
  AXE_JS             path to axe.min.js (npm package axe-core)
  SCREENSHOTS        a folder for overview.png, reviews.png, dead-letters.png,
                     audit.png
  BROWSER_TMP        (optional) a scratch folder for the browser profile

Steps, one line each: sign-in redirect, a wrong password (401 and a
message), signing in, the overview (and its 5 s refresh), resolving a
review with a note that holds a <script> tag, inspecting and replaying a
dead letter, the audit log showing that note as text (and the replay), Tab-only navigation on every page, axe-core on every page,
signing out. Console errors, page errors and dialogs (an alert() would be
an XSS) fail the run. Exits 1 on any failure.
"""

import os
import re
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from urllib.parse import urlsplit

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["PAYORCH_BASE"].rstrip("/")
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
REFRESH_S = 5.0  # the overview's refresh interval (console.js REFRESH_MS)
MAX_TABS = 40

# A note an attacker would like to see run: it must come back as plain text.
NOTE = 'browser test <script>window.__xss = 1; alert(1)</script> & "quoted"'
SIGN_IN_URL = re.compile(re.escape(f"{BASE}/console/sign-in") + r"(\?.*)?$")
WRONG_PASSWORD_MESSAGE = "Name or password is wrong"
NAV_LINKS = {
    "#/overview": "Overview",
    "#/reviews": "Reviews",
    "#/dead-letters": "Dead letters",
    "#/audit": "Audit log",
}
# Content each console page shows once loaded (test ids; any one of several).
PAGE_READY = {
    "overview": ("open-reviews",),
    "reviews": ("reviews",),
    "dead-letters": ("dead-letters", "dead-letters-empty"),  # the table, or "No parked messages in …"
    "audit": ("audit",),
}
# The parked body is raw text in the message (JSON in a JSON string: its quotes
# escaped) or parsed JSON: either way its key shows quoted in the <pre>.
PARKED_KEY = re.compile(r'\\?"not-an-event\\?"')


def step(message):
    print(f"console: {message}", flush=True)


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
    expect(page.get_by_test_id("connectors")).to_be_visible()
    expect(page.get_by_test_id("queues")).to_be_visible()
    expect(page.get_by_test_id("outbox-lag")).to_contain_text("Outbox lag")
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


def audit(page):
    go_by_nav(page, "Audit log", "audit")
    table = page.get_by_test_id("audit")
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
            sign_in(page, watch)
            overview(page)
            reviews(page)
            dead_letters(page)
            audit(page)
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
