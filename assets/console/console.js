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
 *   #/reviews   open and resolved reviews, with an inline "Resolve" form
 *   #/dead-letters  messages parked in a dead-letter queue: inspect, replay
 *   #/audit     the operator audit log
 *
 * Backend (same origin, cookie session):
 *   GET  /v1/operator/session           -> {operator, csrf_token} or 401
 *   (every request: the session cookie, and X-CSRF-Token from the page's
 *   <meta name="csrf-token">)
 *   GET  /v1/operator/overview
 *   GET  /v1/operator/reviews?open=&kind=&limit=100
 *   POST /v1/operator/reviews/{id}/resolve  {action, note}
 *   GET  /v1/operator/dead-letters?queue=&limit=100   (oldest first)
 *   POST /v1/operator/dead-letters/replay  {queue, id?} -> {replayed}
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

  var ROUTES = {
    overview: { title: 'Overview', render: renderOverview },
    reviews: { title: 'Reviews', render: renderReviews },
    'dead-letters': { title: 'Dead letters', render: renderDeadLetters },
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

    document.title = route.title + ' — payorch console';
    var heading = document.getElementById('page-title');
    heading.textContent = route.title;
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

  function renderOverview(view, gen) {
    var inFlight = false;
    function load() {
      if (inFlight || document.hidden) return; // never stack requests; idle in a hidden tab
      inFlight = true;
      api('GET', '/v1/operator/overview').then(function (overview) {
        if (gen !== generation) return; // the operator left the page meanwhile
        recordSample(overview);
        drawOverview(view, overview);
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
      table('Circuit breaker state by connector', [{ label: 'Connector' }, { label: 'Breaker' }],
        connectors.map(function (c) {
          // Known states get a colour class; the state is always written out too.
          var state = String(c.breaker);
          var known = ['closed', 'half_open', 'open'].indexOf(state) >= 0;
          return [c.name, el('span', { className: known ? 'badge breaker-' + state : 'badge' }, humanize(state))];
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
        el('strong', null, isNaN(lag) ? 'unknown' : lag.toFixed(1) + ' s')));

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
