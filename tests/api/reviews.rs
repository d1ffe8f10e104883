//! Reviews of refunds whose outcome payorch cannot know: a refund whose
//! answer was lost and that the provider's look-up misses is never failed
//! nor sent again; it waits for the provider, then goes to review, and an
//! operator's recorded decision settles it. Real PostgreSQL, the sandbox
//! on the app's listener, `payorch reconcile` and `payorch reviews` as
//! separate processes.

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, payorch_command},
    refunds::{app_with, refund, refunds, sandbox_refunds, succeeded_payment},
};

/// Runs `payorch ARGS` against the app's database and sandbox, off the
/// test's runtime (which serves the app and its sandbox meanwhile).
pub(crate) async fn payorch(
    app: &TestApp,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut command = payorch_command();
    command
        .args(args)
        .env("DATABASE_URL", &app.database_url)
        .env("PAYORCH_PROVIDER", "sandbox")
        .env("PAYSTACK_BASE_URL", app.url("/sandbox/"))
        .env(
            "PAYORCH_RECONCILE_AFTER_S",
            crate::helpers::RECONCILE_AFTER_S,
        )
        .env("USER", "alice");
    for (k, v) in env {
        command.env(k, v);
    }
    tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap()
}

pub(crate) async fn reconcile(app: &TestApp, review_after_s: &str) -> String {
    crate::helpers::backdate(&app.db).await;
    let output = payorch(
        app,
        &["reconcile"],
        &[("PAYORCH_REFUND_REVIEW_AFTER_S", review_after_s)],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn reviews(app: &TestApp, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["reviews", "list", "--json"];
    all.extend_from_slice(args);
    let output = payorch(app, &all, &[]).await;
    assert!(output.status.success(), "{output:?}");
    // The JSON is one line; logs may share stdout.
    let printed = String::from_utf8_lossy(&output.stdout);
    let line = printed
        .lines()
        .find(|line| line.starts_with('['))
        .unwrap_or_else(|| panic!("no JSON: {printed}"));
    let listed: Value = serde_json::from_str(line).unwrap();
    listed.as_array().unwrap().clone()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.db
        .query_one_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            sql,
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap()
}

/// A refund of the whole of a payment of 5000 whose answer is lost (the
/// sandbox records it, then answers 500), with the next `misses` look-ups
/// of it missing.
pub(crate) async fn lost_refund(app: &TestApp, misses: u32) -> String {
    let reference = succeeded_payment(app, 5_000).await;
    for fault in [
        json!({"operation": "refund", "mode": "error_after", "count": 1}),
        json!({"operation": "refund_lookup", "mode": "not_found", "count": misses}),
    ] {
        assert_eq!(app.sandbox("faults", fault).await.status(), 204);
    }
    let response = refund(app, &reference, json!({}), None).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "pending");
    reference
}

async fn ledger_refunds(app: &TestApp, reference: &str) -> Vec<Value> {
    let ledger: Value = app
        .http
        .get(app.url("/sandbox/_control/ledger"))
        .bearer_auth(payorch::config::SANDBOX_SECRET_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = ledger
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["reference"] == reference)
        .cloned()
        .unwrap_or_else(|| panic!("{reference} not in the ledger: {ledger}"));
    entry["refunds"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_lost_refund_the_provider_cannot_find_waits_goes_to_review_and_an_operator_settles_it() {
    let app = app_with(&[("PAYORCH_PROVIDER_TIMEOUT_MS", "1000")]).await;
    let reference = lost_refund(&app, 1_000).await;

    // Within PAYORCH_REFUND_REVIEW_AFTER_S: looked up, missed, left pending.
    let printed = reconcile(&app, "86400").await;
    assert!(!printed.contains("-> failed"), "{printed}");
    let stored = refunds(&app, &reference).await;
    assert_eq!(stored[0]["status"], "pending", "never failed on a miss");
    assert_eq!(stored[0]["review"], Value::Null);
    assert_eq!(app.payment(&reference).await["refunded_amount"], 5_000);
    let again = refund(&app, &reference, json!({}), None).await;
    assert_eq!(again.status(), 422, "its amount is still promised");
    assert_eq!(ledger_refunds(&app, &reference).await.len(), 1);
    assert_eq!(app.sandbox_stats().await["refund_calls"], 1, "never resent");

    // Past it: requires_review, one open review, one merchant event.
    let printed = reconcile(&app, "0").await;
    assert!(printed.contains("pending -> requires_review"), "{printed}");
    let stored = refunds(&app, &reference).await;
    assert_eq!(stored[0]["status"], "requires_review");
    assert_eq!(stored[0]["review"]["kind"], "refund_outcome_unknown");
    assert_eq!(app.payment(&reference).await["refunded_amount"], 5_000);
    assert_eq!(app.payment(&reference).await["review"], Value::Null);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) AS n FROM events WHERE type = 'refund.requires_review'"
        )
        .await,
        1
    );
    // Another sweep opens no second review and sends nothing.
    reconcile(&app, "0").await;
    let open = reviews(&app, &["--open"]).await;
    assert_eq!(open.len(), 1, "{open:?}");
    let review = &open[0];
    assert_eq!(review["id"], stored[0]["review"]["id"]);
    assert_eq!(review["refund_id"], stored[0]["id"]);
    assert_eq!(review["detail"]["dispatch"], "sending");
    assert_eq!(app.sandbox_stats().await["refund_calls"], 1, "never resent");
    assert_eq!(ledger_refunds(&app, &reference).await.len(), 1);

    // The operator's word settles it, recorded.
    let id = review["id"].as_str().unwrap();
    let output = payorch(
        &app,
        &[
            "reviews",
            "resolve",
            id,
            "--action",
            "mark_succeeded",
            "--note",
            "seen in the dashboard",
        ],
        &[],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let stored = refunds(&app, &reference).await;
    assert_eq!(stored[0]["status"], "succeeded");
    assert_eq!(stored[0]["review"], Value::Null);
    let payment = app.payment(&reference).await;
    assert_eq!(payment["status"], "refunded");
    let all = reviews(&app, &[]).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["status"], "resolved");
    assert_eq!(all[0]["resolution"], "mark_succeeded");
    assert_eq!(all[0]["resolved_by"], "cli:alice");
    assert_eq!(all[0]["note"], "seen in the dashboard");
    assert!(all[0]["resolved_at"].is_string());
    assert!(reviews(&app, &["--open"]).await.is_empty());

    // Never resolved twice.
    let twice = payorch(
        &app,
        &["reviews", "resolve", id, "--action", "dismiss"],
        &[],
    )
    .await;
    assert_eq!(twice.status.code(), Some(1), "{twice:?}");
    let said = String::from_utf8_lossy(&twice.stderr);
    assert!(said.contains("resolved already"), "{said}");
}

