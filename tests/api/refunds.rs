//! Refunds through the sandbox: full and partial, settled by webhook,
//! replayed by Idempotency-Key, refused when they would go too far — also
//! when many race across two API processes — and never sent twice when
//! the provider's answer is lost.

use std::sync::Arc;

use payorch::config::SANDBOX_SECRET_KEY;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{SendJson, TestApp, TestDb, assert_problem, payorch_command, test_env};

/// An app whose sandbox settles refunds only when a test says so.
pub(crate) async fn app_with(vars: &[(&str, &str)]) -> TestApp {
    let db = Arc::new(TestDb::postgres().await);
    let mut env = test_env(&db);
    env.insert("PAYORCH_SANDBOX_REFUND_SETTLE_MS".into(), "0".into());
    for (k, v) in vars {
        env.insert(k.to_string(), v.to_string());
    }
    TestApp::spawn_with(db, env).await
}

/// A payment of `amount` that the provider reports paid.
pub(crate) async fn succeeded_payment(app: &TestApp, amount: i64) -> String {
    let payment = app.new_payment(amount).await;
    let reference = payment["reference"].as_str().unwrap().to_owned();
    let settled = app
        .sandbox(
            &format!("transactions/{reference}/outcome"),
            json!({"status": "success", "notify": false}),
        )
        .await;
    assert_eq!(settled.status(), 200);
    let verified = app
        .post(&format!("/v1/payments/{reference}/verify"))
        .json_body()
        .await;
    assert_eq!(verified["status"], "succeeded");
    reference
}

pub(crate) async fn refund(
    app: &TestApp,
    reference: &str,
    body: Value,
    key: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .post(&format!("/v1/payments/{reference}/refunds"))
        .json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

pub(crate) async fn refunds(app: &TestApp, reference: &str) -> Vec<Value> {
    let list = app
        .get(&format!("/v1/payments/{reference}/refunds"))
        .json_body()
        .await;
    list.as_array().unwrap().clone()
}

/// The sandbox's refunds of `reference` (its own ids).
pub(crate) async fn sandbox_refunds(app: &TestApp, reference: &str) -> Vec<Value> {
    let list: Value = app
        .http
        .get(app.url(&format!("/sandbox/refund?transaction={reference}")))
        .bearer_auth(SANDBOX_SECRET_KEY)
        .json_body()
        .await;
    list["data"].as_array().unwrap().clone()
}

/// Settles every sandbox refund of `reference` as `status`, with a webhook.
async fn settle_at_sandbox(app: &TestApp, reference: &str, status: &str) {
    for refund in sandbox_refunds(app, reference).await {
        let settled = app
            .sandbox(
                &format!("refunds/{}/outcome", refund["id"]),
                json!({"status": status}),
            )
            .await;
        assert_eq!(settled.status(), 200);
    }
}

/// Waits until the payment's refunds all have left `pending`.
async fn until_settled(app: &TestApp, reference: &str) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let list = refunds(app, reference).await;
        if list.iter().all(|r| r["status"] != "pending") {
            return list;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refunds never settled: {list:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_full_refund_settled_by_webhook_makes_the_payment_refunded() {
    let app = app_with(&[]).await;
    let reference = succeeded_payment(&app, 10_000).await;

    let response = refund(&app, &reference, json!({"reason": "changed mind"}), None).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["status"], "pending");
    assert_eq!(created["amount"], 10_000);
    assert_eq!(created["payment_reference"], reference.as_str());
    assert_eq!(created["reason"], "changed mind");
    let payment = app.payment(&reference).await;
    assert_eq!(payment["refunded_amount"], 10_000);
    assert_eq!(
        payment["status"], "succeeded",
        "refunded only once it settles"
    );

    settle_at_sandbox(&app, &reference, "processed").await;
    let settled = until_settled(&app, &reference).await;
    assert_eq!(settled[0]["status"], "succeeded");
    let payment = app.payment(&reference).await;
    assert_eq!(payment["status"], "refunded");
    let causes: Vec<_> = payment["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["cause"].as_str().unwrap().to_owned())
        .collect();
    assert!(causes.iter().any(|c| c == "webhook:refunded"), "{causes:?}");
    assert_eq!(app.sandbox_stats().await["refund_calls"], 1);
}

#[tokio::test]
async fn partial_refunds_leave_the_payment_succeeded_until_they_cover_it() {
    let app = app_with(&[]).await;
    let reference = succeeded_payment(&app, 10_000).await;
    for amount in [3_000, 2_000] {
        let response = refund(&app, &reference, json!({"amount": amount}), None).await;
        assert_eq!(response.status(), 201);
    }
    settle_at_sandbox(&app, &reference, "processed").await;
    until_settled(&app, &reference).await;
    let payment = app.payment(&reference).await;
    assert_eq!(payment["status"], "succeeded");
    assert_eq!(payment["refunded_amount"], 5_000);

    // No amount: whatever is left.
    let rest = refund(&app, &reference, json!({}), None).await;
    assert_eq!(rest.status(), 201);
    assert_eq!(rest.json::<Value>().await.unwrap()["amount"], 5_000);
    settle_at_sandbox(&app, &reference, "processed").await;
    let all = until_settled(&app, &reference).await;
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|r| r["status"] == "succeeded"));
    assert_eq!(app.payment(&reference).await["status"], "refunded");
}

#[tokio::test]
async fn a_failed_refund_gives_its_amount_back() {
    let app = app_with(&[]).await;
    let reference = succeeded_payment(&app, 4_000).await;
    assert_eq!(
        refund(&app, &reference, json!({}), None).await.status(),
        201
    );
    settle_at_sandbox(&app, &reference, "failed").await;
    let settled = until_settled(&app, &reference).await;
    assert_eq!(settled[0]["status"], "failed");
    let payment = app.payment(&reference).await;
    assert_eq!(payment["refunded_amount"], 0);
    assert_eq!(payment["status"], "succeeded");
    // So it can be refunded again.
    assert_eq!(
        refund(&app, &reference, json!({}), None).await.status(),
        201
    );
}

#[tokio::test]
async fn only_a_succeeded_payment_can_be_refunded() {
    let app = app_with(&[]).await;
    let pending = app.new_payment(2_000).await;
    let reference = pending["reference"].as_str().unwrap();
    let response = refund(&app, reference, json!({}), None).await;
    assert_problem(response, 409, "payment_not_refundable").await;
    assert!(refunds(&app, reference).await.is_empty(), "nothing stored");
    assert_eq!(app.sandbox_stats().await["refund_calls"], 0);
    let unknown = refund(&app, "no-such-payment", json!({}), None).await;
    assert_problem(unknown, 404, "payment_not_found").await;
}

#[tokio::test]
async fn bad_amounts_are_422_and_nothing_is_stored() {
    let app = app_with(&[]).await;
    let reference = succeeded_payment(&app, 1_000).await;
    for amount in [json!(0), json!(-5), json!(1_001)] {
        let response = refund(&app, &reference, json!({"amount": amount}), None).await;
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "amount", "{problem}");
    }
    let long_reason = "x".repeat(256);
    let response = refund(&app, &reference, json!({"reason": long_reason}), None).await;
    assert_problem(response, 422, "validation_failed").await;
    assert!(refunds(&app, &reference).await.is_empty());
    assert_eq!(app.payment(&reference).await["refunded_amount"], 0);
    assert_eq!(app.sandbox_stats().await["refund_calls"], 0);
}

