/*
 * payorch operator console: the browser side of /console.
 *
 * Plain JavaScript, no framework, no build step; loaded with
 * <script src="/console/assets/console.js" defer> under a strict CSP
 * (script-src 'self', style-src 'self'), so:
 *   - no inline scripts, no inline style attributes, no eval;
 *   - every value that comes from the API is put in the page as text
 *     (textContent / createTextNode / setAttribute), never as HTML.
 *
 * Pages, by the location hash:
 *   #/overview  (default) counts, connectors, queues; refreshed every 5 s
 *   #/payments  search (the search in the hash: #/payments?reference=…);
 *               #/payments/{id} one payment, its details and timeline
 *   #/reviews   open and resolved reviews, with an inline "Resolve" form
 *   #/dead-letters  messages parked in a dead-letter queue: inspect, replay
 *   #/endpoints merchants' webhook endpoints (#/endpoints?client_id=…):
 *               recent attempts, disable, redeliver an event
 *   #/clients   API clients: create, rotate a key, revoke
 *   #/connectors  each connector's breaker, calls and latency, and the
 *               routing rules; refreshed every 5 s
 *   #/audit     the operator audit log
 *
 * Backend (same origin, cookie session):
 *   GET  /v1/operator/session           -> {operator, csrf_token} or 401
 *   (every request: the session cookie, and X-CSRF-Token from the page's
 *   <meta name="csrf-token">)
 *   GET  /v1/operator/overview
 *   GET  /v1/operator/payments?reference=&email=&status=&connector=&client_id=&from=&to=&before=
 *   GET  /v1/operator/payments/{id}     -> {payment, timeline}
 *   GET  /v1/operator/reviews?open=&kind=&limit=100
 *   POST /v1/operator/reviews/{id}/resolve  {action, note}
 *   GET  /v1/operator/dead-letters?queue=&limit=100   (oldest first)
 *   POST /v1/operator/dead-letters/replay  {queue, id?} -> {replayed}
 *   GET  /v1/operator/endpoints?client_id=
 *   POST /v1/operator/endpoints/{id}/disable  {note}
 *   POST /v1/operator/events/{id}/redeliver  {endpoint_id}
 *   GET  /v1/operator/clients
 *   POST /v1/operator/clients  {name} -> {client, key}
 *   POST /v1/operator/clients/{id}/rotate  {grace_seconds, note} -> {client, key}
 *   POST /v1/operator/clients/{id}/revoke  {note}
 *   GET  /v1/operator/connectors
 *   GET  /v1/operator/audit?limit=100
 *   POST /console/sign-out
 * Errors are application/problem+json: {type, title, status, detail, code, errors?}.
 */
