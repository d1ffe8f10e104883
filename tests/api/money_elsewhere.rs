//! Money that moved where payorch did not expect it is never settled by a
//! guess: a connector the payment failed over from that took the money, a
//! payment paid after it was final, another amount, a transaction payorch
//! never made — each opens a review (once), tells the merchant, and is
//! given back exactly once when an operator (or `PAYORCH_LATE_SUCCESS`)
//! says so. The sandbox's ledger is the provider's truth. Real PostgreSQL.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::{
    connectors::merchant_events,
    helpers::{TestApp, TestDb, test_env},
};
use payorch::{
    config::SANDBOX_SECRET_KEY,
    domain::{Amount, Currency, LateSuccess, PaymentEvent, ReviewAction},
    payments::{ActorSettings, Payments, WebhookEvent},
    provider::{Connectors, paystack},
    store::webhooks::WebhookRecord,
};

/// An app with both connectors, NGN routed to Paystack first.
async fn app_with(extra: &[(&str, &str)]) -> TestApp {
    let db = TestDb::postgres().await;
    let mut env: HashMap<String, String> = test_env(&db);
    env.insert("PAYORCH_PROVIDERS".into(), "paystack,flutterwave".into());
    env.insert("PAYORCH_ROUTING".into(), "NGN=paystack,flutterwave".into());
    env.insert("PAYORCH_SANDBOX_REFUND_SETTLE_MS".into(), "0".into());
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    TestApp::spawn_with(Arc::new(db), env).await
}

/// The configuration an operator's CLI would have against `app`.
fn operator_config(app: &TestApp) -> Arc<payorch::config::Config> {
    Arc::new(crate::helpers::config_from(&operator_env(app)))
}

/// The environment of an operator's CLI (or cron) against `app`.
pub(crate) fn operator_env(app: &TestApp) -> HashMap<String, String> {
    HashMap::from([
        ("DATABASE_URL".into(), app.database_url.clone()),
        ("PAYORCH_PROVIDER".into(), "sandbox".into()),
        ("PAYSTACK_SECRET_KEY".into(), SANDBOX_SECRET_KEY.into()),
        ("PAYORCH_PROVIDERS".into(), "paystack,flutterwave".into()),
        ("PAYSTACK_BASE_URL".into(), app.url("/sandbox/")),
        (
            "FLUTTERWAVE_BASE_URL".into(),
            app.url("/sandbox/flutterwave/"),
        ),
    ])
}

/// Someone at the command line, as `payorch reviews resolve` names them.
fn cli(user: &str) -> payorch::operators::Actor {
    payorch::operators::Actor::Cli(Some(user.to_owned()))
}

async fn rows(app: &TestApp, sql: &str) -> Vec<sea_orm::QueryResult> {
    app.db
        .query_all_raw(Statement::from_string(app.db.get_database_backend(), sql))
        .await
        .unwrap()
}

/// `(kind, status, resolution)` of every review, oldest first.
pub(crate) async fn reviews(app: &TestApp) -> Vec<(String, String, Option<String>)> {
    rows(
        app,
        "SELECT kind, status, resolution FROM reviews ORDER BY opened_at",
    )
    .await
    .iter()
    .map(|r| {
        (
            r.try_get("", "kind").unwrap(),
            r.try_get("", "status").unwrap(),
            r.try_get("", "resolution").unwrap(),
        )
    })
    .collect()
}

async fn review_id(app: &TestApp, kind: &str) -> uuid::Uuid {
    rows(
        app,
        &format!("SELECT id FROM reviews WHERE kind = '{kind}'"),
    )
    .await
    .first()
    .unwrap_or_else(|| panic!("no {kind} review"))
    .try_get("", "id")
    .unwrap()
}

/// Waits (at most 20 s) until a review exists: webhooks are applied by the
/// app's in-process worker.
async fn until_reviewed(app: &TestApp) -> Vec<(String, String, Option<String>)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = reviews(app).await;
        if !found.is_empty() {
            return found;
        }
        assert!(Instant::now() < deadline, "no review opened");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn webhook_outcomes(app: &TestApp, reference: &str) -> Vec<String> {
    rows(
        app,
        &format!(
            "SELECT outcome FROM webhook_events WHERE reference = '{reference}' \
             ORDER BY received_at"
        ),
    )
    .await
    .iter()
    .map(|r| r.try_get("", "outcome").unwrap())
    .collect()
}