#[tokio::test]
async fn the_same_key_replays_the_refund_and_the_provider_is_asked_once() {
    let app = app_with(&[]).await;
    let reference = succeeded_payment(&app, 6_000).await;
    let key = Uuid::new_v4().to_string();
    let first = refund(&app, &reference, json!({"amount": 1_000}), Some(&key)).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body = first.text().await.unwrap();
    let second = refund(&app, &reference, json!({"amount": 1_000}), Some(&key)).await;
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.text().await.unwrap(), first_body, "byte for byte");
    let other_body = refund(&app, &reference, json!({"amount": 2_000}), Some(&key)).await;
    assert_problem(other_body, 422, "idempotency_key_reused").await;
    assert_eq!(refunds(&app, &reference).await.len(), 1);
    assert_eq!(app.sandbox_stats().await["refund_calls"], 1);
}

#[tokio::test]
async fn fifty_concurrent_refunds_across_two_processes_never_exceed_the_amount() {
    let db = Arc::new(TestDb::postgres().await);
    let mut env = test_env(&db);
    env.insert("PAYORCH_SANDBOX_REFUND_SETTLE_MS".into(), "0".into());
    let first = TestApp::spawn_with(db.clone(), env.clone()).await;
    // The second process talks to the first one's sandbox, as two API
    // instances share one provider.
    env.insert(
        "PAYSTACK_BASE_URL".into(),
        first.url("/sandbox/").to_string(),
    );
    let second = TestApp::spawn_with(db, env).await;
    let reference = succeeded_payment(&first, 10_000).await;

    let attempts = (0..50).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        app.http
            .post(app.url(&format!("/v1/payments/{reference}/refunds")))
            .bearer_auth(&first.api_key)
            .json(&json!({"amount": 3_000}))
            .send()
    });
    let mut accepted = 0;
    for response in futures_util::future::join_all(attempts).await {
        let response = response.unwrap();
        match response.status().as_u16() {
            201 => accepted += 1,
            422 => {}
            other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
        }
    }
    assert_eq!(accepted, 3, "30 % each: three fit, the fourth never does");
    let stored = refunds(&first, &reference).await;
    assert_eq!(stored.len(), 3);
    let total: i64 = stored.iter().map(|r| r["amount"].as_i64().unwrap()).sum();
    assert_eq!(total, 9_000);
    assert_eq!(first.payment(&reference).await["refunded_amount"], 9_000);
    assert_eq!(first.sandbox_stats().await["refund_calls"], 3);
}

