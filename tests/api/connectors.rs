//! Two connectors behind the routing rules: weighted split, pinning,
//! failover behind circuit breakers, Flutterwave's webhooks (hash, then a
//! verify of the attempt they name before anything is applied; a declined
//! attempt is not final), exact amounts, and `Server-Timing`.
//! Both dialects are the built-in sandbox's, mounted on the app.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use sea_orm::{ConnectionTrait, Statement};

use crate::helpers::{TestApp, TestDb, assert_problem, test_env};
use payorch::{config::SANDBOX_SECRET_KEY, provider::paystack};

/// An app with both connectors enabled and `extra` on top.
async fn app_with(extra: &[(&str, &str)]) -> TestApp {
    let db = TestDb::postgres().await;
    let mut env: HashMap<String, String> = test_env(&db);
    env.insert("PAYORCH_PROVIDERS".into(), "paystack,flutterwave".into());
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    TestApp::spawn_with(Arc::new(db), env).await
}

fn ngn(amount: i64) -> Value {
    json!({"amount": amount, "currency": "NGN", "email": "ada@example.com"})
}

/// Injects `count` faults of `mode` into `provider`'s initialize.
async fn fault(app: &TestApp, provider: &str, mode: &str, count: u32) {
    let response = app
        .sandbox(
            "faults",
            json!({"provider": provider, "operation": "initialize", "mode": mode, "count": count}),
        )
        .await;
    assert_eq!(response.status(), 204, "fault {provider}");
}

async fn readyz_connector(app: &TestApp, name: &str) -> String {
    let body: Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["connectors"][name]
        .as_str()
        .unwrap_or("missing")
        .to_owned()
}