#[tokio::test]
async fn a_lost_refund_found_on_a_later_look_up_settles_as_the_provider_says_without_review() {
    let app = app_with(&[("PAYORCH_PROVIDER_TIMEOUT_MS", "1000")]).await;
    let reference = lost_refund(&app, 1).await;

    let printed = reconcile(&app, "86400").await;
    assert!(!printed.contains("->"), "a miss changes nothing: {printed}");
    assert_eq!(refunds(&app, &reference).await[0]["status"], "pending");

    // The provider settles it (no webhook): the next look-up finds it.
    for sandboxed in sandbox_refunds(&app, &reference).await {
        let settled = app
            .sandbox(
                &format!("refunds/{}/outcome", sandboxed["id"]),
                json!({"status": "processed", "notify": false}),
            )
            .await;
        assert_eq!(settled.status(), 200);
    }
    let printed = reconcile(&app, "86400").await;
    assert!(printed.contains("pending -> succeeded"), "{printed}");
    assert_eq!(refunds(&app, &reference).await[0]["status"], "succeeded");
    assert_eq!(app.payment(&reference).await["status"], "refunded");
    assert!(reviews(&app, &[]).await.is_empty());
    assert_eq!(app.sandbox_stats().await["refund_calls"], 1, "never resent");
}

#[tokio::test]
async fn a_refund_under_review_that_the_provider_answers_is_settled_and_its_review_closed_by_the_provider()
 {
    let app = app_with(&[("PAYORCH_PROVIDER_TIMEOUT_MS", "1000")]).await;
    let reference = lost_refund(&app, 1).await;

    let printed = reconcile(&app, "0").await;
    assert!(printed.contains("pending -> requires_review"), "{printed}");
    for sandboxed in sandbox_refunds(&app, &reference).await {
        let settled = app
            .sandbox(
                &format!("refunds/{}/outcome", sandboxed["id"]),
                json!({"status": "failed", "notify": false}),
            )
            .await;
        assert_eq!(settled.status(), 200);
    }
    let printed = reconcile(&app, "0").await;
    assert!(printed.contains("requires_review -> failed"), "{printed}");
    assert_eq!(app.payment(&reference).await["refunded_amount"], 0);
    let all = reviews(&app, &[]).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["status"], "resolved");
    assert_eq!(all[0]["resolution"], "provider");
    assert_eq!(all[0]["resolved_by"], "provider");
}