#[tokio::test]
async fn a_lost_provider_answer_leaves_the_refund_pending_and_reconciliation_never_resends_it() {
    // Until December 2026 a sweep failed such a refund when the provider's
    // look-up missed it; the provider's silence never settles money now:
    // it stays pending, its amount promised, until the provider answers or
    // (after PAYORCH_REFUND_REVIEW_AFTER_S) an operator decides.
    let app = app_with(&[("PAYORCH_PROVIDER_TIMEOUT_MS", "1000")]).await;
    let reference = succeeded_payment(&app, 5_000).await;
    let faulted = app
        .sandbox(
            "faults",
            json!({"operation": "refund", "mode": "error", "count": 1}),
        )
        .await;
    assert_eq!(faulted.status(), 204);

    let response = refund(&app, &reference, json!({}), None).await;
    assert_eq!(
        response.status(),
        201,
        "the refund exists; its fate is unknown"
    );
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "pending");
    assert_eq!(app.sandbox_stats().await["refund_calls"], 1);

    // A sweep finds nothing at the provider: still pending, its amount
    // still promised — and it was not asked a second time.
    let mut sweeper = payorch_command();
    sweeper
        .arg("reconcile")
        .env("DATABASE_URL", &app.database_url)
        .env("PAYORCH_PROVIDER", "sandbox")
        .env("PAYSTACK_BASE_URL", app.url("/sandbox/"))
        .env(
            "PAYORCH_RECONCILE_AFTER_S",
            crate::helpers::RECONCILE_AFTER_S,
        );
    crate::helpers::backdate(&app.db).await;
    // Off the test's runtime, which serves the app and its sandbox meanwhile.
    let output = tokio::task::spawn_blocking(move || sweeper.output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(!printed.contains("-> failed"), "{printed}");
    let stored = refunds(&app, &reference).await;
    assert_eq!(stored[0]["status"], "pending", "never failed on a miss");
    assert_eq!(stored[0]["review"], Value::Null, "not yet for review");
    assert_eq!(app.payment(&reference).await["refunded_amount"], 5_000);
    assert_eq!(app.sandbox_stats().await["refund_calls"], 1, "never resent");
}

#[tokio::test]
async fn a_refund_webhook_delivered_again_changes_nothing() {
    use payorch::provider::paystack;
    use sea_orm::ConnectionTrait;
    let app = app_with(&[]).await;
    let reference = succeeded_payment(&app, 8_000).await;
    assert_eq!(
        refund(&app, &reference, json!({"amount": 3_000}), None)
            .await
            .status(),
        201
    );
    settle_at_sandbox(&app, &reference, "processed").await;
    until_settled(&app, &reference).await;
    let before = app.payment(&reference).await;

    // The provider delivers the same event again, byte for byte.
    let settled = &sandbox_refunds(&app, &reference).await[0];
    let body = json!({"event": "refund.processed", "data": settled}).to_string();
    let again = app
        .http
        .post(app.url("/v1/webhooks/sandbox"))
        .header(
            "x-paystack-signature",
            paystack::sign_webhook(SANDBOX_SECRET_KEY.as_bytes(), body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    // Wait until the in-process worker has taken it off the queue table.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let waiting = app
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                app.db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM queued_messages",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        if waiting == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never processed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let after = app.payment(&reference).await;
    assert_eq!(
        after["transitions"], before["transitions"],
        "no second audit row"
    );
    assert_eq!(after["refunded_amount"], 3_000);
    assert_eq!(after["status"], "succeeded");
    let stored = refunds(&app, &reference).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["status"], "succeeded");
}

/// SQLite, one writer at a time: concurrent refunds each read the payment,
/// then write. Each either gets its refund or is refused for the amount,
/// none fails with "database is locked" (a deferred transaction that read
/// before another writer committed cannot write; found by schemathesis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refunds_on_sqlite_never_find_the_database_locked() {
    let db = Arc::new(TestDb::sqlite());
    let mut env = test_env(&db);
    env.insert("PAYORCH_SANDBOX_REFUND_SETTLE_MS".into(), "0".into());
    let app = TestApp::spawn_with(db, env).await;
    let reference = succeeded_payment(&app, 10).await;
    let (http, base) = app.clone_http();
    let requests = (0..20).map(|_| {
        let request = http
            .post(format!("{base}/v1/payments/{reference}/refunds"))
            .bearer_auth(&app.api_key)
            .json(&json!({"amount": 1}));
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 422),
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 10);
}