async fn breaker_gauge(app: &TestApp, name: &str) -> Option<f64> {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("payorch_connector_breaker_state{{connector=\"{name}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|value| value.trim().parse().unwrap())
}

/// Polls the payment until `done` holds (webhooks are applied by the
/// in-process worker), for at most 20 s.
async fn until(app: &TestApp, reference: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let payment = app.payment(reference).await;
        if done(&payment) {
            return payment;
        }
        assert!(Instant::now() < deadline, "never happened: {payment}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn webhook_outcome(app: &TestApp, reference: &str) -> Option<String> {
    let sql = format!(
        "SELECT outcome FROM webhook_events WHERE reference = '{reference}' \
         ORDER BY received_at DESC LIMIT 1"
    );
    let row = app
        .db
        .query_one_raw(Statement::from_string(app.db.get_database_backend(), sql))
        .await
        .unwrap()?;
    row.try_get_by_index::<Option<String>>(0).unwrap()
}

async fn until_webhook_recorded(app: &TestApp, reference: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(outcome) = webhook_outcome(app, reference).await {
            return outcome;
        }
        assert!(
            Instant::now() < deadline,
            "webhook for {reference} never recorded"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_initializes_split_by_the_weights() {
    let app = app_with(&[("PAYORCH_ROUTING", "NGN=paystack:70,flutterwave:30")]).await;
    let (http, base) = app.clone_http();
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = 50;
    for _ in 0..(1_000 / per_task) {
        let (http, base, key) = (http.clone(), base.clone(), app.api_key.clone());
        tasks.spawn(async move {
            let mut chosen = Vec::new();
            for _ in 0..per_task {
                let response = http
                    .post(format!("{base}/v1/payments/initialize"))
                    .bearer_auth(&key)
                    .json(&ngn(5_000))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
                let body: Value = response.json().await.unwrap();
                chosen.push(body["provider"].as_str().unwrap().to_owned());
            }
            chosen
        });
    }
    let chosen: Vec<String> = tasks.join_all().await.into_iter().flatten().collect();
    let paystack = chosen.iter().filter(|p| *p == "paystack").count();
    let flutterwave = chosen.iter().filter(|p| *p == "flutterwave").count();
    println!("split: paystack {paystack}, flutterwave {flutterwave}");
    assert_eq!(paystack + flutterwave, 1_000);
    assert!((650..=750).contains(&paystack), "paystack {paystack}");
    assert_eq!(
        app.sandbox_stats_of("paystack").await["transactions"],
        paystack as u64
    );
    assert_eq!(
        app.sandbox_stats_of("flutterwave").await["transactions"],
        flutterwave as u64
    );
}

#[tokio::test]
async fn a_failing_connector_fails_over_opens_its_breaker_and_recovers_after_a_probe() {
    // Every app in this process moves the one `paystack` breaker gauge.
    if !crate::helpers::in_own_process(
        "connectors::a_failing_connector_fails_over_opens_its_breaker_and_recovers_after_a_probe",
    ) {
        return;
    }
    let app = app_with(&[
        ("PAYORCH_ROUTING", "NGN=paystack,flutterwave"),
        ("PAYORCH_BREAKER_FAILURES", "3"),
        ("PAYORCH_BREAKER_OPEN_MS", "400"),
    ])
    .await;
    assert_eq!(readyz_connector(&app, "paystack").await, "closed");
    assert_eq!(breaker_gauge(&app, "paystack").await, Some(0.0));
    fault(&app, "paystack", "error", 1_000).await;

    let mut references = Vec::new();
    for _ in 0..10 {
        let response = app.initialize(&ngn(5_000), None).await;
        assert_eq!(response.status(), 201, "every initialize succeeds");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["provider"], "flutterwave");
        assert!(
            body["authorization_url"]
                .as_str()
                .unwrap()
                .contains("/flutterwave/"),
            "the checkout is Flutterwave's: {body}"
        );
        references.push(body["reference"].as_str().unwrap().to_owned());
    }
    // Three 500s opened the breaker; the other seven never asked Paystack.
    assert_eq!(
        app.sandbox_stats_of("paystack").await["initialize_calls"],
        3
    );
    assert_eq!(readyz_connector(&app, "paystack").await, "open");
    assert_eq!(breaker_gauge(&app, "paystack").await, Some(2.0));
    // The audit trail names each attempt.
    let first = app.payment(&references[0]).await;
    let causes: Vec<&str> = first["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["cause"].as_str().unwrap())
        .collect();
    assert_eq!(
        causes[..2],
        [
            "initialize:created",
            "initialize:failover:paystack:unavailable"
        ],
        "{causes:?}"
    );
    // Once it opened, payments were opened at Flutterwave straight away:
    // no attempt at Paystack, so no failover in their trail.
    let last = app.payment(&references[9]).await;
    assert!(
        !last["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["cause"].as_str().unwrap().contains("failover")),
        "{last}"
    );

    // The fault clears; after the open interval a probe goes to Paystack,
    // succeeds and closes the breaker: traffic returns to the rule.
    fault(&app, "paystack", "error", 0).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body: Value = app
            .initialize(&ngn(5_000), None)
            .await
            .json()
            .await
            .unwrap();
        if body["provider"] == "paystack" {
            break;
        }
        assert!(Instant::now() < deadline, "Paystack never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(readyz_connector(&app, "paystack").await, "closed");
    assert_eq!(breaker_gauge(&app, "paystack").await, Some(0.0));
    for _ in 0..5 {
        let body: Value = app
            .initialize(&ngn(5_000), None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["provider"], "paystack");
    }
}

#[tokio::test]
async fn a_hanging_connector_times_out_into_the_next_one() {
    let app = app_with(&[
        ("PAYORCH_ROUTING", "NGN=paystack,flutterwave"),
        ("PAYORCH_PROVIDER_TIMEOUT_MS", "300"),
    ])
    .await;
    fault(&app, "paystack", "hang", 1).await;
    let response = app.initialize(&ngn(5_000), None).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["provider"], "flutterwave");
    let payment = app.payment(body["reference"].as_str().unwrap()).await;
    assert!(
        payment["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["cause"] == "initialize:failover:paystack:timeout"),
        "{payment}"
    );
}

#[tokio::test]
async fn a_replay_after_a_failover_returns_the_second_checkout() {
    let app = app_with(&[("PAYORCH_ROUTING", "NGN=paystack,flutterwave")]).await;
    fault(&app, "paystack", "error", 1).await;
    let key = uuid::Uuid::new_v4().to_string();
    let first = app.initialize(&ngn(7_000), Some(&key)).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["provider"], "flutterwave");
    let replay: Value = app
        .initialize(&ngn(7_000), Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(replay, first, "byte for byte the first answer");
    assert_eq!(app.sandbox_stats_of("flutterwave").await["transactions"], 1);
    assert_eq!(app.sandbox_stats_of("paystack").await["transactions"], 0);
}

#[tokio::test]
async fn a_refusal_is_final_and_does_not_fail_over() {
    let app = app_with(&[("PAYORCH_ROUTING", "NGN=paystack,flutterwave")]).await;
    fault(&app, "paystack", "duplicate", 1).await;
    let response = app.initialize(&ngn(5_000), None).await;
    assert_problem(response, 402, "provider_rejected").await;
    assert_eq!(
        app.sandbox_stats_of("flutterwave").await["initialize_calls"],
        0
    );
}

#[tokio::test]
async fn every_connector_down_is_a_gateway_error_with_nothing_shown() {
    let app = app_with(&[("PAYORCH_ROUTING", "NGN=paystack,flutterwave")]).await;
    fault(&app, "paystack", "error", 1).await;
    fault(&app, "flutterwave", "error", 1).await;
    let response = app.initialize(&ngn(5_000), None).await;
    assert_problem(response, 502, "provider_unavailable").await;
    assert_eq!(app.sandbox_stats_of("paystack").await["transactions"], 0);
    assert_eq!(app.sandbox_stats_of("flutterwave").await["transactions"], 0);
}

#[tokio::test]
async fn a_pinned_connector_is_used_alone_and_must_be_enabled() {
    let app = app_with(&[("PAYORCH_ROUTING", "NGN=paystack")]).await;
    let mut body = ngn(5_000);
    body["provider"] = json!("flutterwave");
    let response = app.initialize(&body, None).await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.json::<Value>().await.unwrap()["provider"],
        "flutterwave"
    );

    // Pinned, it is not failed over from.
    fault(&app, "flutterwave", "error", 1).await;
    assert_problem(
        app.initialize(&body, None).await,
        502,
        "provider_unavailable",
    )
    .await;
    assert_eq!(
        app.sandbox_stats_of("paystack").await["initialize_calls"],
        0
    );

    let before = app.payment_count().await;
    body["provider"] = json!("stripe");
    let problem = assert_problem(app.initialize(&body, None).await, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "provider", "{problem}");
    assert_eq!(app.payment_count().await, before, "nothing stored");

    let only_paystack = TestApp::spawn().await;
    body["provider"] = json!("flutterwave");
    let problem = assert_problem(
        only_paystack.initialize(&body, None).await,
        422,
        "validation_failed",
    )
    .await;
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not enabled"),
        "{problem}"
    );
    assert_eq!(only_paystack.payment_count().await, 0);
}

async fn flutterwave_payment(app: &TestApp, amount: i64, currency: &str) -> Value {
    let response = app
        .initialize(
            &json!({"amount": amount, "currency": currency, "email": "ada@example.com", "provider": "flutterwave"}),
            None,
        )
        .await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn post_flutterwave_webhook(app: &TestApp, hash: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/v1/webhooks/flutterwave"))
        .header("verif-hash", hash)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn charge_completed(reference: &str, amount: &str, status: &str) -> Value {
    charge_completed_of(rand::random::<u32>().into(), reference, amount, status)
}

/// A `charge.completed` naming the transaction (attempt) `id`.
fn charge_completed_of(id: i64, reference: &str, amount: &str, status: &str) -> Value {
    let body = format!(
        r#"{{"event":"charge.completed","data":{{"id":{id},"tx_ref":"{reference}","flw_ref":"FLW-1","amount":{amount},"currency":"NGN","status":"{status}"}}}}"#,
    );
    serde_json::from_str(&body).unwrap()
}

/// Forces a Flutterwave checkout's outcome through the sandbox's control
/// API; returns the attempt (or transaction) as it reports it.
async fn force_flutterwave(app: &TestApp, reference: &str, body: Value) -> Value {
    let response = app
        .http
        .post(app.url(&format!(
            "/sandbox/flutterwave/_control/transactions/{reference}/outcome"
        )))
        .bearer_auth(SANDBOX_SECRET_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Every webhook outcome recorded for `reference`, oldest first.
async fn webhook_outcomes(app: &TestApp, reference: &str) -> Vec<String> {
    let sql = format!(
        "SELECT outcome FROM webhook_events WHERE reference = '{reference}' \
         ORDER BY received_at, id"
    );
    app.db
        .query_all_raw(Statement::from_string(app.db.get_database_backend(), sql))
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            row.try_get_by_index::<Option<String>>(0)
                .unwrap()
                .unwrap_or_default()
        })
        .collect()
}

async fn until_outcomes(app: &TestApp, reference: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let outcomes = webhook_outcomes(app, reference).await;
        if outcomes.len() >= count {
            return outcomes;
        }
        assert!(
            Instant::now() < deadline,
            "only {outcomes:?} for {reference}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The merchant event types of the payment `reference`, newest first.
pub(crate) async fn merchant_events(app: &TestApp, reference: &str) -> Vec<String> {
    let page = app
        .get(&format!("/v1/events?payment={reference}"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_flutterwave_checkout_succeeds_end_to_end_with_exact_amounts() {
    let app = app_with(&[]).await;
    for (amount, currency) in [(150_075, "NGN"), (1_500, "XOF")] {
        let payment = flutterwave_payment(&app, amount, currency).await;
        assert_eq!(app.checkout(&payment, "success").await.status(), 200);
        let reference = payment["reference"].as_str().unwrap();
        let done = until(&app, reference, |p| p["status"] != "pending").await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["amount"], amount);
        assert_eq!(done["provider"], "flutterwave");
    }
}

#[tokio::test]
async fn a_flutterwave_webhook_needs_the_hash_and_the_verify_call() {
    let app = app_with(&[("PAYORCH_WEBHOOK_RETRY_DELAYS_MS", "50,50,50,50")]).await;
    let payment = flutterwave_payment(&app, 150_075, "NGN").await;
    let reference = payment["reference"].as_str().unwrap();

    // A wrong hash, or none: 401, nothing queued.
    let forged = charge_completed(reference, "1500.75", "successful");
    let response = post_flutterwave_webhook(&app, "not-the-hash", &forged).await;
    assert_problem(response, 401, "invalid_signature").await;
    let unsigned = app
        .http
        .post(app.url("/v1/webhooks/flutterwave"))
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);

    // The right hash, but Flutterwave's API does not report the
    // transaction paid: tried again a few times, then recorded, not applied.
    let response = post_flutterwave_webhook(&app, SANDBOX_SECRET_KEY, &forged).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        until_webhook_recorded(&app, reference).await,
        "ignored:unconfirmed"
    );
    assert_eq!(app.payment(reference).await["status"], "pending");

    // Paid for one kobo less than asked, quietly (no webhook from the
    // sandbox): the next webhook, naming that attempt, claims the full
    // amount in its own figures, but the verify call's figures are what
    // count, and the mismatch is flagged, never credited.
    let forced = force_flutterwave(
        &app,
        reference,
        json!({"status": "success", "amount": 150_074, "notify": false}),
    )
    .await;
    let attempt = forced["id"].as_i64().unwrap();
    let claimed = charge_completed_of(attempt, reference, "1500.75", "successful");
    let response = post_flutterwave_webhook(&app, SANDBOX_SECRET_KEY, &claimed).await;
    assert_eq!(response.status(), 200);
    let flagged = until(&app, reference, |p| !p["failure_reason"].is_null()).await;
    assert_eq!(flagged["status"], "pending", "{flagged}");
    assert_eq!(flagged["failure_reason"], "amount_mismatch");
}

#[tokio::test]
async fn a_flutterwave_checkout_declined_then_paid_succeeds_and_never_tells_the_merchant_failed() {
    let app = app_with(&[]).await;
    let payment = flutterwave_payment(&app, 150_075, "NGN").await;
    let reference = payment["reference"].as_str().unwrap();

    // The customer is declined: one attempt, announced and confirmed by its
    // id, which is not final while the checkout can still be paid.
    assert_eq!(app.checkout(&payment, "failed").await.status(), 200);
    assert_eq!(
        until_outcomes(&app, reference, 1).await,
        ["ignored:attempt_declined"]
    );
    assert_eq!(app.payment(reference).await["status"], "pending");
    let page = app
        .http
        .get(payment["authorization_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"value="success""#), "still payable: {page}");

    // The customer pays on the same checkout.
    assert_eq!(app.checkout(&payment, "success").await.status(), 200);
    let done = until(&app, reference, |p| p["status"] != "pending").await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        until_outcomes(&app, reference, 2).await,
        ["ignored:attempt_declined", "applied:succeeded"]
    );
    let told = merchant_events(&app, reference).await;
    assert!(told.contains(&"payment.succeeded".to_owned()), "{told:?}");
    assert!(!told.contains(&"payment.failed".to_owned()), "{told:?}");
    let transitions = done["transitions"].as_array().unwrap();
    assert!(
        transitions.iter().all(|t| t["to_status"] != "failed"),
        "{done}"
    );
    assert!(
        transitions.iter().any(|t| t["cause"]
            == "webhook:attempt_declined:ignored_attempt_declined"
            && t["to_status"] == "pending"),
        "the declined attempt is in the audit trail: {done}"
    );

    // The provider's truth: two attempts under one tx_ref.
    let entry = app.ledger_entry("flutterwave", reference).await;
    let attempts = entry["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{entry}");
    assert_eq!(attempts[0]["status"], "failed");
    assert_eq!(attempts[1]["status"], "successful");
    assert_ne!(attempts[0]["id"], attempts[1]["id"]);
    assert_eq!(entry["transaction_id"], attempts[1]["id"]);
    assert_eq!(entry["status"], "successful");
}

#[tokio::test]
async fn a_flutterwave_webhook_naming_another_references_attempt_is_not_applied() {
    let app = app_with(&[]).await;
    let ours = flutterwave_payment(&app, 5_000, "NGN").await;
    let ours = ours["reference"].as_str().unwrap();
    let theirs = flutterwave_payment(&app, 5_000, "NGN").await;
    let theirs = theirs["reference"].as_str().unwrap();
    // Their checkout is paid, quietly; a webhook for ours names their
    // attempt, with our tx_ref and the right hash.
    let paid = force_flutterwave(&app, theirs, json!({"status": "success", "notify": false})).await;
    let their_attempt = paid["id"].as_i64().unwrap();
    let body = charge_completed_of(their_attempt, ours, "50", "successful");
    let response = post_flutterwave_webhook(&app, SANDBOX_SECRET_KEY, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        until_webhook_recorded(&app, ours).await,
        "ignored:other_transaction"
    );
    assert_eq!(app.payment(ours).await["status"], "pending");
    assert_eq!(
        app.payment(theirs).await["status"],
        "pending",
        "not theirs either"
    );
}

#[tokio::test]
async fn a_declined_flutterwave_payment_stays_pending_then_the_sweep_abandons_it() {
    let app = app_with(&[]).await;
    let payment = flutterwave_payment(&app, 5_000, "NGN").await;
    let reference = payment["reference"].as_str().unwrap();
    // Declined by the control API, one attempt only (the checkout stays
    // payable), announced by webhook.
    let declined = force_flutterwave(
        &app,
        reference,
        json!({"status": "failed", "attempt_only": true}),
    )
    .await;
    assert_eq!(declined["status"], "failed");
    assert_eq!(
        until_webhook_recorded(&app, reference).await,
        "ignored:attempt_declined"
    );
    // A verify reads the declined latest attempt as not final either.
    let verified = app
        .post(&format!("/v1/payments/{reference}/verify"))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    assert_eq!(verified.json::<Value>().await.unwrap()["status"], "pending");

    // Nobody pays: past the abandon threshold the sweep abandons it.
    crate::helpers::backdate(&app.db).await;
    let output = tokio::task::spawn_blocking({
        let (database_url, base) = (app.database_url.clone(), app.url("/sandbox/"));
        move || {
            crate::helpers::payorch_command()
                .arg("reconcile")
                .env("DATABASE_URL", database_url)
                .env("PAYORCH_PROVIDER", "sandbox")
                .env("PAYORCH_PROVIDERS", "paystack,flutterwave")
                .env("PAYSTACK_BASE_URL", &base)
                .env("FLUTTERWAVE_BASE_URL", format!("{base}flutterwave/"))
                .env(
                    "PAYORCH_RECONCILE_AFTER_S",
                    crate::helpers::RECONCILE_AFTER_S,
                )
                .env("PAYORCH_ABANDON_AFTER_S", "0")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let done = app.payment(reference).await;
    assert_eq!(done["status"], "abandoned", "{output:?} {done}");
    let told = merchant_events(&app, reference).await;
    assert!(!told.contains(&"payment.failed".to_owned()), "{told:?}");
}

#[tokio::test]
async fn a_webhook_from_the_connector_that_does_not_hold_the_payment_is_ignored() {
    let app = app_with(&[]).await;
    let payment = flutterwave_payment(&app, 5_000, "NGN").await;
    let reference = payment["reference"].as_str().unwrap();
    let body = json!({"event": "charge.success", "data": {
        "id": 77, "reference": reference, "amount": 5_000, "currency": "NGN", "status": "success"
    }})
    .to_string();
    let response = app
        .http
        .post(app.url("/v1/webhooks/paystack"))
        .header(
            paystack::SIGNATURE_HEADER,
            paystack::sign_webhook(SANDBOX_SECRET_KEY.as_bytes(), body.as_bytes()),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        until_webhook_recorded(&app, reference).await,
        "ignored:other_connector"
    );
    assert_eq!(app.payment(reference).await["status"], "pending");
}

#[tokio::test]
async fn a_disabled_connector_has_no_webhook_endpoint() {
    let app = TestApp::spawn().await;
    let response = post_flutterwave_webhook(
        &app,
        SANDBOX_SECRET_KEY,
        &charge_completed("r-1", "1", "successful"),
    )
    .await;
    assert_eq!(response.status(), 404);
}

/// `app;dur=X, provider;dur=Y, db;dur=Z` in milliseconds.
fn server_timing(response: &reqwest::Response) -> (f64, f64, f64) {
    let header = response
        .headers()
        .get("server-timing")
        .expect("every response has Server-Timing")
        .to_str()
        .unwrap()
        .to_owned();
    let part = |name: &str| -> f64 {
        header
            .split(',')
            .map(str::trim)
            .find_map(|p| p.strip_prefix(&format!("{name};dur=")))
            .unwrap_or_else(|| panic!("{name} missing in {header}"))
            .parse()
            .unwrap()
    };
    (part("app"), part("provider"), part("db"))
}

#[tokio::test]
async fn responses_say_how_long_payorch_and_the_provider_took() {
    let app = app_with(&[
        ("PAYORCH_ROUTING", "NGN=paystack,flutterwave"),
        ("PAYORCH_PROVIDER_TIMEOUT_MS", "300"),
    ])
    .await;
    let response = app.initialize(&ngn(5_000), None).await;
    let (app_ms, provider_ms, db_ms) = server_timing(&response);
    assert!(provider_ms > 0.0 && app_ms > 0.0, "{app_ms} {provider_ms}");
    assert!(db_ms > 0.0, "initialize writes the payment: {db_ms}");
    let reference = response.json::<Value>().await.unwrap()["reference"]
        .as_str()
        .unwrap()
        .to_owned();

    let read = app
        .get(&format!("/v1/payments/{reference}"))
        .send()
        .await
        .unwrap();
    let (_, provider_ms, db_ms) = server_timing(&read);
    assert_eq!(provider_ms, 0.0, "a read asks no provider");
    assert!(db_ms > 0.0, "a read reads the database: {db_ms}");

    // A hang until the timeout is the provider's time, not payorch's.
    fault(&app, "paystack", "hang", 1).await;
    let response = app.initialize(&ngn(5_000), None).await;
    assert_eq!(response.status(), 201);
    let (app_ms, provider_ms, _) = server_timing(&response);
    assert!(provider_ms >= 300.0, "{provider_ms}");
    assert!(app_ms < provider_ms, "{app_ms} vs {provider_ms}");

    let unauthenticated = app.http.get(app.url("/healthz")).send().await.unwrap();
    let (_, provider_ms, db_ms) = server_timing(&unauthenticated);
    assert_eq!(
        (provider_ms, db_ms),
        (0.0, 0.0),
        "a health check asks neither"
    );
}

/// Posts a Paystack `charge.success` for `reference`, signed.
async fn post_paystack_success(app: &TestApp, id: i64, reference: &str, amount: i64) {
    let body = json!({
        "event": "charge.success",
        "data": {"id": id, "reference": reference, "amount": amount, "currency": "NGN",
                 "status": "success", "paid_at": null, "gateway_response": "Approved"}
    })
    .to_string();
    let response = app
        .http
        .post(app.url("/v1/webhooks/paystack"))
        .header("content-type", "application/json")
        .header(
            "x-paystack-signature",
            paystack::sign_webhook(SANDBOX_SECRET_KEY.as_bytes(), body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_flutterwave_confirmation_holds_up_neither_its_batch_nor_the_next() {
    const TIMEOUT: Duration = Duration::from_secs(10);
    let timeout_ms = TIMEOUT.as_millis().to_string();
    let mut pipeline = crate::webhooks::Pipeline::start(
        0,
        &[
            ("PAYORCH_PROVIDERS", "paystack,flutterwave"),
            ("PAYORCH_PROVIDER_TIMEOUT_MS", &timeout_ms),
            (
                "PAYORCH_RECONCILE_AFTER_S",
                crate::helpers::RECONCILE_AFTER_S,
            ),
        ],
    )
    .await;
    let app = &pipeline.app;
    let paystack_payment = |amount: i64| async move {
        let response = app
            .initialize(
                &json!({"amount": amount, "currency": "NGN", "email": "ada@example.com", "provider": "paystack"}),
                None,
            )
            .await;
        assert_eq!(response.status(), 201);
        response.json::<Value>().await.unwrap()["reference"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let first = paystack_payment(5_000).await;
    let second = paystack_payment(6_000).await;
    let payment = flutterwave_payment(app, 150_075, "NGN").await;
    let flutterwave = payment["reference"].as_str().unwrap().to_owned();
    let forced = force_flutterwave(
        app,
        &flutterwave,
        json!({"status": "success", "notify": false}),
    )
    .await;
    let attempt = forced["id"].as_i64().unwrap();
    // Flutterwave's figures are confirmed by a verify call: the first one
    // hangs past payorch's provider timeout.
    let response = app
        .sandbox(
            "faults",
            json!({"provider": "flutterwave", "operation": "verify", "mode": "hang", "count": 1}),
        )
        .await;
    assert_eq!(response.status(), 204);

    let verified = app.sandbox_stats_of("flutterwave").await["verify_calls"].clone();
    // Both queued before the worker starts: it takes them as one batch.
    let confirmed = charge_completed_of(attempt, &flutterwave, "1500.75", "successful");
    assert_eq!(
        post_flutterwave_webhook(app, SANDBOX_SECRET_KEY, &confirmed)
            .await
            .status(),
        200
    );
    post_paystack_success(app, 1, &first, 5_000).await;
    // The worker asks the sandbox mounted on the API.
    let flutterwave_api = format!("http://{}/sandbox/flutterwave/", app.addr);
    pipeline
        .env
        .insert("FLUTTERWAVE_BASE_URL".into(), flutterwave_api);
    pipeline.add_worker();
    let app = &pipeline.app;
    let asked = Instant::now() + Duration::from_secs(20);
    while app.sandbox_stats_of("flutterwave").await["verify_calls"] == verified {
        assert!(Instant::now() < asked, "the confirmation was never asked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hanging = Instant::now();
    let applied = until(app, &first, |p| p["status"] != "pending").await;
    assert_eq!(applied["status"], "succeeded");

    // The next webhook is taken and applied while the confirmation still
    // waits for its answer (a batch acknowledged whole would wait for it).
    post_paystack_success(app, 2, &second, 6_000).await;
    let applied = until(app, &second, |p| p["status"] != "pending").await;
    assert_eq!(applied["status"], "succeeded");
    assert!(
        hanging.elapsed() < TIMEOUT / 2,
        "the next batch waited {:?} for the confirmation",
        hanging.elapsed()
    );
    assert_eq!(app.payment(&flutterwave).await["status"], "pending");

    // The confirmation times out, is retried on its own, and settles.
    let paid = until(app, &flutterwave, |p| p["status"] != "pending").await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    assert_eq!(
        webhook_outcomes(app, &flutterwave)
            .await
            .iter()
            .filter(|outcome| outcome.starts_with("applied"))
            .count(),
        1
    );
}
