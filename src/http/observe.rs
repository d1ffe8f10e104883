//! Every request gets an id (`X-Request-Id` when the caller sent a sane
//! one, a fresh UUIDv7 otherwise), echoed in the response and carried by
//! every log line of the request; and is counted and timed by route
//! template, method and status for `/metrics`.

use std::time::{Duration, Instant};

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result, http::HeaderValue};
use tracing::Instrument;

use crate::timing::RequestClock;

/// The id of the request being served, for handlers that pass it on.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub struct Observe;

impl<E: Endpoint> Middleware<E> for Observe {
    type Output = ObserveEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        ObserveEndpoint { inner }
    }
}

pub struct ObserveEndpoint<E> {
    inner: E,
}

/// A caller's id is kept only if it is short and plain: it ends up in logs
/// and queue headers.
fn sane(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The route template of a path, so metrics do not grow a series per payment.
/// The method as a metric label: a method HTTP defines, or `other` — a
/// label taken from the request as sent would let anyone create series
/// without end.
pub fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

pub fn route_template(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["healthz"] => "/healthz",
        ["readyz"] => "/readyz",
        ["metrics"] => "/metrics",
        ["openapi.json"] => "/openapi.json",
        ["docs", ..] => "/docs",
        ["v1", "payments", "initialize"] => "/v1/payments/initialize",
        ["v1", "payments", _, "verify"] => "/v1/payments/{reference}/verify",
        ["v1", "payments", _, "refunds"] => "/v1/payments/{reference}/refunds",
        ["v1", "payments", _] => "/v1/payments/{reference}",
        ["v1", "webhooks", _] => "/v1/webhooks/{provider}",
        ["v1", "webhook-endpoints"] => "/v1/webhook-endpoints",
        ["v1", "webhook-endpoints", _] => "/v1/webhook-endpoints/{id}",
        ["v1", "webhook-endpoints", _, "rotate-secret"] => {
            "/v1/webhook-endpoints/{id}/rotate-secret"
        }
        ["v1", "events"] => "/v1/events",
        ["v1", "events", _] => "/v1/events/{id}",
        ["v1", "events", _, "redeliver"] => "/v1/events/{id}/redeliver",
        ["v1", "operator", "reviews"] => "/v1/operator/reviews",
        ["v1", "operator", "reviews", _] => "/v1/operator/reviews/{id}",
        ["v1", "operator", "reviews", _, "resolve"] => "/v1/operator/reviews/{id}/resolve",
        ["v1", "operator", "audit"] => "/v1/operator/audit",
        ["v1", "operator", "session"] => "/v1/operator/session",
        ["v1", "operator", "overview"] => "/v1/operator/overview",
        ["v1", "operator", "dead-letters"] => "/v1/operator/dead-letters",
        ["v1", "operator", "dead-letters", "replay"] => "/v1/operator/dead-letters/replay",
        ["v1", "operator", "clients"] => "/v1/operator/clients",
        ["v1", "operator", "clients", _, "revoke"] => "/v1/operator/clients/{id}/revoke",
        ["v1", "operator", "clients", _, "rotate"] => "/v1/operator/clients/{id}/rotate",
        ["v1", "operator", "payments"] => "/v1/operator/payments",
        ["v1", "operator", "payments", _] => "/v1/operator/payments/{id}",
        ["v1", "operator", "endpoints"] => "/v1/operator/endpoints",
        ["v1", "operator", "endpoints", _, "disable"] => "/v1/operator/endpoints/{id}/disable",
        ["v1", "operator", "events", _, "redeliver"] => "/v1/operator/events/{id}/redeliver",
        ["v1", "operator", "connectors"] => "/v1/operator/connectors",
        ["console", ..] => "/console",
        ["sandbox", ..] => "/sandbox",
        _ => "other",
    }
}

/// Each operation's route template, method and the statuses it documents:
/// their request counters exist from start (`crate::Core::start` registers
/// them beside `crate::telemetry::metrics`), so a rate of 5xx or 429 is 0,
/// not absent, before the first one.
const KNOWN_REQUESTS: &[(&str, &str, &[u16])] = &[
    ("/healthz", "GET", &[200]),
    ("/readyz", "GET", &[200, 503]),
    (
        "/v1/payments/initialize",
        "POST",
        &[
            201, 400, 401, 402, 409, 413, 415, 422, 429, 500, 502, 503, 504,
        ],
    ),
    (
        "/v1/payments/{reference}/verify",
        "POST",
        &[200, 401, 404, 429, 500, 502, 503, 504],
    ),
    (
        "/v1/payments/{reference}",
        "GET",
        &[200, 401, 404, 500, 503],
    ),
    (
        "/v1/payments/{reference}/refunds",
        "POST",
        &[
            201, 400, 401, 404, 409, 413, 415, 422, 429, 500, 502, 503, 504,
        ],
    ),
    (
        "/v1/payments/{reference}/refunds",
        "GET",
        &[200, 401, 404, 500, 503],
    ),
    (
        "/v1/webhooks/{provider}",
        "POST",
        &[200, 401, 404, 413, 429, 500, 503],
    ),
    (
        "/v1/webhook-endpoints",
        "POST",
        &[201, 400, 401, 413, 415, 422, 500, 503],
    ),
    ("/v1/webhook-endpoints", "GET", &[200, 401, 500, 503]),
    (
        "/v1/webhook-endpoints/{id}",
        "GET",
        &[200, 400, 401, 404, 500, 503],
    ),
    (
        "/v1/webhook-endpoints/{id}",
        "PATCH",
        &[200, 400, 401, 404, 413, 415, 422, 500, 503],
    ),
    (
        "/v1/webhook-endpoints/{id}",
        "DELETE",
        &[204, 400, 401, 404, 500, 503],
    ),
    (
        "/v1/webhook-endpoints/{id}/rotate-secret",
        "POST",
        &[200, 400, 401, 404, 500, 503],
    ),
    ("/v1/events", "GET", &[200, 400, 401, 422, 500, 503]),
    ("/v1/events/{id}", "GET", &[200, 401, 404, 500, 503]),
    (
        "/v1/events/{id}/redeliver",
        "POST",
        &[202, 400, 401, 404, 413, 500, 503],
    ),
    (
        "/v1/operator/reviews",
        "GET",
        &[200, 400, 401, 422, 429, 500, 503],
    ),
    (
        "/v1/operator/reviews/{id}",
        "GET",
        &[200, 400, 401, 404, 429, 500, 503],
    ),
    (
        "/v1/operator/reviews/{id}/resolve",
        "POST",
        &[
            200, 400, 401, 404, 409, 413, 415, 422, 429, 500, 502, 503, 504,
        ],
    ),
    (
        "/v1/operator/audit",
        "GET",
        &[200, 400, 401, 422, 429, 500, 503],
    ),
];

