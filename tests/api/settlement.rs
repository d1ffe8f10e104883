//! Settlement reconciliation: each connector's transaction listing matched
//! against payorch's payments. A paid transaction payorch never made, money
//! at a connector a payment failed over from, a success after the payment
//! was final — each opens its review; an open payment the listing shows
//! paid is settled; a second pass over the same window opens nothing new.
//! Real PostgreSQL, both dialects of the sandbox.

use std::{collections::HashMap, sync::Arc};

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, TestDb, payorch_command, test_env},
    money_elsewhere::{
        failed_over_payment, operator_env, post_paystack, reviews, settle, until_status,
    },
};
use payorch::config::SANDBOX_SECRET_KEY;

async fn app() -> TestApp {
    let db = TestDb::postgres().await;
    let mut env: HashMap<String, String> = test_env(&db);
    env.insert("PAYORCH_PROVIDERS".into(), "paystack,flutterwave".into());
    env.insert("PAYORCH_ROUTING".into(), "NGN=paystack,flutterwave".into());
    TestApp::spawn_with(Arc::new(db), env).await
}

async fn settle_last_hour(app: &TestApp) -> payorch::payments::SettlementReport {
    let cfg = Arc::new(crate::helpers::config_from(&operator_env(app)));
    let until = Utc::now() + Duration::minutes(1);
    payorch::settle_once(cfg, until - Duration::hours(1), until)
        .await
        .unwrap()
}

fn of<'a>(
    report: &'a payorch::payments::SettlementReport,
    connector: &str,
) -> &'a payorch::payments::ConnectorSettlement {
    report
        .connectors
        .iter()
        .find(|c| c.connector == connector)
        .unwrap_or_else(|| panic!("{connector} not in {report:?}"))
}

/// Opens a transaction at the sandbox's Paystack dialect that payorch never
/// made, and pays it there.
async fn foreign_paid_transaction(app: &TestApp, reference: &str) {
    let opened: Value = app
        .http
        .post(app.url("/sandbox/transaction/initialize"))
        .bearer_auth(SANDBOX_SECRET_KEY)
        .json(
            &json!({"reference": reference, "amount": 7_000, "currency": "NGN",
            "email": "someone@example.com"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(opened["status"], true, "{opened}");
    settle(app, "paystack", reference, "success", false).await;
}

#[tokio::test]
async fn settlement_finds_a_paid_transaction_payorch_never_made() {
    let app = app().await;
    foreign_paid_transaction(&app, "foreign-1").await;

    let report = settle_last_hour(&app).await;
    let paystack = of(&report, "paystack");
    assert_eq!(paystack.listed, 1, "{report:?}");
    assert_eq!(paystack.reviews_opened, 1, "{report:?}");
    assert!(paystack.provider_calls >= 1);
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        reviews(&app).await,
        [("unknown_transaction".to_owned(), "open".to_owned(), None)]
    );

    let again = settle_last_hour(&app).await;
    assert_eq!(of(&again, "paystack").reviews_opened, 0, "{again:?}");
    assert_eq!(reviews(&app).await.len(), 1);
}

#[tokio::test]
async fn settlement_settles_open_payments_and_reviews_money_it_cannot_settle() {
    let app = app().await;
    // Paid, its webhook lost: the listing settles it.
    let open = app.new_payment(5_000).await;
    let open = open["reference"].as_str().unwrap().to_owned();
    settle(&app, "paystack", &open, "success", false).await;
    // Failed over to Flutterwave, then paid at Paystack, quietly.
    let moved = failed_over_payment(&app).await;
    settle(&app, "paystack", &moved, "success", false).await;
    // Failed by the provider's word, then paid after all, quietly.
    let late = app.new_payment(5_000).await;
    let late = late["reference"].as_str().unwrap().to_owned();
    post_paystack(&app, "charge.failed", 1, &late, 5_000).await;
    until_status(&app, &late, "failed").await;
    settle(&app, "paystack", &late, "success", false).await;
    // Paid and applied already: it matches.
    let done = app.new_payment(5_000).await;
    let done = done["reference"].as_str().unwrap().to_owned();
    settle(&app, "paystack", &done, "success", true).await;
    until_status(&app, &done, "succeeded").await;

    let report = settle_last_hour(&app).await;
    let paystack = of(&report, "paystack");
    assert_eq!(paystack.settled, 1, "{report:?}");
    assert_eq!(paystack.reviews_opened, 2, "{report:?}");
    assert_eq!(paystack.matched, 1, "{report:?}");
    assert_eq!(paystack.errors, 0, "{report:?}");
    assert_eq!(app.payment(&open).await["status"], "succeeded");
    assert_eq!(app.payment(&moved).await["status"], "pending");
    assert_eq!(app.payment(&late).await["status"], "failed");
    let mut kinds: Vec<String> = reviews(&app).await.into_iter().map(|r| r.0).collect();
    kinds.sort();
    assert_eq!(kinds, ["charged_at_other_connector", "paid_after_final"]);

    // The same window again: nothing new, nothing written twice.
    let again = settle_last_hour(&app).await;
    let paystack = of(&again, "paystack");
    assert_eq!(
        (paystack.settled, paystack.reviews_opened),
        (0, 0),
        "{again:?}"
    );
    assert_eq!(reviews(&app).await.len(), 2);
}

#[tokio::test]
async fn payorch_reconcile_settlement_prints_a_row_per_connector() {
    let app = app().await;
    foreign_paid_transaction(&app, "foreign-cli-1").await;
    let env = operator_env(&app);
    let output = tokio::task::spawn_blocking(move || {
        payorch_command()
            .args(["reconcile", "--settlement"])
            .envs(&env)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("connector\tlisted\tcalls\tmatched\tsettled\treviews\terrors"),
        "{printed}"
    );
    assert!(printed.contains("paystack\t1\t"), "{printed}");
    assert!(printed.contains("flutterwave\t0\t"), "{printed}");

    let env = operator_env(&app);
    let backwards = payorch_command()
        .args([
            "reconcile",
            "--settlement",
            "--since",
            "2026-12-02T00:00:00Z",
            "--until",
            "2026-12-01T00:00:00Z",
        ])
        .envs(&env)
        .output()
        .unwrap();
    assert_eq!(backwards.status.code(), Some(2), "{backwards:?}");
}