/// Settles the sandbox transaction `reference` in `provider`'s dialect;
/// `notify`: with its webhook, as the provider would.
pub(crate) async fn settle(
    app: &TestApp,
    provider: &str,
    reference: &str,
    status: &str,
    notify: bool,
) {
    let response = app
        .sandbox(
            &format!("transactions/{reference}/outcome"),
            json!({"status": status, "notify": notify, "provider": provider}),
        )
        .await;
    assert_eq!(response.status(), 200, "{provider} {reference} {status}");
}

/// A payment opened at Flutterwave after Paystack took the initialize and
/// lost its answer (a 500 after the work): Paystack holds a live
/// transaction under the same reference.
pub(crate) async fn failed_over_payment(app: &TestApp) -> String {
    let fault = app
        .sandbox(
            "faults",
            json!({"provider": "paystack", "operation": "initialize", "mode": "error_after"}),
        )
        .await;
    assert_eq!(fault.status(), 204);
    let body: Value = app
        .initialize(
            &json!({"amount": 5_000, "currency": "NGN", "email": "ada@example.com"}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["provider"], "flutterwave", "{body}");
    let reference = body["reference"].as_str().unwrap().to_owned();
    assert_eq!(
        app.ledger_entry("paystack", &reference).await["status"],
        "ongoing",
        "the lost answer's transaction is live at Paystack"
    );
    reference
}

fn signed_paystack(event: &str, id: i64, reference: &str, amount: i64) -> (String, String) {
    let body = json!({"event": event, "data": {
        "id": id, "reference": reference, "amount": amount, "currency": "NGN",
        "status": if event == "charge.success" { "success" } else { "failed" }
    }})
    .to_string();
    let signature = paystack::sign_webhook(SANDBOX_SECRET_KEY.as_bytes(), body.as_bytes());
    (body, signature)
}

pub(crate) async fn post_paystack(
    app: &TestApp,
    event: &str,
    id: i64,
    reference: &str,
    amount: i64,
) {
    let (body, signature) = signed_paystack(event, id, reference, amount);
    let response = app
        .http
        .post(app.url("/v1/webhooks/paystack"))
        .header(paystack::SIGNATURE_HEADER, signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

pub(crate) async fn until_status(app: &TestApp, reference: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let payment = app.payment(reference).await;
        if payment["status"] == status {
            return payment;
        }
        assert!(Instant::now() < deadline, "never {status}: {payment}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn money_taken_at_a_connector_payorch_failed_over_from_is_reviewed_and_given_back_there_once()
{
    let app = app_with(&[]).await;
    let reference = failed_over_payment(&app).await;

    // The customer pays the Paystack checkout nobody was shown: Paystack's
    // webhook arrives for a payment Flutterwave holds.
    settle(&app, "paystack", &reference, "success", true).await;
    let opened = until_reviewed(&app).await;
    assert_eq!(
        opened,
        [(
            "charged_at_other_connector".to_owned(),
            "open".to_owned(),
            None
        )]
    );
    let payment = app.payment(&reference).await;
    assert_eq!(
        payment["status"], "pending",
        "Flutterwave's payment is untouched"
    );
    assert_eq!(payment["review"]["kind"], "charged_at_other_connector");
    assert_eq!(
        webhook_outcomes(&app, &reference).await,
        ["ignored:other_connector"]
    );
    assert!(
        merchant_events(&app, &reference)
            .await
            .contains(&"payment.requires_review".to_owned())
    );

    // The same money reported again (a redelivery under another id) is
    // not a new case.
    post_paystack(&app, "charge.success", 991, &reference, 5_000).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while webhook_outcomes(&app, &reference).await.len() < 2 {
        assert!(Instant::now() < deadline, "redelivery never recorded");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(reviews(&app).await.len(), 1);

    // The operator gives it back where it was taken.
    let cfg = operator_config(&app);
    let id = review_id(&app, "charged_at_other_connector").await;
    let resolved = payorch::resolve_review(
        cfg.clone(),
        id,
        ReviewAction::RefundAtConnector,
        &cli("alice"),
        Some("customer paid twice".into()),
    )
    .await
    .unwrap();
    assert_eq!(resolved.resolution.as_deref(), Some("refund_at_connector"));
    assert_eq!(resolved.resolved_by.as_deref(), Some("cli:alice"));
    let paystack = app.ledger_entry("paystack", &reference).await;
    let refunds = paystack["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "{paystack}");
    assert_eq!(refunds[0]["amount"], 5_000);
    assert!(
        app.ledger_entry("flutterwave", &reference).await["refunds"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing refunded where the payment is held"
    );
    let payment = app.payment(&reference).await;
    assert_eq!(payment["refunded_amount"], 0, "not the payment's own money");
    assert_eq!(payment["review"], Value::Null);

    // Never twice: the review is closed, and the refund is once per
    // payment and connector.
    let again =
        payorch::resolve_review(cfg, id, ReviewAction::RefundAtConnector, &cli("bob"), None).await;
    assert!(again.is_err(), "{again:?}");
    assert_eq!(
        app.ledger_entry("paystack", &reference).await["refunds"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(app.sandbox_stats_of("paystack").await["refund_calls"], 1);
}

#[tokio::test]
async fn the_sweep_asks_the_connector_a_pending_payment_failed_over_from() {
    let app = app_with(&[]).await;
    let reference = failed_over_payment(&app).await;
    // Paid at Paystack, and its webhook lost.
    settle(&app, "paystack", &reference, "success", false).await;
    assert!(reviews(&app).await.is_empty());

    let mut env: HashMap<String, String> = HashMap::new();
    for (k, v) in [
        ("DATABASE_URL", app.database_url.clone()),
        ("PAYORCH_PROVIDER", "sandbox".into()),
        ("PAYSTACK_SECRET_KEY", SANDBOX_SECRET_KEY.into()),
        ("PAYORCH_PROVIDERS", "paystack,flutterwave".into()),
        ("PAYSTACK_BASE_URL", app.url("/sandbox/")),
        ("FLUTTERWAVE_BASE_URL", app.url("/sandbox/flutterwave/")),
        (
            "PAYORCH_RECONCILE_AFTER_S",
            crate::helpers::RECONCILE_AFTER_S.into(),
        ),
    ] {
        env.insert(k.into(), v);
    }
    crate::helpers::backdate(&app.db).await;
    let report = payorch::reconcile_once(Arc::new(crate::helpers::config_from(&env)))
        .await
        .unwrap();
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(
        reviews(&app).await,
        [(
            "charged_at_other_connector".to_owned(),
            "open".to_owned(),
            None
        )]
    );
    let payment = app.payment(&reference).await;
    assert_eq!(payment["status"], "pending");
    assert!(
        payment["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["cause"] == "reconcile:requires_review:charged_at_other_connector"),
        "{payment}"
    );
}

#[tokio::test]
async fn a_payment_paid_after_it_failed_is_reviewed_and_the_merchant_told() {
    let app = app_with(&[]).await;
    let payment = app.new_payment(5_000).await;
    let reference = payment["reference"].as_str().unwrap().to_owned();
    assert_eq!(payment["provider"], "paystack");
    post_paystack(&app, "charge.failed", 1, &reference, 5_000).await;
    until_status(&app, &reference, "failed").await;

    settle(&app, "paystack", &reference, "success", true).await;
    assert_eq!(
        until_reviewed(&app).await,
        [("paid_after_final".to_owned(), "open".to_owned(), None)]
    );
    let payment = app.payment(&reference).await;
    assert_eq!(payment["status"], "failed", "never applied on its own");
    assert_eq!(payment["review"]["kind"], "paid_after_final");
    let told = merchant_events(&app, &reference).await;
    assert!(
        told.contains(&"payment.requires_review".to_owned()),
        "{told:?}"
    );
    assert!(
        app.ledger_entry("paystack", &reference).await["refunds"]
            .as_array()
            .unwrap()
            .is_empty(),
        "by default nothing is refunded without an operator"
    );
}

#[tokio::test]
async fn another_amount_opens_an_amount_mismatch_review() {
    let app = app_with(&[]).await;
    let payment = app.new_payment(5_000).await;
    let reference = payment["reference"].as_str().unwrap().to_owned();
    post_paystack(&app, "charge.success", 7, &reference, 50).await;
    assert_eq!(
        until_reviewed(&app).await,
        [("amount_mismatch".to_owned(), "open".to_owned(), None)]
    );
    assert_eq!(app.payment(&reference).await["status"], "pending");
}

#[tokio::test]
async fn a_webhook_for_a_reference_payorch_never_made_is_recorded_and_reviewed_not_retried() {
    let app = app_with(&[]).await;
    post_paystack(&app, "charge.success", 42, "never-made-1", 9_000).await;
    let opened = until_reviewed(&app).await;
    assert_eq!(
        opened,
        [("unknown_transaction".to_owned(), "open".to_owned(), None)]
    );
    assert_eq!(
        webhook_outcomes(&app, "never-made-1").await,
        ["ignored:unknown_reference"]
    );
    let row = &rows(
        &app,
        "SELECT connector, reference FROM reviews WHERE kind = 'unknown_transaction'",
    )
    .await[0];
    assert_eq!(
        row.try_get::<Option<String>>("", "connector").unwrap(),
        Some("paystack".into())
    );
    assert_eq!(
        row.try_get::<Option<String>>("", "reference").unwrap(),
        Some("never-made-1".into())
    );
    // A failure for an unknown reference moves no money: recorded only.
    post_paystack(&app, "charge.failed", 43, "never-made-2", 9_000).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while webhook_outcomes(&app, "never-made-2").await.is_empty() {
        assert!(Instant::now() < deadline, "never recorded");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(reviews(&app).await.len(), 1);
}

/// Two workers (two payment cores on one database) apply two reports of the
/// same late success at once, under `PAYORCH_LATE_SUCCESS=refund`: one
/// review, resolved by policy, and one refund at the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_success_is_refunded_exactly_once_across_two_workers() {
    let app = app_with(&[]).await;
    let payment = app.new_payment(5_000).await;
    let reference = payment["reference"].as_str().unwrap().to_owned();
    post_paystack(&app, "charge.failed", 1, &reference, 5_000).await;
    until_status(&app, &reference, "failed").await;
    // The provider's truth: the customer paid after all.
    settle(&app, "paystack", &reference, "success", false).await;

    let client = Arc::new(paystack::PaystackClient::new(
        "paystack",
        app.url("/sandbox/").parse().unwrap(),
        payorch::config::Secret::new(SANDBOX_SECRET_KEY),
        Duration::from_secs(5),
    ));
    let worker = || {
        Payments::start_with(
            app.db.clone(),
            Connectors::single(client.clone()),
            ActorSettings {
                idle: Duration::from_secs(30),
                mailbox: 64,
                arbiters: 1,
            },
            Duration::from_secs(30),
            LateSuccess::Refund,
        )
        .unwrap()
    };
    let (first, second) = (worker(), worker());
    let success = |event_id: &str| WebhookEvent {
        record: WebhookRecord {
            provider: "paystack".into(),
            event_id: event_id.into(),
            event_type: "charge.success".into(),
            reference: reference.clone(),
            payload: json!({"id": event_id}),
            received_at: chrono::Utc::now(),
        },
        event: PaymentEvent::ChargeSucceeded {
            amount: Amount::new(5_000).unwrap(),
            currency: Currency::NGN,
        },
    };
    let (a, b) = tokio::join!(
        first.apply_webhooks(vec![success("late-a")]),
        second.apply_webhooks(vec![success("late-b")]),
    );
    assert!(a[0].is_ok() && b[0].is_ok(), "{a:?} {b:?}");
    // And once more, later, from either.
    second.apply_webhooks(vec![success("late-c")]).await;

    assert_eq!(
        reviews(&app).await,
        [(
            "paid_after_final".to_owned(),
            "resolved".to_owned(),
            Some("refund_at_connector".to_owned())
        )]
    );
    let refunded = app.ledger_entry("paystack", &reference).await;
    assert_eq!(
        refunded["refunds"].as_array().unwrap().len(),
        1,
        "{refunded}"
    );
    assert_eq!(app.sandbox_stats_of("paystack").await["refund_calls"], 1);
    let stored = rows(
        &app,
        "SELECT status, connector, review_id IS NOT NULL AS of_review FROM refunds",
    )
    .await;
    assert_eq!(stored.len(), 1);
    // Accepted by the provider, which settles it later (by webhook).
    assert_eq!(
        stored[0].try_get::<String>("", "status").unwrap(),
        "pending"
    );
    assert_eq!(
        stored[0]
            .try_get::<Option<String>>("", "connector")
            .unwrap(),
        Some("paystack".into())
    );
    assert!(stored[0].try_get::<bool>("", "of_review").unwrap());
    assert_eq!(app.payment(&reference).await["status"], "failed");
    first.stop();
    second.stop();
}

/// A refund at a connector that the provider fails leaves the money there:
/// its review opens again, and the operator's next `refund_at_connector`
/// is a new refund (the failed one no longer counts as given back).
#[tokio::test]
async fn a_failed_refund_at_a_connector_reopens_its_review_for_another_try() {
    let app = app_with(&[]).await;
    let reference = failed_over_payment(&app).await;
    settle(&app, "paystack", &reference, "success", true).await;
    until_reviewed(&app).await;
    let cfg = operator_config(&app);
    let id = review_id(&app, "charged_at_other_connector").await;
    payorch::resolve_review(
        cfg.clone(),
        id,
        ReviewAction::RefundAtConnector,
        &cli("alice"),
        None,
    )
    .await
    .unwrap();
    let sent = app.ledger_entry("paystack", &reference).await["refunds"][0].clone();
    let failed = app
        .sandbox(
            &format!("refunds/{}/outcome", sent["id"]),
            json!({"status": "failed"}),
        )
        .await;
    assert_eq!(failed.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while reviews(&app).await[0].1 != "open" {
        assert!(Instant::now() < deadline, "the review never reopened");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    payorch::resolve_review(
        cfg,
        id,
        ReviewAction::RefundAtConnector,
        &cli("alice"),
        None,
    )
    .await
    .unwrap();
    let refunds = app.ledger_entry("paystack", &reference).await["refunds"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(refunds.len(), 2, "{refunds:?}");
    assert_eq!(refunds[0]["status"], "failed");
    assert_eq!(
        reviews(&app).await[0],
        (
            "charged_at_other_connector".to_owned(),
            "resolved".to_owned(),
            Some("refund_at_connector".to_owned())
        )
    );
}

/// Both connectors hand out numeric refund ids: a refund webhook is
/// matched among the refunds sent to the connector that reports it, never
/// another connector's refund under the same id (the older one here).
#[tokio::test]
async fn a_refund_webhook_settles_the_refund_of_its_own_connector_when_ids_collide() {
    let app = app_with(&[]).await;
    let mut refunded = Vec::new();
    for provider in ["flutterwave", "paystack"] {
        let body: Value = app
            .initialize(
                &json!({"amount": 5_000, "currency": "NGN", "email": "ada@example.com",
                    "provider": provider}),
                None,
            )
            .await
            .json()
            .await
            .unwrap();
        let reference = body["reference"].as_str().unwrap().to_owned();
        settle(&app, provider, &reference, "success", true).await;
        until_status(&app, &reference, "succeeded").await;
        let refund = app
            .post(&format!("/v1/payments/{reference}/refunds"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(refund.status(), 201);
        refunded.push(reference);
    }
    let (flutterwave, paystack) = (&refunded[0], &refunded[1]);
    // The collision: Flutterwave's (older) refund under Paystack's id.
    let paystack_id: String = rows(
        &app,
        &format!(
            "SELECT r.provider_refund_id FROM refunds r JOIN payments p ON p.id = r.payment_id \
             WHERE p.reference = '{paystack}'"
        ),
    )
    .await[0]
        .try_get("", "provider_refund_id")
        .unwrap();
    app.db
        .execute_unprepared(&format!(
            "UPDATE refunds SET provider_refund_id = '{paystack_id}' FROM payments \
             WHERE payments.id = refunds.payment_id AND payments.reference = '{flutterwave}'"
        ))
        .await
        .unwrap();
    // And Paystack's row written after it (a lookup by id alone would meet
    // Flutterwave's first).
    app.db
        .execute_unprepared(&format!(
            "UPDATE refunds SET updated_at = refunds.updated_at FROM payments \
             WHERE payments.id = refunds.payment_id AND payments.reference = '{paystack}'"
        ))
        .await
        .unwrap();

    // Paystack settles its refund, with its webhook.
    let sent = app.ledger_entry("paystack", paystack).await["refunds"][0].clone();
    let settled = app
        .sandbox(
            &format!("refunds/{}/outcome", sent["id"]),
            json!({"status": "processed"}),
        )
        .await;
    assert_eq!(settled.status(), 200);
    let refund_status = |reference: &str| {
        let (app, reference) = (&app, reference.to_owned());
        async move {
            crate::refunds::refunds(app, &reference).await[0]["status"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while refund_status(paystack).await != "succeeded" {
        assert!(
            Instant::now() < deadline,
            "Paystack's refund never settled: {:?}",
            webhook_outcomes(&app, paystack).await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(refund_status(flutterwave).await, "pending");
}