/// `Server-Timing` of a response, in milliseconds: payorch's own time
/// (`app`), the time spent waiting on connectors (`provider`), and the
/// time its database statements took (`db`, part of `app`).
fn server_timing(elapsed: Duration, clock: &RequestClock) -> HeaderValue {
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    let provider = clock.provider();
    let app = elapsed.saturating_sub(provider);
    HeaderValue::from_str(&format!(
        "app;dur={:.3}, provider;dur={:.3}, db;dur={:.3}",
        ms(app),
        ms(provider),
        ms(clock.database())
    ))
    .expect("digits and ASCII make a header value")
}

/// Registers the request counter and duration histogram of every
/// [`KNOWN_REQUESTS`] status at 0.
pub fn register_known_series() {
    for (route, method, statuses) in KNOWN_REQUESTS {
        for status in *statuses {
            let labels = [
                ("route", (*route).to_owned()),
                ("method", (*method).to_owned()),
                ("status", status.to_string()),
            ];
            metrics::counter!("payorch_http_requests_total", &labels).increment(0);
            let _ = metrics::histogram!("payorch_http_request_duration_seconds", &labels);
        }
    }
}

impl<E: Endpoint> Endpoint for ObserveEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        let started = Instant::now();
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|id| sane(id))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let method = method_label(req.method());
        let route = route_template(req.uri().path());
        req.extensions_mut().insert(RequestId(id.clone()));
        let span = tracing::info_span!("request", request_id = %id, %method, route);
        let clock = RequestClock::default();
        let served = RequestClock::run(
            Some(clock.clone()),
            self.inner.call(req).instrument(span.clone()),
        );
        let mut response = match served.await {
            Ok(output) => output.into_response(),
            Err(err) => {
                super::error::render_any_error(err)
                    .instrument(span.clone())
                    .await
            }
        };
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert("x-request-id", value);
        }
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        response
            .headers_mut()
            .insert("server-timing", server_timing(elapsed, &clock));
        let labels = [
            ("route", route.to_owned()),
            ("method", method.to_owned()),
            ("status", status.to_string()),
        ];
        metrics::counter!("payorch_http_requests_total", &labels).increment(1);
        metrics::histogram!("payorch_http_request_duration_seconds", &labels)
            .record(elapsed.as_secs_f64());
        span.in_scope(|| {
            if status >= 500 {
                tracing::warn!(
                    status,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "request failed"
                );
            } else {
                tracing::debug!(
                    status,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "request served"
                );
            }
        });
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_callers_must_be_plain() {
        assert!(sane("req-123_abc.def:9"));
        assert!(!sane(""));
        assert!(!sane("has space"));
        assert!(!sane("line\nbreak"));
        assert!(!sane(&"x".repeat(129)));
    }

    #[test]
    fn paths_map_to_templates() {
        assert_eq!(
            route_template("/v1/payments/po-123/verify"),
            "/v1/payments/{reference}/verify"
        );
        assert_eq!(
            route_template("/v1/payments/po-123"),
            "/v1/payments/{reference}"
        );
        assert_eq!(
            route_template("/v1/payments/initialize"),
            "/v1/payments/initialize"
        );
        assert_eq!(
            route_template("/v1/webhooks/sandbox"),
            "/v1/webhooks/{provider}"
        );
        assert_eq!(
            route_template("/v1/payments/po-123/refunds"),
            "/v1/payments/{reference}/refunds"
        );
        assert_eq!(
            route_template("/v1/operator/reviews/0193-x/resolve"),
            "/v1/operator/reviews/{id}/resolve"
        );
        assert_eq!(route_template("/sandbox/checkout/ac_1"), "/sandbox");
        assert_eq!(route_template("/wp-admin"), "other");
    }

    #[test]
    fn methods_outside_http_are_one_label() {
        use poem::http::Method;
        assert_eq!(method_label(&Method::POST), "POST");
        for made_up in ["M1", "M100000", "BREW"] {
            let method = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{made_up}");
        }
    }
}
