//! Request ids and metrics.

use payorch::{config::SANDBOX_SECRET_KEY, provider::paystack};

use crate::{helpers::TestApp, webhooks::Pipeline};

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_a_missing_or_odd_one_replaced() {
    let app = TestApp::spawn().await;
    let given = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-abc.123");
    for header in [None, Some("has spaces in it"), Some("")] {
        let mut request = app.http.get(app.url("/healthz"));
        if let Some(value) = header {
            request = request.header("x-request-id", value);
        }
        let response = request.send().await.unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    }
    // Errors carry it too.
    let missing = app.get("/v1/payments/nope").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = TestApp::spawn().await;
    let payment = app.new_payment(100).await;
    app.payment(payment["reference"].as_str().unwrap()).await;
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for needle in [
        "payorch_http_requests_total{",
        "route=\"/v1/payments/initialize\"",
        "route=\"/v1/payments/{reference}\"",
        "payorch_http_request_duration_seconds_bucket",
        "payorch_provider_request_duration_seconds",
        "payorch_ratelimit_decisions_total",
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics");
    }
    assert!(
        !text.contains(payment["reference"].as_str().unwrap()),
        "no per-payment series"
    );
    // Series with a fixed label set exist before their first event.
    let refund_errors = text.lines().find(|line| {
        line.starts_with("payorch_reconcile_total{")
            && line.contains("kind=\"refund\"")
            && line.contains("result=\"error\"")
    });
    assert!(
        refund_errors.is_some(),
        "refund reconcile errors not registered"
    );
    assert!(text.contains("payorch_queue_unroutable_total"));
    // Per-route HTTP series too: no test lists refunds while unavailable.
    assert!(
        text.lines().any(|line| {
            line.starts_with("payorch_http_requests_total{")
                && line.contains("route=\"/v1/payments/{reference}/refunds\"")
                && line.contains("method=\"GET\"")
                && line.contains("status=\"503\"")
        }),
        "503s of the refund list not registered"
    );
}

#[tokio::test]
async fn a_webhook_carries_its_request_id_into_the_queue() {
    let pipeline = Pipeline::start(0, &[]).await;
    let body = b"{\"not\": \"an event\"}";
    let response = pipeline
        .app
        .http
        .post(pipeline.app.url("/v1/webhooks/sandbox"))
        .header("x-request-id", "provider-delivery-42")
        .header(
            "x-paystack-signature",
            paystack::sign_webhook(SANDBOX_SECRET_KEY.as_bytes(), body),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let parked = pipeline.queue.dead_letters(1).await.unwrap();
    assert_eq!(parked[0].message.request_id(), Some("provider-delivery-42"));
}