(function () {
  'use strict';

  var SIGN_IN_URL = '/console/sign-in';
  var REFRESH_MS = 5000;
  var HISTORY_SIZE = 30;
  var LIST_LIMIT = 100;
  var SVG_NS = 'http://www.w3.org/2000/svg';

  var REVIEW_KINDS = [
    'refund_outcome_unknown',
    'charged_at_other_connector',
    'paid_after_final',
    'amount_mismatch',
    'unknown_transaction'
  ];

  // What an operator may choose. The server decides whether an action fits
  // a review's kind (422 review_action_not_applicable otherwise); the
  // provider's own action ("provider") is not an operator's to choose.
  var REVIEW_ACTIONS = [
    { value: 'dismiss', label: 'Dismiss (close without touching money)' },
    { value: 'mark_succeeded', label: 'Mark refund succeeded' },
    { value: 'mark_failed', label: 'Mark refund failed' },
    { value: 'refund_at_connector', label: 'Refund at the connector' }
  ];

  // The dead-letter queues an operator can look into; the first is the default.
  var DEAD_LETTER_QUEUES = ['webhooks', 'events'];

  var PAYMENT_STATUSES = ['created', 'pending', 'succeeded', 'failed', 'abandoned', 'refunded', 'partially_refunded'];
  var CONNECTOR_NAMES = ['paystack', 'flutterwave', 'sandbox'];
  // The payment search's fields, as the hash query and the API name them.
  var PAYMENT_SEARCH_FIELDS = ['reference', 'email', 'status', 'connector', 'client_id', 'from', 'to'];
  var TIMELINE_KINDS = ['transition', 'provider_call', 'webhook', 'refund', 'event', 'delivery_attempt', 'review'];
  // ISO 4217 currencies without a minor unit: their amounts are whole units.
  var ZERO_DECIMAL_CURRENCIES = ['XOF'];

  // How long a rotated client's old key keeps working.
  var GRACE_PERIODS = [
    { seconds: 0, label: 'None: the old key stops at once' },
    { seconds: 300, label: '5 minutes' },
    { seconds: 3600, label: '1 hour' },
    { seconds: 86400, label: '24 hours' }
  ];

  // Outcomes and states (of payments, provider calls, deliveries) by how they went, for their badge's colour.
  var GOOD_STATES = ['ok', 'succeeded', 'delivered', 'active', 'yes'];
  var WARN_STATES = ['pending', 'open', 'retrying', 'partially_refunded'];
  var BAD_STATES = ['failed', 'timeout', 'declined', 'error', 'abandoned', 'revoked', 'no'];

  var ROUTES = {
    overview: { title: 'Overview', render: renderOverview },
    payments: { title: 'Payments', render: renderPayments },
    reviews: { title: 'Reviews', render: renderReviews },
    'dead-letters': { title: 'Dead letters', render: renderDeadLetters },
    endpoints: { title: 'Endpoints', render: renderEndpoints },
    clients: { title: 'API clients', render: renderClients },
    connectors: { title: 'Connectors', render: renderConnectors },
    audit: { title: 'Audit log', render: renderAudit }
  };
  var DEFAULT_ROUTE = 'overview';

  // ---- state ----------------------------------------------------------------

  // The session's CSRF token comes with the page (a <meta> the server
  // fills in); every API request carries it in X-CSRF-Token.
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var session = { operator: null, csrfToken: csrfMeta ? csrfMeta.getAttribute('content') : null };
  // Bumped on every page change: a response that arrives for an older page is dropped.
  var generation = 0;
  var refreshTimer = null;
  // The last HISTORY_SIZE overview samples, kept across refreshes and page changes.
  var samples = { openReviews: [], webhooksWaiting: [] };
  // The reviews page's filter, kept while the console is open.
  var reviewFilter = { kind: '', show: 'open' };
  // The dead-letters page's queue, kept while the console is open.
  var deadLetterQueue = DEAD_LETTER_QUEUES[0];
  // The hash query of the payment search shown last, for a payment's "Back to the payments" link.
  var lastPaymentSearch = '';

  // ---- DOM helpers: text only, never HTML ------------------------------------

  /**
   * el('td', {className: 'mono'}, 'text', node, …): an element whose
   * attributes are set with setAttribute and whose string children become
   * text nodes. Safe for any API value.
   */
  function el(tag, attrs) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    appendChildren(node, Array.prototype.slice.call(arguments, 2));
    return node;
  }

  /** The same for SVG elements (createElementNS). */
  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    appendChildren(node, Array.prototype.slice.call(arguments, 2));
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (name) {
      var value = attrs[name];
      if (value === null || value === undefined || value === false) return;
      if (name === 'className') {
        node.setAttribute('class', value);
      } else {
        node.setAttribute(name, value === true ? '' : String(value));
      }
    });
  }

  function appendChildren(node, children) {
    children.forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      if (Array.isArray(child)) {
        appendChildren(node, child);
      } else if (typeof child === 'object' && child.nodeType) {
        node.appendChild(child);
      } else {
        node.appendChild(document.createTextNode(String(child)));
      }
    });
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  /** A value for a table cell; a missing one shows a dash that reads as "none". */
  function valueOrNone(value) {
    if (value === null || value === undefined || value === '') {
      return [el('span', { 'aria-hidden': 'true' }, '—'), el('span', { className: 'visually-hidden' }, 'none')];
    }
    return String(value);
  }

  /** An API timestamp as <time>, shown as "YYYY-MM-DD HH:MM:SS UTC". */
  function timeEl(iso) {
    if (!iso) return valueOrNone(null);
    var date = new Date(iso);
    if (isNaN(date.getTime())) return String(iso);
    var shown = date.toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
    return el('time', { datetime: String(iso) }, shown);
  }

  /** "refund_outcome_unknown" -> "refund outcome unknown" (for visible labels). */
  function humanize(word) {
    return String(word).replace(/_/g, ' ');
  }

  /** Names the page: its heading and the document title. */
  function setTitle(text) {
    document.getElementById('page-title').textContent = text;
    document.title = text + ' — payorch console';
  }

  /** "123 ms", or none. */
  function millis(value) {
    return isCount(value) ? Number(value) + ' ms' : valueOrNone(null);
  }

  /** 0.0123 -> "1.2 %", or none. */
  function percent(rate) {
    return isCount(rate) ? (Number(rate) * 100).toFixed(1) + ' %' : valueOrNone(null);
  }

  /**
   * An amount in minor units as major units with its currency:
   * (500000, "NGN") -> "NGN 5,000.00"; currencies without a minor unit
   * (XOF) have no decimals.
   */
  function money(minor, currency) {
    if (!isCount(minor)) return valueOrNone(null);
    var amount = Math.abs(Number(minor));
    var decimals = ZERO_DECIMAL_CURRENCIES.indexOf(currency) >= 0 ? 0 : 2;
    var scale = Math.pow(10, decimals);
    var text = String(Math.floor(amount / scale)).replace(/\B(?=(\d{3})+$)/g, ',');
    if (decimals) text += '.' + String(scale + amount % scale).slice(1);
    return (currency ? currency + ' ' : '') + (Number(minor) < 0 ? '-' : '') + text;
  }

  /** A state written out, coloured by how it went (the colour never carries it alone). */
  function stateBadge(state) {
    var value = String(state);
    var tone = GOOD_STATES.indexOf(value) >= 0 ? ' state-ok'
      : WARN_STATES.indexOf(value) >= 0 ? ' state-warn'
        : BAD_STATES.indexOf(value) >= 0 ? ' state-bad' : '';
    return el('span', { className: 'badge' + tone }, humanize(value));
  }

  /** A circuit breaker's state; known states get their colour class. */
  function breakerBadge(breaker) {
    var state = String(breaker);
    var known = ['closed', 'half_open', 'open'].indexOf(state) >= 0;
    return el('span', { className: known ? 'badge breaker-' + state : 'badge' }, humanize(state));
  }

  /** <p><label>…</label> control</p> for a form field (the control needs an id). */
  function field(label, control, className) {
    return el('p', { className: className || null }, el('label', { for: control.id }, label), control);
  }

  /** A <dl> of [term, description, description class?] items. */
  function detailsList(items, attrs) {
    return el('dl', attrs, items.map(function (item) {
      return [el('dt', null, item[0]), el('dd', { className: item[2] || null }, item[1])];
    }));
  }

  /**
   * A table with a caption and column headers (<th scope="col">).
   * columns: [{label, numeric?}], rows: arrays of cell contents (or a <tr>).
   */
  function table(caption, columns, rows, attrs) {
    var headRow = el('tr', null, columns.map(function (column) {
      return el('th', { scope: 'col', className: column.numeric ? 'number' : null }, column.label);
    }));
    var body = el('tbody');
    rows.forEach(function (row) {
      if (row.nodeType) {
        body.appendChild(row);
        return;
      }
      body.appendChild(el('tr', null, row.map(function (content, i) {
        return el('td', { className: columns[i].numeric ? 'number' : columns[i].className }, content);
      })));
    });
    if (!rows.length) {
      body.appendChild(el('tr', null, el('td', { colspan: columns.length }, 'Nothing to show.')));
    }
    return el('table', attrs, el('caption', null, caption), el('thead', null, headRow), body);
  }

  // ---- status region ----------------------------------------------------------

  var statusRegion;

  /** Announces `text` (role="status", aria-live="polite"); `isError` styles it as an error. */
  function announce(text, isError, items) {
    clear(statusRegion);
    var message = el('p', { className: isError ? 'status-error' : null }, isError ? 'Error: ' : null, text);
    if (items && items.length) {
      message.appendChild(el('ul', null, items.map(function (item) { return el('li', null, item); })));
    }
    statusRegion.appendChild(message);
  }

  function clearStatus() {
    clear(statusRegion);
  }

  /** Shows a problem+json (or a network failure) in the status region. */
  function announceProblem(err) {
    var problem = err && err.problem ? err.problem : { title: 'Something went wrong', detail: String(err && err.message || err) };
    var text = problem.title || 'Request failed';
    if (problem.detail) text += ': ' + problem.detail;
    var items = (problem.errors || []).map(function (fieldError) {
      return (fieldError.field ? fieldError.field + ': ' : '') + (fieldError.message || '');
    });
    announce(text, true, items);
  }

  // ---- HTTP -------------------------------------------------------------------

  /** An error carrying the server's problem+json (or one made up for a network failure). */
  function ProblemError(problem) {
    this.name = 'ProblemError';
    this.problem = problem;
    this.message = (problem.title || 'Request failed') + (problem.detail ? ': ' + problem.detail : '');
  }
  ProblemError.prototype = Object.create(Error.prototype);

  /**
   * fetch with the session cookie and the session's CSRF token; non-GET
   * requests carry a JSON body. A 401 means the session is gone: back to sign-in.
   * Resolves to the Response when it is 2xx, rejects with a ProblemError otherwise.
   */
  function request(method, path, body) {
    var headers = {
      Accept: 'application/json, application/problem+json',
      'X-CSRF-Token': session.csrfToken || ''
    };
    var init = { method: method, credentials: 'same-origin', headers: headers };
    if (method !== 'GET') {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body === undefined ? {} : body);
    }
    return fetch(path, init).then(function (response) {
      if (response.status === 401) {
        stopRefresh();
        location.assign(SIGN_IN_URL);
        throw new ProblemError({ title: 'Signed out', detail: 'Your session has ended; please sign in again.', status: 401 });
      }
      if (response.ok) return response;
      return response.text().then(function (text) {
        var problem;
        try {
          problem = JSON.parse(text);
        } catch (e) {
          problem = null;
        }
        if (!problem || typeof problem !== 'object') {
          problem = { title: 'HTTP ' + response.status, detail: response.statusText || '' };
        }
        if (!problem.status) problem.status = response.status;
        throw new ProblemError(problem);
      });
    }, function () {
      throw new ProblemError({ title: 'Network error', detail: 'The server could not be reached.' });
    });
  }

  /** request() and parse the JSON body. */
  function api(method, path, body) {
    return request(method, path, body).then(function (response) {
      return response.status === 204 ? null : response.json();
    });
  }

  // ---- routing ----------------------------------------------------------------

  /** The route named by the hash ("#/reviews" -> "reviews"), or null. */
  function currentRoute() {
    var match = /^#\/([a-z-]+)/.exec(location.hash);
    return match && ROUTES[match[1]] ? match[1] : null;
  }

  /**
   * What the hash says beyond the route: "#/payments/{id}" -> {id},
   * "#/payments?reference=abc" -> {query}. id is null when there is none.
   */
  function hashArgs() {
    var match = /^#\/[a-z-]+(?:\/([^?]*))?(?:\?(.*))?$/.exec(location.hash) || [];
    var id = null;
    if (match[1]) {
      try {
        id = decodeURIComponent(match[1]);
      } catch (e) {
        id = null;
      }
    }
    return { id: id, query: new URLSearchParams(match[2] || '') };
  }

  /** Goes to `hash`; the same hash again shows the page afresh (a repeated search). */
  function goTo(hash) {
    if (location.hash === hash) {
      navigate(true);
    } else {
      location.hash = hash;
    }
  }

  /** "#/route" with `params` as its query, when there are any. */
  function routeHash(route, params) {
    var query = params.toString();
    return '#/' + route + (query ? '?' + query : '');
  }

  function navigate(moveFocus) {
    var name = currentRoute();
    if (!name) {
      // Unknown or empty hash: show the overview without adding a history entry.
      replaceHash('#/' + DEFAULT_ROUTE);
      name = DEFAULT_ROUTE;
    }
    var route = ROUTES[name];
    generation += 1;
    stopRefresh();
    clearStatus();

    setTitle(route.title);
    var heading = document.getElementById('page-title');
    document.querySelectorAll('nav a[data-route]').forEach(function (link) {
      if (link.getAttribute('data-route') === name) {
        link.setAttribute('aria-current', 'page');
      } else {
        link.removeAttribute('aria-current');
      }
    });

    var view = document.getElementById('view');
    clear(view);
    view.appendChild(el('p', { className: 'muted' }, 'Loading…'));
    // After a click on a nav link, put keyboard and screen reader users at the new page's heading.
    if (moveFocus) heading.focus();
    route.render(view, generation);
  }

  function replaceHash(hash) {
    window.history.replaceState(null, '', location.pathname + location.search + hash);
  }

  // ---- overview -----------------------------------------------------------------

  function stopRefresh() {
    if (refreshTimer !== null) {
      clearInterval(refreshTimer);
      refreshTimer = null;
    }
  }

  /** GETs `path` now and every REFRESH_MS while page `gen` is shown, handing each answer to `draw`. */
  function refreshEvery(gen, path, draw) {
    var inFlight = false;
    function load() {
      if (inFlight || document.hidden) return; // never stack requests; idle in a hidden tab
      inFlight = true;
      api('GET', path).then(function (body) {
        if (gen !== generation) return; // the operator left the page meanwhile
        draw(body);
      }, function (err) {
        if (gen !== generation) return;
        announceProblem(err);
      }).then(function () {
        inFlight = false;
      });
    }
    load();
    refreshTimer = setInterval(load, REFRESH_MS);
  }

  function renderOverview(view, gen) {
    refreshEvery(gen, '/v1/operator/overview', function (overview) {
      recordSample(overview);
      drawOverview(view, overview);
    });
  }

  function recordSample(overview) {
    var total = sum(Object.keys(overview.open_reviews || {}).map(function (kind) {
      return Number(overview.open_reviews[kind]) || 0;
    }));
    var webhooks = (overview.queues || []).filter(function (q) { return q.name === 'webhooks'; })[0];
    push(samples.openReviews, total);
    // null when the queue did not answer in time: a gap in the line, not a zero.
    push(samples.webhooksWaiting, webhooks && isCount(webhooks.waiting) ? Number(webhooks.waiting) : null);
  }

  function push(list, value) {
    list.push(value);
    while (list.length > HISTORY_SIZE) list.shift();
  }

  /** Whether `value` is a number (queue depths are null when the queue did not answer). */
  function isCount(value) {
    return value !== null && value !== undefined && !isNaN(Number(value));
  }

  /** A queue depth for a table cell: the number, or "unknown". */
  function countText(value) {
    return isCount(value) ? String(value) : 'unknown';
  }

  function sum(values) {
    return values.reduce(function (a, b) { return a + b; }, 0);
  }

  /** Replaces the overview's content in place (no control in it can hold focus). */
  function drawOverview(view, overview) {
    var counts = overview.open_reviews || {};
    var kinds = Object.keys(counts).sort();
    var total = sum(kinds.map(function (kind) { return Number(counts[kind]) || 0; }));

    var reviewsSection = el('section', { 'aria-labelledby': 'h-open-reviews' },
      el('h2', { id: 'h-open-reviews' }, 'Open reviews: ' + total),
      el('div', { className: 'overview-grid' },
        table('Open reviews by kind', [{ label: 'Kind' }, { label: 'Open', numeric: true }],
          kinds.map(function (kind) { return [kind, String(counts[kind])]; }),
          { 'data-testid': 'open-reviews' }),
        el('figure', null,
          el('figcaption', { id: 'bar-caption' }, 'Open reviews by kind (chart)'),
          barChart(kinds, counts))));

    var trendsSection = el('section', { 'aria-labelledby': 'h-trends' },
      el('h2', { id: 'h-trends' }, 'Recent trend (last ' + HISTORY_SIZE + ' samples, every 5 seconds)'),
      el('div', { className: 'charts' },
        el('figure', null, el('figcaption', null, 'Total open reviews'),
          sparkline(samples.openReviews, 'Total open reviews')),
        el('figure', null, el('figcaption', null, 'Webhook queue: waiting'),
          sparkline(samples.webhooksWaiting, 'Webhook queue waiting'))));

    var connectors = overview.connectors || [];
    var connectorsSection = el('section', { 'aria-labelledby': 'h-connectors' },
      el('h2', { id: 'h-connectors' }, 'Connectors'),
      table('Connectors: breaker, and calls from this instance over the last 5 minutes',
        [{ label: 'Connector' }, { label: 'Breaker' }, { label: 'Calls', numeric: true },
          { label: 'Error rate', numeric: true }, { label: 'p99', numeric: true }],
        connectors.map(function (c) {
          var calls = Number(c.calls) || 0;
          var rate = isCount(c.errors) && calls > 0 ? Number(c.errors) / calls : null;
          return [c.name, breakerBadge(c.breaker), countText(c.calls), percent(rate), millis(c.p99_ms)];
        }), { 'data-testid': 'connectors' }));

    var queues = overview.queues || [];
    var lag = Number(overview.outbox_lag_seconds);
    var queuesSection = el('section', { 'aria-labelledby': 'h-queues' },
      el('h2', { id: 'h-queues' }, 'Queues'),
      table('Queue depth', [{ label: 'Queue' }, { label: 'Waiting', numeric: true }, { label: 'Dead', numeric: true }],
        queues.map(function (q) {
          var dead = Number(q.dead) || 0;
          return [q.name, countText(q.waiting),
            dead > 0 ? el('span', { className: 'badge dead-letters' }, countText(q.dead)) : countText(q.dead)];
        }), { 'data-testid': 'queues' }),
      el('p', { 'data-testid': 'outbox-lag' }, 'Outbox lag: ',
        el('strong', null, isNaN(lag) ? 'unknown' : lag.toFixed(1) + ' s')),
      el('p', { 'data-testid': 'workers' }, 'Connected workers: ', el('strong', null, countText(overview.workers))));

    var footer = el('p', { className: 'muted' }, 'Generated at ', timeEl(overview.generated_at),
      '; refreshes every ' + REFRESH_MS / 1000 + ' seconds.');

    clear(view);
    appendChildren(view, [reviewsSection, trendsSection, connectorsSection, queuesSection, footer]);
  }

  /**
   * A horizontal bar chart of open reviews by kind: one row per kind with
   * its name above the bar and the count after it; bar length proportional
   * to the count. The table beside it holds the same numbers.
   */
  function barChart(kinds, counts) {
    var width = 360; // narrow, so the text stays legible when the svg shrinks to a phone's width
    var labelRow = 18;
    var barHeight = 16;
    var rowHeight = labelRow + barHeight + 10;
    var maxBar = width - 60; // room for the count after the longest bar
    var max = Math.max.apply(null, [1].concat(kinds.map(function (k) { return Number(counts[k]) || 0; })));
    var height = Math.max(1, kinds.length) * rowHeight;
    var summary = kinds.length
      ? 'Bar chart of open reviews by kind: ' + kinds.map(function (k) { return humanize(k) + ' ' + counts[k]; }).join(', ')
      : 'Bar chart of open reviews by kind: no open reviews';

    var svg = svgEl('svg', {
      className: 'bar-chart', role: 'img', 'aria-label': summary,
      viewBox: '0 0 ' + width + ' ' + height, width: width, height: height,
      'data-testid': 'open-reviews-chart'
    });
    if (!kinds.length) {
      svg.appendChild(svgEl('text', { className: 'chart-label', x: 0, y: 24 }, 'No open reviews'));
      return svg;
    }
    kinds.forEach(function (kind, i) {
      var count = Number(counts[kind]) || 0;
      var top = i * rowHeight;
      var length = Math.max(count > 0 ? 2 : 0, Math.round((count / max) * maxBar));
      svg.appendChild(svgEl('g', null,
        svgEl('title', null, humanize(kind) + ': ' + count + ' open'),
        svgEl('text', { className: 'chart-label', x: 0, y: top + 13 }, humanize(kind)),
        svgEl('rect', { className: 'bar', x: 0, y: top + labelRow, width: length, height: barHeight }),
        svgEl('text', { className: 'chart-value', x: length + 6, y: top + labelRow + 13 }, String(count))));
    });
    return svg;
  }

  /**
   * A small line of the last samples (oldest left, newest at the right
   * edge), labelled with what it shows. null samples (no answer) are skipped.
   */
  function sparkline(samples, what) {
    var width = 240;
    var height = 56;
    var pad = 4;
    var known = samples.filter(function (v) { return v !== null; });
    var max = Math.max.apply(null, [1].concat(known));
    var min = Math.min.apply(null, [0].concat(known));
    var latest = samples.length ? samples[samples.length - 1] : null;
    var label = known.length
      ? what + ', last ' + samples.length + ' samples: lowest ' + Math.min.apply(null, known) +
        ', highest ' + Math.max.apply(null, known) + ', now ' + (latest === null ? 'unknown' : latest)
      : what + ': no samples yet';
    var step = (width - 2 * pad) / (HISTORY_SIZE - 1);
    var points = [];
    samples.forEach(function (value, i) {
      if (value === null) return;
      var x = pad + (HISTORY_SIZE - samples.length + i) * step;
      var y = height - pad - ((value - min) / (max - min || 1)) * (height - 2 * pad);
      points.push([x, y]);
    });
    var svg = svgEl('svg', {
      className: 'sparkline', role: 'img', 'aria-label': label,
      viewBox: '0 0 ' + width + ' ' + height, preserveAspectRatio: 'none'
    }, svgEl('title', null, label));
    if (points.length) {
      svg.appendChild(svgEl('polyline', {
        className: 'spark-line',
        points: points.map(function (p) { return p[0].toFixed(1) + ',' + p[1].toFixed(1); }).join(' ')
      }));
      var last = points[points.length - 1];
      svg.appendChild(svgEl('circle', { className: 'spark-dot', cx: last[0].toFixed(1), cy: last[1].toFixed(1), r: 3 }));
    }
    return svg;
  }

  // ---- payments ---------------------------------------------------------------------

  function renderPayments(view, gen) {
    var args = hashArgs();
    if (args.id !== null) {
      renderPayment(view, gen, args.id);
      return;
    }
    var query = args.query;
    lastPaymentSearch = query.toString();

    var fields = {
      reference: el('input', { id: 'search-reference', name: 'reference', type: 'text', autocomplete: 'off', spellcheck: 'false', className: 'mono' }),
      email: el('input', { id: 'search-email', name: 'email', type: 'text', inputmode: 'email', autocomplete: 'off', spellcheck: 'false' }),
      status: el('select', { id: 'search-status', name: 'status' },
        el('option', { value: '' }, 'Any'),
        PAYMENT_STATUSES.map(function (status) { return el('option', { value: status }, humanize(status)); })),
      connector: el('select', { id: 'search-connector', name: 'connector' },
        el('option', { value: '' }, 'Any'),
        CONNECTOR_NAMES.map(function (name) { return el('option', { value: name }, name); })),
      client_id: el('input', { id: 'search-client', name: 'client_id', type: 'text', autocomplete: 'off', spellcheck: 'false', className: 'mono' }),
      from: el('input', { id: 'search-from', name: 'from', type: 'datetime-local', step: 1 }),
      to: el('input', { id: 'search-to', name: 'to', type: 'datetime-local', step: 1 })
    };
    PAYMENT_SEARCH_FIELDS.forEach(function (name) {
      var value = query.get(name) || '';
      fields[name].value = name === 'from' || name === 'to' ? isoToLocalInput(value) : value;
    });

    var form = el('form', { className: 'filters', 'aria-label': 'Search payments', 'data-testid': 'payment-search' },
      field('Reference', fields.reference),
      field('Email', fields.email),
      field('Status', fields.status),
      field('Connector', fields.connector),
      field('Client ID', fields.client_id),
      field('Created from (your local time)', fields.from),
      field('Created before (your local time)', fields.to),
      el('p', null, el('button', { type: 'submit' }, 'Search')));
    var results = el('div', { id: 'payment-results-region' });

    form.addEventListener('submit', function (event) {
      event.preventDefault();
      var params = new URLSearchParams();
      var bad = [];
      PAYMENT_SEARCH_FIELDS.forEach(function (name) {
        var value = fields[name].value.trim();
        if (!value) return;
        if (name === 'from' || name === 'to') {
          var iso = localInputToIso(value);
          if (!iso) {
            bad.push(name + ': not a date and time');
            return;
          }
          value = iso;
        }
        params.set(name, value);
      });
      if (bad.length) {
        announce('The search was not sent', true, bad);
        return;
      }
      goTo(routeHash('payments', params));
    });

    clear(view);
    appendChildren(view, [form, results]);
    loadPayments(results, query, gen);
  }

  /** A datetime-local value (the browser's time zone) as RFC 3339 UTC, or null. */
  function localInputToIso(value) {
    var date = new Date(value);
    return isNaN(date.getTime()) ? null : date.toISOString();
  }

  /** RFC 3339 as a datetime-local value in the browser's time zone ("" when not a time). */
  function isoToLocalInput(iso) {
    var date = iso ? new Date(iso) : null;
    if (!date || isNaN(date.getTime())) return '';
    function two(n) { return (n < 10 ? '0' : '') + n; }
    return date.getFullYear() + '-' + two(date.getMonth() + 1) + '-' + two(date.getDate()) +
      'T' + two(date.getHours()) + ':' + two(date.getMinutes()) + ':' + two(date.getSeconds());
  }

  function loadPayments(results, query, gen) {
    var params = new URLSearchParams();
    PAYMENT_SEARCH_FIELDS.concat(['before']).forEach(function (name) {
      if (query.get(name)) params.set(name, query.get(name));
    });
    results.setAttribute('aria-busy', 'true');
    var search = params.toString();
    api('GET', '/v1/operator/payments' + (search ? '?' + search : '')).then(function (body) {
      if (gen !== generation) return;
      drawPayments(results, body || {}, query);
    }, function (err) {
      if (gen !== generation) return;
      clear(results);
      announceProblem(err);
    }).then(function () {
      results.removeAttribute('aria-busy');
    });
  }

  function drawPayments(results, body, query) {
    var payments = body.payments || [];
    var searched = PAYMENT_SEARCH_FIELDS.some(function (name) { return query.get(name); });
    var laterPage = Boolean(query.get('before'));
    var caption = (searched ? 'Payments found' : 'Latest payments') + ', newest first (' + payments.length +
      (laterPage ? ', a later page' : '') + ')';
    var columns = [
      { label: 'Reference', className: 'mono' }, { label: 'Client' }, { label: 'Connector' },
      { label: 'Amount', numeric: true }, { label: 'Email', className: 'mono' }, { label: 'Status' }, { label: 'Created' }
    ];
    var rows = payments.map(function (payment) {
      return [
        paymentLink(payment),
        payment.client_name ? String(payment.client_name) : el('span', { className: 'mono' }, valueOrNone(payment.client_id)),
        valueOrNone(payment.connector),
        money(payment.amount, payment.currency),
        valueOrNone(payment.email),
        stateBadge(payment.status),
        timeEl(payment.created_at)
      ];
    });

    var pager = el('p', { className: 'toolbar row-actions' });
    if (laterPage) {
      var first = new URLSearchParams(query.toString());
      first.delete('before');
      pager.appendChild(el('a', { href: routeHash('payments', first) }, 'First page'));
    }
    if (body.next_before) {
      var next = el('button', { type: 'button', className: 'button-secondary' }, 'Next page');
      next.addEventListener('click', function () {
        var params = new URLSearchParams(query.toString());
        params.set('before', String(body.next_before));
        goTo(routeHash('payments', params));
      });
      pager.appendChild(next);
    }

    clear(results);
    results.appendChild(table(caption, columns, rows, { 'data-testid': 'payment-results' }));
    if (pager.firstChild) results.appendChild(pager);
    if (searched || laterPage) announce(payments.length + ' payment(s) shown', false);
  }

  /** The payment's reference (the client's), linking to its page. */
  function paymentLink(payment) {
    return el('a', { href: '#/payments/' + encodeURIComponent(String(payment.id)) },
      String(payment.client_reference || payment.reference || payment.id));
  }

  function renderPayment(view, gen, id) {
    setTitle('Payment');
    api('GET', '/v1/operator/payments/' + encodeURIComponent(id)).then(function (body) {
      if (gen !== generation) return;
      drawPayment(view, body || {});
    }, function (err) {
      if (gen !== generation) return;
      clear(view);
      view.appendChild(backToPayments());
      announceProblem(err);
    });
  }

  function backToPayments() {
    return el('p', null, el('a', { href: '#/payments' + (lastPaymentSearch ? '?' + lastPaymentSearch : '') }, 'Back to the payments'));
  }

  function drawPayment(view, body) {
    var payment = body.payment || {};
    var timeline = body.timeline || [];
    setTitle('Payment ' + (payment.client_reference || payment.reference || payment.id));

    var metadata = valueOrNone(null);
    if (payment.metadata !== null && payment.metadata !== undefined) {
      metadata = el('pre', { className: 'json' });
      metadata.textContent = JSON.stringify(payment.metadata, null, 2);
    }
    var earlier = payment.earlier_connectors || [];
    var details = detailsList([
      ['Reference', valueOrNone(payment.client_reference), 'mono'],
      ['Provider reference', valueOrNone(payment.reference), 'mono'],
      ['Payment ID', valueOrNone(payment.id), 'mono'],
      ['Client', [payment.client_name ? String(payment.client_name) + ' ' : null, el('span', { className: 'mono' }, valueOrNone(payment.client_id))]],
      ['Connector', valueOrNone(payment.connector)],
      ['Earlier connectors', earlier.length ? earlier.join(', ') : valueOrNone(null)],
      ['Amount', money(payment.amount, payment.currency)],
      ['Refunded', money(payment.refunded_amount, payment.currency)],
      ['Status', stateBadge(payment.status)],
      ['Failure reason', valueOrNone(payment.failure_reason)],
      ['Email', valueOrNone(payment.email), 'mono'],
      ['Created', timeEl(payment.created_at)],
      ['Updated', timeEl(payment.updated_at)],
      ['Paid', timeEl(payment.paid_at)],
      ['Metadata', metadata]
    ], { className: 'details', 'data-testid': 'payment-detail' });

    var entries = timeline.length
      ? el('ol', { className: 'timeline', 'data-testid': 'timeline' }, timeline.map(timelineEntry))
      : el('p', { 'data-testid': 'timeline' }, 'Nothing recorded for this payment yet.');

    clear(view);
    appendChildren(view, [
      backToPayments(),
      el('section', { 'aria-labelledby': 'h-payment-details' },
        el('h2', { id: 'h-payment-details' }, 'Details'), details),
      el('section', { 'aria-labelledby': 'h-payment-timeline' },
        el('h2', { id: 'h-payment-timeline' }, 'Timeline, oldest first (' + timeline.length + ')'), entries)
    ]);
  }

  function timelineEntry(entry) {
    var kind = String(entry.kind);
    var known = TIMELINE_KINDS.indexOf(kind) >= 0;
    return el('li', { 'data-kind': known ? kind : null },
      el('p', { className: 'timeline-head' },
        timeEl(entry.at), ' ',
        el('span', { className: 'badge kind' }, humanize(kind)), ' ',
        el('strong', null, valueOrNone(entry.title)),
        entry.outcome ? [' ', stateBadge(entry.outcome)] : null,
        isCount(entry.duration_ms) ? [' ', el('span', { className: 'muted' }, millis(entry.duration_ms))] : null),
      entry.detail ? el('p', { className: 'timeline-detail' }, String(entry.detail)) : null);
  }

  // ---- reviews --------------------------------------------------------------------

  function renderReviews(view, gen) {
    var kindSelect = el('select', { id: 'filter-kind', name: 'kind' },
      el('option', { value: '' }, 'All'),
      REVIEW_KINDS.map(function (kind) { return el('option', { value: kind }, kind); }));
    kindSelect.value = reviewFilter.kind;
    var showSelect = el('select', { id: 'filter-show', name: 'show' },
      el('option', { value: 'open' }, 'Open'),
      el('option', { value: 'resolved' }, 'Resolved'),
      el('option', { value: 'all' }, 'All'));
    showSelect.value = reviewFilter.show;

    var filterForm = el('form', { className: 'filters', 'aria-label': 'Filter reviews' },
      el('p', null, el('label', { for: 'filter-kind' }, 'Kind'), kindSelect),
      el('p', null, el('label', { for: 'filter-show' }, 'Show'), showSelect),
      el('p', null, el('button', { type: 'submit' }, 'Show reviews')));
    var results = el('div', { id: 'review-results' });

    filterForm.addEventListener('submit', function (event) {
      event.preventDefault();
      reviewFilter = { kind: kindSelect.value, show: showSelect.value };
      clearStatus();
      loadReviews(results, gen);
    });

    clear(view);
    appendChildren(view, [filterForm, results]);
    loadReviews(results, gen);
  }

  function reviewsPath() {
    var params = new URLSearchParams();
    if (reviewFilter.show === 'open') params.set('open', 'true');
    if (reviewFilter.show === 'resolved') params.set('open', 'false');
    if (reviewFilter.kind) params.set('kind', reviewFilter.kind);
    params.set('limit', String(LIST_LIMIT));
    return '/v1/operator/reviews?' + params.toString();
  }

  /** Loads the list for the current filter into `results`; resolves when drawn. */
  function loadReviews(results, gen) {
    results.setAttribute('aria-busy', 'true');
    return api('GET', reviewsPath()).then(function (reviews) {
      if (gen !== generation) return;
      drawReviews(results, reviews || [], gen);
    }, function (err) {
      if (gen !== generation) return;
      announceProblem(err);
    }).then(function () {
      results.removeAttribute('aria-busy');
    });
  }

  function drawReviews(results, reviews, gen) {
    var showing = { open: 'Open reviews', resolved: 'Resolved reviews', all: 'All reviews' }[reviewFilter.show];
    var caption = showing + (reviewFilter.kind ? ' of kind ' + reviewFilter.kind : '') +
      ' (' + reviews.length + (reviews.length >= LIST_LIMIT ? ', the first ' + LIST_LIMIT : '') + ', oldest first)';
    var columns = [
      { label: 'Opened' }, { label: 'Kind' }, { label: 'Payment ID', className: 'mono' },
      { label: 'Connector' }, { label: 'Reference', className: 'mono' }, { label: 'Status' },
      { label: 'Detail' }, { label: 'Action' }
    ];
    var rows = [];
    reviews.forEach(function (review) {
      rows.push(reviewRow(review, columns.length, results, gen));
    });
    clear(results);
    results.appendChild(table(caption, columns, rows, { 'data-testid': 'reviews' }));
  }

  function reviewRow(review, columnCount, results, gen) {
    var isOpen = review.status === 'open';
    var status = el('span', { className: 'badge review-' + (isOpen ? 'open' : 'resolved') }, String(review.status));

    // Detail: what payorch knew, as JSON text in a <pre>, plus how it was resolved.
    var facts = el('dl', null,
      el('dt', null, 'Review ID'), el('dd', { className: 'mono' }, String(review.id)),
      review.refund_id ? [el('dt', null, 'Refund ID'), el('dd', { className: 'mono' }, String(review.refund_id))] : null,
      !isOpen ? [
        el('dt', null, 'Resolved'), el('dd', null, timeEl(review.resolved_at)),
        el('dt', null, 'By'), el('dd', null, valueOrNone(review.resolved_by)),
        el('dt', null, 'Resolution'), el('dd', null, valueOrNone(review.resolution)),
        el('dt', null, 'Note'), el('dd', null, valueOrNone(review.note))
      ] : null);
    var detail = el('details', null,
      el('summary', null, 'Detail', el('span', { className: 'visually-hidden' }, ' of review ' + review.kind + ' of payment ' + review.payment_id)),
      facts,
      el('pre', { className: 'json' }, JSON.stringify(review.detail, null, 2)));

    var action = valueOrNone(null);
    var row = el('tr', { 'data-review-id': String(review.id) });
    if (isOpen) {
      action = el('button', { type: 'button', className: 'button-secondary', 'aria-expanded': 'false' }, 'Resolve');
      // The accessible name says which review: "Resolve review <kind> of payment <id>".
      action.setAttribute('aria-label', 'Resolve review ' + review.kind + ' of payment ' + review.payment_id);
      action.addEventListener('click', function () {
        toggleResolveForm(row, action, review, columnCount, results, gen);
      });
    }

    appendChildren(row, [
      el('td', null, timeEl(review.opened_at)),
      el('td', null, String(review.kind)),
      el('td', { className: 'mono' }, String(review.payment_id)),
      el('td', null, valueOrNone(review.connector)),
      el('td', { className: 'mono' }, valueOrNone(review.reference)),
      el('td', null, status),
      el('td', null, detail),
      el('td', null, action)
    ]);
    return row;
  }

  /** Opens (or closes) the inline resolve form in a row under the review's row. One at a time. */
  function toggleResolveForm(row, button, review, columnCount, results, gen) {
    var existing = results.querySelector('tr.resolve-row');
    var wasThis = existing && existing.previousSibling === row;
    closeResolveForm(results);
    if (wasThis) return;

    var formId = 'resolve-' + review.id;
    var actionSelect = el('select', { id: formId + '-action', name: 'action', required: true },
      REVIEW_ACTIONS.map(function (a) { return el('option', { value: a.value }, a.label); }));
    var note = el('textarea', { id: formId + '-note', name: 'note', rows: 3, maxlength: 2000 });
    var submit = el('button', { type: 'submit' }, 'Resolve review');
    // The problem also shown next to the form, for whoever scrolled away from the status region.
    var formError = el('p', { className: 'form-error', id: formId + '-error', hidden: true });
    var busy = false;
    var cancel = el('button', { type: 'button', className: 'button-secondary' }, 'Cancel');

    var form = el('form', { id: formId, 'data-testid': 'resolve-form' },
      el('fieldset', null,
        el('legend', null, 'Resolve review ' + review.kind + ' of payment ' + review.payment_id),
        el('p', { className: 'field' }, el('label', { for: actionSelect.id }, 'Action'), actionSelect),
        el('p', { className: 'field' }, el('label', { for: note.id }, 'Note'), note),
        formError,
        el('p', { className: 'actions' }, submit, cancel)));

    cancel.addEventListener('click', function () {
      closeResolveForm(results);
      button.focus();
    });
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      // Not `disabled`: that would drop keyboard focus to <body>. A flag stops double submits.
      if (busy) return;
      busy = true;
      submit.setAttribute('aria-disabled', 'true');
      formError.hidden = true;
      var path = '/v1/operator/reviews/' + encodeURIComponent(review.id) + '/resolve';
      api('POST', path, { action: actionSelect.value, note: note.value }).then(function () {
        if (gen !== generation) return;
        return loadReviews(results, gen).then(function () {
          if (gen !== generation) return;
          announce('Review resolved', false);
          // The row may be gone from the list: keep focus somewhere sensible.
          document.getElementById('page-title').focus();
        });
      }, function (err) {
        if (gen !== generation) return;
        announceProblem(err); // 409 already resolved, 422 action not applicable, …
        formError.textContent = 'Not resolved: ' + err.message;
        formError.hidden = false;
        busy = false;
        submit.removeAttribute('aria-disabled');
      });
    });

    var formRow = el('tr', { className: 'resolve-row' }, el('td', { colspan: columnCount }, form));
    row.parentNode.insertBefore(formRow, row.nextSibling);
    button.setAttribute('aria-expanded', 'true');
    button.setAttribute('aria-controls', formId);
    actionSelect.focus();
  }

  function closeResolveForm(results) {
    var existing = results.querySelector('tr.resolve-row');
    if (!existing) return;
    var opener = existing.previousSibling && existing.previousSibling.querySelector('button[aria-expanded]');
    if (opener) {
      opener.setAttribute('aria-expanded', 'false');
      opener.removeAttribute('aria-controls');
    }
    existing.parentNode.removeChild(existing);
  }

  // ---- dead letters -----------------------------------------------------------------

  function renderDeadLetters(view, gen) {
    var queueSelect = el('select', { id: 'dead-letter-queue', name: 'queue' },
      DEAD_LETTER_QUEUES.map(function (queue) { return el('option', { value: queue }, queue); }));
    queueSelect.value = deadLetterQueue;
    var queueForm = el('form', { className: 'filters', 'aria-label': 'Filter dead letters' },
      el('p', null, el('label', { for: 'dead-letter-queue' }, 'Queue'), queueSelect),
      el('p', null, el('button', { type: 'submit' }, 'Show dead letters')));
    // Disabled while no list with something in it is shown.
    var replayAll = el('button', { type: 'button', disabled: true }, 'Replay all');
    var results = el('div', { id: 'dead-letter-results' });
    // shownQueue: the queue of the list on screen (what a replay applies to).
    var page = { gen: gen, results: results, replayAll: replayAll, shownQueue: null, loads: 0, busy: false };

    queueForm.addEventListener('submit', function (event) {
      event.preventDefault();
      deadLetterQueue = queueSelect.value;
      clearStatus();
      loadDeadLetters(page);
    });
    replayAll.addEventListener('click', function () {
      if (replayAll.disabled) return;
      replayDeadLetters(page, replayAll);
    });

    clear(view);
    appendChildren(view, [queueForm, el('p', { className: 'toolbar' }, replayAll), results]);
    loadDeadLetters(page);
  }

  function deadLettersPath(queue) {
    var params = new URLSearchParams();
    params.set('queue', queue);
    params.set('limit', String(LIST_LIMIT));
    return '/v1/operator/dead-letters?' + params.toString();
  }

  /** Loads the current queue's parked messages into the page; resolves when drawn. */
  function loadDeadLetters(page) {
    var queue = deadLetterQueue;
    page.loads += 1;
    var load = page.loads; // only the latest load draws
    page.results.setAttribute('aria-busy', 'true');
    return api('GET', deadLettersPath(queue)).then(function (letters) {
      if (page.gen !== generation || load !== page.loads) return;
      drawDeadLetters(page, queue, letters || []);
    }, function (err) {
      if (page.gen !== generation || load !== page.loads) return;
      // What is on screen may no longer be the chosen queue: no "Replay all" on it.
      page.replayAll.disabled = true;
      announceProblem(err);
    }).then(function () {
      if (load === page.loads) page.results.removeAttribute('aria-busy');
    });
  }

  function drawDeadLetters(page, queue, letters) {
    page.shownQueue = queue;
    page.replayAll.disabled = letters.length === 0;
    clear(page.results);
    if (!letters.length) {
      page.results.appendChild(el('p', { 'data-testid': 'dead-letters-empty' }, 'No parked messages in ' + queue + '.'));
      return;
    }
    var columns = [
      { label: 'Received' }, { label: 'Id', className: 'mono' }, { label: 'Provider' },
      { label: 'Attempts', numeric: true }, { label: 'Reason' }, { label: 'Actions' }
    ];
    var caption = 'Parked messages in ' + queue + ' (' + letters.length +
      (letters.length >= LIST_LIMIT ? ', the first ' + LIST_LIMIT : '') + ', oldest first)';
    var rows = letters.map(function (letter, index) {
      return deadLetterRow(page, letter, index, columns.length);
    });
    page.results.appendChild(table(caption, columns, rows, { 'aria-label': 'Dead letters', 'data-testid': 'dead-letters' }));
  }

  function deadLetterRow(page, letter, index, columnCount) {
    var id = String(letter.id);
    var messageId = 'dead-letter-' + index + '-message';
    var row = el('tr', { 'data-dead-letter-id': id });
    // The accessible names say which message: "Inspect dead letter <id>", "Replay dead letter <id>".
    var inspect = el('button', {
      type: 'button', className: 'button-secondary', 'aria-expanded': 'false', 'aria-label': 'Inspect dead letter ' + id
    }, 'Inspect');
    var replay = el('button', {
      type: 'button', className: 'button-secondary', 'data-action': 'replay', 'aria-label': 'Replay dead letter ' + id
    }, 'Replay');
    inspect.addEventListener('click', function () {
      toggleDeadLetterMessage(row, inspect, letter, messageId, columnCount);
    });
    replay.addEventListener('click', function () {
      replayDeadLetters(page, replay, id);
    });

    appendChildren(row, [
      el('td', null, timeEl(letter.received_at)),
      el('td', { className: 'mono' }, id),
      el('td', null, valueOrNone(letter.provider)),
      el('td', { className: 'number' }, valueOrNone(letter.attempts)),
      el('td', null, valueOrNone(letter.reason)),
      el('td', null, el('div', { className: 'row-actions' }, inspect, replay))
    ]);
    return row;
  }

  /** Shows (or hides) the message as queued, as JSON text in a row under the message's row. */
  function toggleDeadLetterMessage(row, button, letter, messageId, columnCount) {
    var shown = document.getElementById(messageId);
    if (shown) {
      shown.parentNode.removeChild(shown);
      button.setAttribute('aria-expanded', 'false');
      button.removeAttribute('aria-controls');
      return;
    }
    var pre = el('pre', { className: 'json' });
    pre.textContent = JSON.stringify(letter.message === undefined ? null : letter.message, null, 2);
    var messageRow = el('tr', { id: messageId, className: 'dead-letter-message' },
      el('td', { colspan: columnCount }, pre));
    row.parentNode.insertBefore(messageRow, row.nextSibling);
    button.setAttribute('aria-expanded', 'true');
    button.setAttribute('aria-controls', messageId);
  }

  /** Replays the shown queue's message `id`, or all of them (no `id`); then lists the queue again. */
  function replayDeadLetters(page, button, id) {
    // Not `disabled`: that would drop keyboard focus to <body>. A flag stops double submits.
    if (page.busy || !page.shownQueue) return;
    page.busy = true;
    button.setAttribute('aria-disabled', 'true');
    var body = { queue: page.shownQueue };
    if (id !== undefined) body.id = id;
    api('POST', '/v1/operator/dead-letters/replay', body).then(function (result) {
      if (page.gen !== generation) return;
      var count = result && isCount(result.replayed) ? Number(result.replayed) : 0;
      announce(count + ' message(s) replayed', false);
      return loadDeadLetters(page).then(function () {
        if (page.gen !== generation) return;
        focusAfterReplay(page, id);
      });
    }, function (err) {
      if (page.gen !== generation) return;
      announceProblem(err);
    }).then(function () {
      page.busy = false;
      button.removeAttribute('aria-disabled');
    });
  }

  /**
   * The list was drawn again: back to the same message's Replay button if it
   * is still parked, to "Replay all" if there is still something to replay,
   * else to the page heading.
   */
  function focusAfterReplay(page, id) {
    var target = null;
    if (id === undefined) {
      if (!page.replayAll.disabled) target = page.replayAll;
    } else {
      Array.prototype.forEach.call(page.results.querySelectorAll('tr[data-dead-letter-id]'), function (row) {
        if (!target && row.getAttribute('data-dead-letter-id') === id) {
          target = row.querySelector('button[data-action="replay"]');
        }
      });
    }
    (target || document.getElementById('page-title')).focus();
  }

  // ---- inline forms and two-step buttons (endpoints, clients) ------------------------

  /**
   * Opens `build()`'s form in a row of its own under `row`, or closes it when
   * `opener` opened the one shown; one such form per page at a time.
   * build() returns {form, focus}: the form (with an id) and what takes focus.
   */
  function toggleRowForm(page, row, opener, columnCount, build) {
    var wasThis = page.openForm && page.openForm.opener === opener;
    closeRowForm(page);
    if (wasThis) return;
    var built = build();
    var formRow = el('tr', { className: 'resolve-row' }, el('td', { colspan: columnCount }, built.form));
    row.parentNode.insertBefore(formRow, row.nextSibling);
    opener.setAttribute('aria-expanded', 'true');
    opener.setAttribute('aria-controls', built.form.id);
    page.openForm = { opener: opener, row: formRow };
    built.focus.focus();
  }

  function closeRowForm(page) {
    var open = page.openForm;
    if (!open) return;
    page.openForm = null;
    open.opener.setAttribute('aria-expanded', 'false');
    open.opener.removeAttribute('aria-controls');
    if (open.row.parentNode) open.row.parentNode.removeChild(open.row);
  }

  /** A Cancel button that closes the page's open row form and puts focus back on its opener. */
  function cancelButton(page) {
    var cancel = el('button', { type: 'button', className: 'button-secondary' }, 'Cancel');
    cancel.addEventListener('click', function () {
      var opener = page.openForm && page.openForm.opener;
      closeRowForm(page);
      if (opener) opener.focus();
    });
    return cancel;
  }

  /**
   * Two steps instead of window.confirm: the first click turns `button` into
   * `confirm.text` (named `confirm.label`) and says so in the status region;
   * a second click calls `onConfirm`. Leaving the button or Escape puts it back.
   */
  function twoStep(button, confirm, onConfirm) {
    var text = button.textContent;
    var label = button.getAttribute('aria-label');
    var armed = false;
    function disarm() {
      if (!armed) return;
      armed = false;
      button.textContent = text;
      if (label) button.setAttribute('aria-label', label);
      button.classList.remove('button-danger');
    }
    button.addEventListener('click', function () {
      if (button.getAttribute('aria-disabled') === 'true') return;
      if (!armed) {
        armed = true;
        button.textContent = confirm.text;
        button.setAttribute('aria-label', confirm.label);
        button.classList.add('button-danger');
        announce(confirm.prompt, false);
        return;
      }
      onConfirm();
    });
    button.addEventListener('blur', disarm);
    button.addEventListener('keydown', function (event) {
      if (event.key === 'Escape' && armed) {
        disarm();
        announce('Cancelled', false);
      }
    });
  }

  /** Marks `button` busy (aria-disabled keeps focus on it, unlike disabled); false when it already was. */
  function startBusy(button) {
    if (button.getAttribute('aria-disabled') === 'true') return false;
    button.setAttribute('aria-disabled', 'true');
    return true;
  }

  function endBusy(button) {
    button.removeAttribute('aria-disabled');
  }

  /** The problem beside a form too, for whoever scrolled away from the status region. */
  function showFormError(formError, prefix, err) {
    formError.textContent = prefix + err.message;
    formError.hidden = false;
  }

  /** Focuses the button named `label` in the row `[attribute="id"]` of `results`, else the page heading. */
  function focusRowButton(results, attribute, id, label) {
    var target = null;
    Array.prototype.forEach.call(results.querySelectorAll('tr[' + attribute + ']'), function (row) {
      if (!target && row.getAttribute(attribute) === id) {
        target = row.querySelector('button[data-action="' + label + '"]');
      }
    });
    (target || document.getElementById('page-title')).focus();
  }

  // ---- endpoints ----------------------------------------------------------------------

  function renderEndpoints(view, gen) {
    var clientId = hashArgs().query.get('client_id') || '';
    var clientInput = el('input', { id: 'endpoint-client', name: 'client_id', type: 'text', autocomplete: 'off', spellcheck: 'false', className: 'mono' });
    clientInput.value = clientId;
    var filterForm = el('form', { className: 'filters', 'aria-label': 'Filter endpoints' },
      field('Client ID (empty: every client)', clientInput),
      el('p', null, el('button', { type: 'submit' }, 'Show endpoints')));
    var results = el('div', { id: 'endpoint-results' });
    var page = { gen: gen, results: results, clientId: clientId, openForm: null };

    filterForm.addEventListener('submit', function (event) {
      event.preventDefault();
      var params = new URLSearchParams();
      if (clientInput.value.trim()) params.set('client_id', clientInput.value.trim());
      goTo(routeHash('endpoints', params));
    });

    clear(view);
    appendChildren(view, [filterForm, results]);
    loadEndpoints(page);
  }

  function loadEndpoints(page) {
    var path = '/v1/operator/endpoints' + (page.clientId ? '?client_id=' + encodeURIComponent(page.clientId) : '');
    page.results.setAttribute('aria-busy', 'true');
    return api('GET', path).then(function (body) {
      if (page.gen !== generation) return;
      drawEndpoints(page, (body && body.endpoints) || []);
    }, function (err) {
      if (page.gen !== generation) return;
      announceProblem(err);
    }).then(function () {
      page.results.removeAttribute('aria-busy');
    });
  }

  function drawEndpoints(page, endpoints) {
    var columns = [
      { label: 'Client' }, { label: 'URL', className: 'mono' }, { label: 'Enabled' },
      { label: 'Failure streak', numeric: true }, { label: 'Last attempts' }, { label: 'Actions' }
    ];
    var caption = 'Webhook endpoints' + (page.clientId ? ' of client ' + page.clientId : '') + ' (' + endpoints.length + ')';
    var rows = endpoints.map(function (endpoint, index) {
      return endpointRow(page, endpoint, index, columns.length);
    });
    page.openForm = null;
    clear(page.results);
    page.results.appendChild(table(caption, columns, rows, { 'data-testid': 'endpoints' }));
  }

  function endpointRow(page, endpoint, index, columnCount) {
    var id = String(endpoint.id);
    var url = String(endpoint.url);
    var row = el('tr', { 'data-endpoint-id': id });
    var streak = Number(endpoint.failure_streak) || 0;
    var actions = el('div', { className: 'row-actions' });

    if (endpoint.enabled) {
      var disable = el('button', {
        type: 'button', className: 'button-secondary', 'data-action': 'disable', 'aria-label': 'Disable endpoint ' + url
      }, 'Disable');
      twoStep(disable, {
        text: 'Confirm disable',
        label: 'Confirm disable endpoint ' + url,
        prompt: 'Select "Confirm disable" to stop sending events to ' + url + '.'
      }, function () {
        disableEndpoint(page, disable, endpoint);
      });
      actions.appendChild(disable);
    }
    var redeliver = el('button', {
      type: 'button', className: 'button-secondary', 'data-action': 'redeliver',
      'aria-expanded': 'false', 'aria-label': 'Redeliver an event to ' + url
    }, 'Redeliver an event');
    redeliver.addEventListener('click', function () {
      toggleRowForm(page, row, redeliver, columnCount, function () {
        return redeliverForm(page, endpoint, 'redeliver-' + index);
      });
    });
    actions.appendChild(redeliver);

    appendChildren(row, [
      el('td', null, valueOrNone(endpoint.client_name), el('br'), el('span', { className: 'mono muted' }, valueOrNone(endpoint.client_id))),
      el('td', { className: 'mono' }, url,
        endpoint.description ? [el('br'), el('span', { className: 'muted' }, String(endpoint.description))] : null),
      el('td', null, stateBadge(endpoint.enabled ? 'yes' : 'no')),
      el('td', { className: streak > 0 ? 'number failing' : 'number' },
        streak > 0 ? el('span', { className: 'badge state-bad' }, String(streak)) : String(streak)),
      el('td', null, attemptList(endpoint.last_attempts || [])),
      el('td', null, actions)
    ]);
    return row;
  }

  /** An endpoint's latest attempts, newest first: status, response code, duration, time. */
  function attemptList(attempts) {
    if (!attempts.length) return el('span', { className: 'muted' }, 'No attempts yet');
    return el('ul', { className: 'attempts' }, attempts.map(function (attempt) {
      return el('li', null,
        stateBadge(attempt.status), ' ',
        isCount(attempt.response_status) ? 'HTTP ' + attempt.response_status : 'no response', ' · ',
        millis(attempt.duration_ms), ' · ', timeEl(attempt.at),
        attempt.error ? el('span', { className: 'attempt-error' }, ' · ' + attempt.error) : null);
    }));
  }

  function disableEndpoint(page, button, endpoint) {
    if (!startBusy(button)) return;
    var path = '/v1/operator/endpoints/' + encodeURIComponent(String(endpoint.id)) + '/disable';
    api('POST', path, { note: null }).then(function () {
      if (page.gen !== generation) return;
      return loadEndpoints(page).then(function () {
        if (page.gen !== generation) return;
        announce('Endpoint ' + endpoint.url + ' disabled: no more events are sent to it', false);
        focusRowButton(page.results, 'data-endpoint-id', String(endpoint.id), 'redeliver');
      });
    }, function (err) {
      if (page.gen !== generation) return;
      announceProblem(err);
      endBusy(button);
    });
  }

  function redeliverForm(page, endpoint, formId) {
    var eventInput = el('input', {
      id: formId + '-event', name: 'event_id', type: 'text', required: true,
      autocomplete: 'off', spellcheck: 'false', className: 'mono', size: 40
    });
    var submit = el('button', { type: 'submit' }, 'Redeliver');
    var formError = el('p', { className: 'form-error', hidden: true });
    var form = el('form', { id: formId, 'data-testid': 'redeliver-form' },
      el('fieldset', null,
        el('legend', null, 'Redeliver an event to ' + endpoint.url),
        field('Event ID', eventInput, 'field'),
        formError,
        el('p', { className: 'actions' }, submit, cancelButton(page))));

    form.addEventListener('submit', function (event) {
      event.preventDefault();
      var eventId = eventInput.value.trim();
      if (!eventId || !startBusy(submit)) return;
      formError.hidden = true;
      var path = '/v1/operator/events/' + encodeURIComponent(eventId) + '/redeliver';
      api('POST', path, { endpoint_id: endpoint.id }).then(function (result) {
        if (page.gen !== generation) return;
        var opener = page.openForm && page.openForm.opener;
        closeRowForm(page);
        announce('Event ' + ((result && result.event_id) || eventId) + ' queued for redelivery to ' + endpoint.url, false);
        if (opener) opener.focus();
      }, function (err) {
        if (page.gen !== generation) return;
        announceProblem(err);
        showFormError(formError, 'Not redelivered: ', err);
        endBusy(submit);
      });
    });
    return { form: form, focus: eventInput };
  }

  // ---- API clients --------------------------------------------------------------------

  function renderClients(view, gen) {
    var nameInput = el('input', { id: 'client-name', name: 'name', type: 'text', required: true, maxlength: 100, autocomplete: 'off' });
    var create = el('button', { type: 'submit' }, 'Create client');
    var createError = el('p', { className: 'form-error', hidden: true });
    var createForm = el('form', { className: 'filters', 'aria-label': 'Create an API client', 'data-testid': 'create-client' },
      field('Name of the new client', nameInput),
      el('p', null, create));
    var keyBox = el('div', { id: 'new-key-box' });
    var results = el('div', { id: 'client-results' });
    var page = { gen: gen, results: results, keyBox: keyBox, keyClientId: null, openForm: null };

    createForm.addEventListener('submit', function (event) {
      event.preventDefault();
      var name = nameInput.value.trim();
      if (!name || !startBusy(create)) return;
      createError.hidden = true;
      api('POST', '/v1/operator/clients', { name: name }).then(function (result) {
        if (page.gen !== generation) return;
        nameInput.value = '';
        showKey(page, result.client, result.key, 'Give it to the merchant now.');
        announce('API client ' + result.client.name + ' created; its key is shown once, below the form', false);
        return loadClients(page);
      }, function (err) {
        if (page.gen !== generation) return;
        announceProblem(err);
        showFormError(createError, 'Not created: ', err);
      }).then(function () {
        endBusy(create);
      });
    });

    clear(view);
    appendChildren(view, [createForm, createError, keyBox, results]);
    loadClients(page);
  }

  function loadClients(page) {
    page.results.setAttribute('aria-busy', 'true');
    return api('GET', '/v1/operator/clients').then(function (body) {
      if (page.gen !== generation) return;
      drawClients(page, (body && body.clients) || []);
    }, function (err) {
      if (page.gen !== generation) return;
      announceProblem(err);
    }).then(function () {
      page.results.removeAttribute('aria-busy');
    });
  }

  /** Shows a new key, once, in a read-only box; focused and selected, ready to copy. */
  function showKey(page, client, key, hint) {
    var input = el('input', {
      id: 'new-key', type: 'text', readonly: true, className: 'mono key-input', size: 72,
      spellcheck: 'false', autocomplete: 'off', 'aria-describedby': 'new-key-hint', 'data-testid': 'new-key'
    });
    input.value = String(key);
    page.keyClientId = String(client.id);
    clear(page.keyBox);
    page.keyBox.appendChild(el('section', { className: 'new-key', 'aria-labelledby': 'h-new-key' },
      el('h2', { id: 'h-new-key' }, 'New key for ' + client.name),
      field('API key (shown only this once)', input),
      el('p', { id: 'new-key-hint' },
        'Copy it now (it is selected: Ctrl+C or ⌘C). payorch keeps only its hash and cannot show it again. ', hint)));
    input.focus();
    input.select();
  }

  function hideKeyOf(page, clientId) {
    if (page.keyClientId !== clientId) return;
    page.keyClientId = null;
    clear(page.keyBox);
  }

  function drawClients(page, clients) {
    var columns = [
      { label: 'Name' }, { label: 'ID', className: 'mono' }, { label: 'Created' }, { label: 'Status' }, { label: 'Actions' }
    ];
    var rows = clients.map(function (client, index) {
      return clientRow(page, client, index, columns.length);
    });
    page.openForm = null;
    clear(page.results);
    page.results.appendChild(table('API clients, newest first (' + clients.length + ')', columns, rows, { 'data-testid': 'clients' }));
  }

  function clientStatus(client) {
    if (client.disabled_at) return [stateBadge('revoked'), ' at ', timeEl(client.disabled_at)];
    var previous = client.previous_key_expires_at ? new Date(client.previous_key_expires_at) : null;
    var graceLeft = previous && !isNaN(previous.getTime()) && previous.getTime() > Date.now();
    return [stateBadge('active'), graceLeft ? [' old key valid until ', timeEl(client.previous_key_expires_at)] : null];
  }

  function clientRow(page, client, index, columnCount) {
    var id = String(client.id);
    var name = String(client.name);
    var row = el('tr', { 'data-client-id': id });
    var actions = valueOrNone(null);
    if (!client.disabled_at) {
      var rotate = el('button', {
        type: 'button', className: 'button-secondary', 'data-action': 'rotate',
        'aria-expanded': 'false', 'aria-label': 'Rotate key of ' + name
      }, 'Rotate key');
      var revoke = el('button', {
        type: 'button', className: 'button-secondary', 'data-action': 'revoke',
        'aria-expanded': 'false', 'aria-label': 'Revoke ' + name
      }, 'Revoke');
      rotate.addEventListener('click', function () {
        toggleRowForm(page, row, rotate, columnCount, function () {
          return rotateForm(page, client, 'rotate-' + index);
        });
      });
      revoke.addEventListener('click', function () {
        toggleRowForm(page, row, revoke, columnCount, function () {
          return revokeForm(page, client, 'revoke-' + index);
        });
      });
      actions = el('div', { className: 'row-actions' }, rotate, revoke);
    }
    appendChildren(row, [
      el('td', null, name),
      el('td', { className: 'mono' }, id),
      el('td', null, timeEl(client.created_at)),
      el('td', null, clientStatus(client)),
      el('td', null, actions)
    ]);
    return row;
  }

  function noteInput(formId) {
    return el('input', { id: formId + '-note', name: 'note', type: 'text', maxlength: 2000, autocomplete: 'off', size: 40 });
  }

  function rotateForm(page, client, formId) {
    var grace = el('select', { id: formId + '-grace', name: 'grace_seconds' },
      GRACE_PERIODS.map(function (period) { return el('option', { value: period.seconds }, period.label); }));
    var note = noteInput(formId);
    var submit = el('button', { type: 'submit' }, 'Rotate key');
    var formError = el('p', { className: 'form-error', hidden: true });
    var form = el('form', { id: formId, 'data-testid': 'rotate-form' },
      el('fieldset', null,
        el('legend', null, 'Rotate the key of ' + client.name),
        el('p', { className: 'muted' }, 'A new key is made and shown once; the old one works for the grace period.'),
        field('Grace period for the old key', grace, 'field'),
        field('Note (optional)', note, 'field'),
        formError,
        el('p', { className: 'actions' }, submit, cancelButton(page))));

    form.addEventListener('submit', function (event) {
      event.preventDefault();
      if (!startBusy(submit)) return;
      formError.hidden = true;
      var body = { grace_seconds: Number(grace.value), note: note.value.trim() || null };
      var path = '/v1/operator/clients/' + encodeURIComponent(String(client.id)) + '/rotate';
      api('POST', path, body).then(function (result) {
        if (page.gen !== generation) return;
        var expires = result.client && result.client.previous_key_expires_at;
        closeRowForm(page);
        showKey(page, result.client, result.key, expires
          ? ['The old key keeps working until ', timeEl(expires), '.']
          : 'The old key no longer works.');
        announce('Key of ' + client.name + ' rotated; the new key is shown once, below the form', false);
        return loadClients(page);
      }, function (err) {
        if (page.gen !== generation) return;
        announceProblem(err); // 409: revoked meanwhile
        showFormError(formError, 'Not rotated: ', err);
        endBusy(submit);
      });
    });
    return { form: form, focus: grace };
  }

  /** Revoking is the second step: this form (opened by "Revoke") holds "Confirm revoke". */
  function revokeForm(page, client, formId) {
    var note = noteInput(formId);
    var submit = el('button', { type: 'submit', className: 'button-danger' }, 'Confirm revoke');
    var formError = el('p', { className: 'form-error', hidden: true });
    var form = el('form', { id: formId, 'data-testid': 'revoke-form' },
      el('fieldset', null,
        el('legend', null, 'Revoke ' + client.name),
        el('p', null, 'Every key of ' + client.name + ' stops working within a few seconds. This cannot be undone.'),
        field('Note (optional)', note, 'field'),
        formError,
        el('p', { className: 'actions' }, submit, cancelButton(page))));

    form.addEventListener('submit', function (event) {
      event.preventDefault();
      if (!startBusy(submit)) return;
      formError.hidden = true;
      var path = '/v1/operator/clients/' + encodeURIComponent(String(client.id)) + '/revoke';
      api('POST', path, { note: note.value.trim() || null }).then(function () {
        if (page.gen !== generation) return;
        hideKeyOf(page, String(client.id));
        return loadClients(page).then(function () {
          if (page.gen !== generation) return;
          announce(client.name + ' revoked: its keys stop working within a few seconds', false);
          document.getElementById('page-title').focus();
        });
      }, function (err) {
        if (page.gen !== generation) return;
        announceProblem(err);
        showFormError(formError, 'Not revoked: ', err);
        endBusy(submit);
      });
    });
    return { form: form, focus: note };
  }

  // ---- connectors ---------------------------------------------------------------------

  function renderConnectors(view, gen) {
    refreshEvery(gen, '/v1/operator/connectors', function (body) {
      drawConnectors(view, body || {});
    });
  }

  /** Replaces the page's content in place (no control in it can hold focus). */
  function drawConnectors(view, body) {
    var connectors = body.connectors || [];
    var windowSeconds = Number(body.window_seconds) || 300;
    var windowText = windowSeconds % 60 === 0 ? windowSeconds / 60 + ' minutes' : windowSeconds + ' seconds';

    var health = el('section', { 'aria-labelledby': 'h-connector-health' },
      el('h2', { id: 'h-connector-health' }, 'Provider calls from this instance, last ' + windowText),
      table('Connectors: breaker, calls, errors and latency',
        [{ label: 'Connector' }, { label: 'Breaker' }, { label: 'Calls', numeric: true },
          { label: 'Error rate', numeric: true }, { label: 'p50', numeric: true }, { label: 'p99', numeric: true },
          { label: 'Calls and errors over time' }],
        connectors.map(function (c) {
          return [
            c.name, breakerBadge(c.breaker), countText(c.calls), percent(c.error_rate),
            millis(c.p50_ms), millis(c.p99_ms), seriesChart(String(c.name), c.series || [], windowSeconds, windowText)
          ];
        }), { 'data-testid': 'connector-health' }));

    var routing = body.routing || [];
    var enabled = body.enabled || [];
    var rules = routing.length
      ? table('Routing rules, in order: the first rule for a payment\'s currency applies',
        [{ label: 'Currency' }, { label: 'Connectors, in the order tried' }],
        routing.map(function (rule) {
          return [
            rule.currency === '*' ? '* (any other currency)' : String(rule.currency),
            el('ol', { className: 'route' }, (rule.connectors || []).map(function (c) {
              return el('li', null, String(c.name), isCount(c.weight) ? ' (weight ' + c.weight + ')' : null);
            }))
          ];
        }), { 'data-testid': 'routing' })
      : el('p', { 'data-testid': 'routing' },
        'No routing rules: each payment tries the enabled connectors in order: ' +
        (enabled.length ? enabled.join(', ') : 'none') + '.');
    var routingSection = el('section', { 'aria-labelledby': 'h-routing' },
      el('h2', { id: 'h-routing' }, 'Routing'), rules);

    clear(view);
    appendChildren(view, [health, routingSection,
      el('p', { className: 'muted' }, 'Refreshes every ' + REFRESH_MS / 1000 + ' seconds.')]);
  }

  /**
   * Columns of calls per bucket (oldest left), the errors among them in
   * a second colour from the bottom up; labelled with the same numbers.
   */
  function seriesChart(name, series, windowSeconds, windowText) {
    var width = 240;
    var height = 56;
    var pad = 4;
    var slots = Math.max(series.length, 1);
    var slot = (width - 2 * pad) / slots;
    var max = Math.max.apply(null, [1].concat(series.map(function (b) { return Number(b.calls) || 0; })));
    var bucket = Math.round(windowSeconds / slots);
    var calls = series.map(function (b) { return Number(b.calls) || 0; });
    var errors = series.map(function (b) { return Number(b.errors) || 0; });
    var label = sum(calls)
      ? name + ': calls per ' + bucket + ' s, oldest first: ' + calls.join(', ') + '; errors: ' + errors.join(', ')
      : name + ': no calls in the last ' + windowText;
    var svg = svgEl('svg', {
      className: 'series-chart', role: 'img', 'aria-label': label,
      viewBox: '0 0 ' + width + ' ' + height, preserveAspectRatio: 'none'
    }, svgEl('title', null, label));
    series.forEach(function (b, i) {
      var x = pad + i * slot + 1;
      var w = Math.max(1, slot - 2);
      var callHeight = (calls[i] / max) * (height - 2 * pad);
      var errorHeight = (Math.min(errors[i], max) / max) * (height - 2 * pad);
      if (callHeight > 0) {
        svg.appendChild(svgEl('rect', {
          className: 'bar', x: x.toFixed(1), y: (height - pad - callHeight).toFixed(1), width: w.toFixed(1), height: callHeight.toFixed(1)
        }));
      }
      if (errorHeight > 0) {
        svg.appendChild(svgEl('rect', {
          className: 'bar-error', x: x.toFixed(1), y: (height - pad - errorHeight).toFixed(1), width: w.toFixed(1), height: errorHeight.toFixed(1)
        }));
      }
    });
    return svg;
  }

  // ---- audit ------------------------------------------------------------------------

  function renderAudit(view, gen) {
    api('GET', '/v1/operator/audit?limit=' + LIST_LIMIT).then(function (entries) {
      if (gen !== generation) return;
      entries = entries || [];
      clear(view);
      view.appendChild(table(
        'Operator actions, newest first (' + entries.length + ')',
        [{ label: 'When' }, { label: 'Operator' }, { label: 'Action' }, { label: 'Target', className: 'mono' }, { label: 'Note' }],
        entries.map(function (entry) {
          return [timeEl(entry.at), entry.operator, entry.action, entry.target, valueOrNone(entry.note)];
        }),
        { 'data-testid': 'audit' }));
    }, function (err) {
      if (gen !== generation) return;
      clear(view);
      announceProblem(err);
    });
  }

  // ---- session and start-up ---------------------------------------------------------------

  function signOut() {
    var button = document.getElementById('sign-out');
    if (button.getAttribute('aria-disabled') === 'true') return; // already on its way
    button.setAttribute('aria-disabled', 'true');
    request('POST', '/console/sign-out').then(function () {
      stopRefresh();
      location.assign(SIGN_IN_URL);
    }, function (err) {
      button.removeAttribute('aria-disabled'); // still signed in: say why, carry on
      announceProblem(err);
    });
  }

  function start() {
    statusRegion = document.getElementById('status');

    // The skip link moves focus to <main> without touching the hash (the router owns it).
    document.getElementById('skip-link').addEventListener('click', function (event) {
      event.preventDefault();
      document.getElementById('main').focus();
    });
    document.getElementById('sign-out').addEventListener('click', signOut);
    window.addEventListener('hashchange', function () {
      // "#main" and other non-route hashes are in-page jumps, not pages.
      if (location.hash === '' || /^#\//.test(location.hash)) navigate(true);
    });
    // Leaving the page (or a bfcache freeze) stops the refresh; coming back starts it again.
    window.addEventListener('pagehide', stopRefresh);
    window.addEventListener('pageshow', function (event) {
      if (event.persisted) navigate(false);
    });

    api('GET', '/v1/operator/session').then(function (me) {
      session.operator = me.operator;
      document.getElementById('signed-in-as').textContent = 'Signed in as ' + me.operator;
      navigate(false);
    }, function (err) {
      // 401 already went to the sign-in page; anything else is shown.
      if (!err.problem || err.problem.status !== 401) announceProblem(err);
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