/// A lost refund the provider then settles with its webhook: matched by
/// payorch's own id (the merchant note), settled, and its provider id
/// recorded at last.
#[tokio::test]
async fn a_lost_refund_settled_by_the_providers_webhook_gets_its_provider_id() {
    let app = app_with(&[("PAYORCH_PROVIDER_TIMEOUT_MS", "1000")]).await;
    let reference = lost_refund(&app, 0).await;
    let stored: Vec<(Option<String>, String)> = app
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT provider_refund_id, dispatch FROM refunds",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get("", "provider_refund_id").unwrap(),
                r.try_get("", "dispatch").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        stored,
        [(None, "sending".to_owned())],
        "its answer was lost"
    );
    let sandboxed = sandbox_refunds(&app, &reference).await;
    let settled = app
        .sandbox(
            &format!("refunds/{}/outcome", sandboxed[0]["id"]),
            json!({"status": "processed"}),
        )
        .await;
    assert_eq!(settled.status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while refunds(&app, &reference).await[0]["status"] != "succeeded" {
        assert!(std::time::Instant::now() < deadline, "never settled");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let id = count(
        &app,
        &format!(
            "SELECT COUNT(*) AS n FROM refunds WHERE provider_refund_id = '{}' AND dispatch = 'sent'",
            sandboxed[0]["id"]
        ),
    )
    .await;
    assert_eq!(id, 1);
}

/// Two sweepers opening the same review: the second finds one open and
/// writes nothing — on both backends; once resolved, a new one may open.
#[tokio::test]
async fn at_most_one_review_of_a_kind_is_open_per_refund_on_both_backends() {
    use payorch::{
        domain::{ReviewAction, ReviewKind},
        store::reviews::{self, NewReview, Resolution},
    };
    for db in [
        crate::helpers::TestDb::postgres().await,
        crate::helpers::TestDb::sqlite(),
    ] {
        let conn = db.connect().await;
        payorch::store::migrate(&conn, &db.url.parse().unwrap())
            .await
            .unwrap();
        let (payment_id, refund_id) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let new = || NewReview {
            kind: ReviewKind::RefundOutcomeUnknown,
            payment_id,
            refund_id: Some(refund_id),
            detail: json!({}),
            connector: None,
            reference: None,
        };
        let first = reviews::open(&conn, new()).await.unwrap().unwrap();
        assert!(
            reviews::open(&conn, new()).await.unwrap().is_none(),
            "{}",
            db.url
        );
        let by_provider = Resolution {
            by: "provider".into(),
            action: ReviewAction::Provider,
            note: None,
        };
        assert!(
            reviews::resolve(&conn, first.id, &by_provider)
                .await
                .unwrap()
        );
        assert!(
            !reviews::resolve(&conn, first.id, &by_provider)
                .await
                .unwrap()
        );
        assert!(reviews::open(&conn, new()).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn an_operator_who_marks_a_refund_under_review_failed_releases_its_amount() {
    let app = app_with(&[("PAYORCH_PROVIDER_TIMEOUT_MS", "1000")]).await;
    let reference = lost_refund(&app, 1_000).await;
    let printed = reconcile(&app, "0").await;
    assert!(printed.contains("pending -> requires_review"), "{printed}");
    let open = reviews(&app, &["--open"]).await;
    let id = open[0]["id"].as_str().unwrap();
    let output = payorch(
        &app,
        &["reviews", "resolve", id, "--action", "mark_failed"],
        &[],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let stored = refunds(&app, &reference).await;
    assert_eq!(stored[0]["status"], "failed");
    assert_eq!(stored[0]["failure_reason"], "operator_marked_failed");
    assert_eq!(app.payment(&reference).await["refunded_amount"], 0);
    let all = reviews(&app, &[]).await;
    assert_eq!(all[0]["resolution"], "mark_failed");
    assert_eq!(all[0]["resolved_by"], "cli:alice");
    assert_eq!(all[0]["note"], Value::Null);
}
