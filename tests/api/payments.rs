//! Initialize, checkout, verify and read payments end to end, with the
//! sandbox provider mounted on the app.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::{SendJson, TestApp, TestDb, assert_problem, test_env};

fn body(amount: i64) -> Value {
    json!({"amount": amount, "currency": "NGN", "email": "ada@example.com"})
}

async fn full_flow(app: &TestApp) {
    let payment = app.new_payment(150_075).await;
    assert_eq!(payment["status"], "pending");
    let reference = payment["reference"].as_str().unwrap();
    let checkout = payment["authorization_url"].as_str().unwrap();

    // The page a person sees, with both buttons.
    let page = app
        .http
        .get(checkout)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("NGN 1,500.75"), "{page}");
    assert!(page.contains(r#"value="success""#) && page.contains(r#"value="failed""#));
    // The person clicks Pay: the form posts outcome=success.
    let paid = app
        .http
        .post(checkout)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("outcome=success")
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);

    let verified = app
        .post(&format!("/v1/payments/{reference}/verify"))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    let verified: Value = verified.json().await.unwrap();
    assert_eq!(verified["status"], "succeeded");
    assert!(verified["paid_at"].is_string());

    let read = app.payment(reference).await;
    // The checkout's webhook and the verify race; whichever comes first
    // moves the payment, the other is recorded as a duplicate.
    let moves: Vec<(String, String)> = read["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["from_status"] != t["to_status"])
        .map(|t| {
            (
                t["to_status"].as_str().unwrap().to_owned(),
                t["cause"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(moves.len(), 3, "{moves:?}");
    assert_eq!(moves[0], ("created".into(), "initialize:created".into()));
    assert_eq!(
        moves[1],
        ("pending".into(), "initialize:provider_accepted".into())
    );
    assert_eq!(moves[2].0, "succeeded");
    assert!(
        ["verify:charge_succeeded", "webhook:charge_succeeded"].contains(&moves[2].1.as_str()),
        "{moves:?}"
    );
}

#[tokio::test]
async fn full_flow_initialize_checkout_pay_verify_on_postgres() {
    full_flow(&TestApp::spawn().await).await;
}

#[tokio::test]
async fn full_flow_on_sqlite() {
    let db = Arc::new(TestDb::sqlite());
    let env = test_env(&db);
    full_flow(&TestApp::spawn_with(db, env).await).await;
}

#[tokio::test]
async fn declined_checkout_verifies_as_failed() {
    let app = TestApp::spawn().await;
    let payment = app.new_payment(5_000).await;
    app.http
        .post(payment["authorization_url"].as_str().unwrap())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("outcome=failed")
        .send()
        .await
        .unwrap();
    let verified: Value = app
        .post(&format!(
            "/v1/payments/{}/verify",
            payment["reference"].as_str().unwrap()
        ))
        .json_body()
        .await;
    assert_eq!(verified["status"], "failed");
    assert!(verified["paid_at"].is_null());
}

#[tokio::test]
async fn a_burst_of_verifies_moves_the_payment_once_and_asks_the_provider_once() {
    let app = TestApp::spawn().await;
    let payment = app.new_payment(20_000).await;
    let reference = payment["reference"].as_str().unwrap().to_owned();
    app.sandbox(
        &format!("transactions/{reference}/outcome"),
        json!({"status": "success", "notify": false}),
    )
    .await;

    let calls = (0..50).map(|_| {
        let request = app.post(&format!("/v1/payments/{reference}/verify"));
        async move { request.send().await.unwrap() }
    });
    for response in futures_util::future::join_all(calls).await {
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "succeeded");
    }
    let read = app.payment(&reference).await;
    let into_succeeded = read["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["to_status"] == "succeeded")
        .count();
    assert_eq!(into_succeeded, 1);
    assert_eq!(app.sandbox_stats().await["verify_calls"], 1);
}

/// A new payment whose provider reports `outcome` (no webhook sent), as
/// verify then returns it.
async fn verified_after(app: &TestApp, amount: i64, mut outcome: Value) -> Value {
    let payment = app.new_payment(amount).await;
    let reference = payment["reference"].as_str().unwrap();
    outcome["notify"] = json!(false);
    app.sandbox(&format!("transactions/{reference}/outcome"), outcome)
        .await;
    app.post(&format!("/v1/payments/{reference}/verify"))
        .json_body()
        .await
}

#[tokio::test]
async fn an_amount_mismatch_is_flagged_never_credited() {
    let app = TestApp::spawn().await;
    // The provider reports that less was paid.
    let verified = verified_after(&app, 10_000, json!({"status": "success", "amount": 100})).await;
    assert_eq!(verified["status"], "pending");
    assert_eq!(verified["failure_reason"], "amount_mismatch");
    assert!(verified["paid_at"].is_null());
}

#[tokio::test]
async fn a_currency_mismatch_is_flagged_too() {
    let app = TestApp::spawn().await;
    let verified = verified_after(
        &app,
        10_000,
        json!({"status": "success", "currency": "USD"}),
    )
    .await;
    assert_eq!(verified["status"], "pending");
    assert_eq!(verified["failure_reason"], "currency_mismatch");
}

#[tokio::test]
async fn another_clients_payment_is_not_found() {
    let app = TestApp::spawn().await;
    let payment = app.new_payment(1_000).await;
    let reference = payment["reference"].as_str().unwrap();
    let other = app.other_client_key().await;
    for request in [
        app.http.get(app.url(&format!("/v1/payments/{reference}"))),
        app.http
            .post(app.url(&format!("/v1/payments/{reference}/verify"))),
    ] {
        let response = request.bearer_auth(&other).send().await.unwrap();
        assert_problem(response, 404, "payment_not_found").await;
    }
    let unknown = app.get("/v1/payments/no-such-ref").send().await.unwrap();
    assert_problem(unknown, 404, "payment_not_found").await;
}

#[tokio::test]
async fn a_client_reference_is_kept_and_cannot_be_reused() {
    let app = TestApp::spawn().await;
    let mut request = body(700);
    request["reference"] = json!("order-2026-0001");
    let first = app.initialize(&request, None).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["reference"], "order-2026-0001");
    let again = app.initialize(&request, None).await;
    assert_problem(again, 409, "conflict").await;
    assert_eq!(app.payment_count().await, 1);
}

#[tokio::test]
async fn two_clients_may_use_one_reference_and_each_sees_only_its_own() {
    let app = TestApp::spawn().await;
    let mut request = body(700);
    request["reference"] = json!("order-7");
    let a: Value = app.initialize(&request, None).await.json().await.unwrap();
    assert_eq!(a["provider_reference"], "order-7");

    // Client B's `order-7` is its own: no 409, nothing learned of A's.
    let b_key = app.other_client_key().await;
    let as_b = |method: reqwest::Method, path: &str| {
        app.http.request(method, app.url(path)).bearer_auth(&b_key)
    };
    let created = as_b(reqwest::Method::POST, "/v1/payments/initialize")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let b: Value = created.json().await.unwrap();
    assert_eq!(b["reference"], "order-7");
    assert_ne!(b["id"], a["id"]);
    assert_ne!(
        b["provider_reference"], "order-7",
        "the provider's reference stays unique"
    );
    let again = as_b(reqwest::Method::POST, "/v1/payments/initialize")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_problem(again, 409, "conflict").await;

    // B pays at checkout; the webhook names B's provider reference.
    let paid = app
        .http
        .post(b["authorization_url"].as_str().unwrap())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("outcome=success")
        .send()
        .await
        .unwrap();
    assert!(paid.status().is_success(), "{}", paid.status());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let read: Value = as_b(reqwest::Method::GET, "/v1/payments/order-7")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(read["id"], b["id"], "B reads its own payment");
        if read["status"] == "succeeded" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never paid: {read}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let verified: Value = as_b(reqwest::Method::POST, "/v1/payments/order-7/verify")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&verified["id"], &verified["status"]),
        (&b["id"], &json!("succeeded"))
    );
    let refund = as_b(reqwest::Method::POST, "/v1/payments/order-7/refunds")
        .json(&json!({"amount": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(refund.status(), 201);

    // A's payment is untouched by all of it.
    let a_now = app.payment("order-7").await;
    assert_eq!(
        (&a_now["id"], &a_now["status"]),
        (&a["id"], &json!("pending"))
    );
    let a_verified: Value = app
        .post("/v1/payments/order-7/verify")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a_verified["id"], a["id"]);
    let a_refunds: Value = app
        .get("/v1/payments/order-7/refunds")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a_refunds, json!([]));
}

/// A refused initialize leaves nothing behind: no payment, no provider call.
async fn assert_nothing_stored(app: &TestApp) {
    assert_eq!(app.payment_count().await, 0);
    assert_eq!(app.sandbox_stats().await["initialize_calls"], 0);
}

/// The `field` of each entry of a 422's `errors`, in order.
fn named_fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors list in {problem}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn each_invalid_field_is_a_422_naming_it_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let valid = |extra: Value| {
        let mut body = json!({"amount": 100, "currency": "NGN", "email": "a@b.co"});
        for (field, value) in extra.as_object().unwrap() {
            body[field] = value.clone();
        }
        body
    };
    let big_metadata = json!({"blob": "x".repeat(9 * 1024)});
    for (body, field) in [
        (body(0), "amount"),
        (body(-5), "amount"),
        (body(10_000_000_000_001), "amount"),
        (valid(json!({"currency": "XYZ"})), "currency"),
        (valid(json!({"email": "nope"})), "email"),
        (valid(json!({"metadata": big_metadata})), "metadata"),
        (valid(json!({"metadata": [1]})), "metadata"),
        (valid(json!({"reference": "has space"})), "reference"),
        (valid(json!({"callback_url": "ftp://x"})), "callback_url"),
    ] {
        let response = app.initialize(&body, None).await;
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(named_fields(&problem), [field], "{body}");
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn every_invalid_field_is_named_in_one_422_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let response = app
        .initialize(&json!({"amount": 0, "currency": "ngn", "email": "x"}), None)
        .await;
    let problem = assert_problem(response, 422, "validation_failed").await;
    assert_eq!(named_fields(&problem), ["amount", "currency", "email"]);
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_body_of_the_wrong_shape_is_a_400_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    for body in [
        json!({"amount": "100", "currency": "NGN", "email": "a@b.co"}),
        json!({"currency": "NGN", "email": "a@b.co"}),
    ] {
        let response = app.initialize(&body, None).await;
        assert_problem(response, 400, "bad_request").await;
    }
    // A number no i64 holds cannot be an amount of any size.
    let beyond_i64 = app
        .post_raw(
            "/v1/payments/initialize",
            r#"{"amount": 99999999999999999999, "currency": "NGN", "email": "a@b.co"}"#,
        )
        .await;
    assert_problem(beyond_i64, 400, "bad_request").await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn malformed_json_is_a_400_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let malformed = app
        .post_raw("/v1/payments/initialize", "{\"amount\": 1,")
        .await;
    assert_problem(malformed, 400, "bad_request").await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let wrong_type = app
        .post("/v1/payments/initialize")
        .header("content-type", "text/plain")
        .body("amount=1")
        .send()
        .await
        .unwrap();
    assert_problem(wrong_type, 415, "unsupported_media_type").await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn an_oversized_body_is_a_413_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let huge = app
        .post_raw(
            "/v1/payments/initialize",
            &format!("{{\"pad\": \"{}\"}}", "x".repeat(70 * 1024)),
        )
        .await;
    assert_problem(huge, 413, "payload_too_large").await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn requests_without_a_valid_key_are_401_problems() {
    let app = TestApp::spawn().await;
    let path = app.url("/v1/payments/any-ref");
    let no_header = app.http.get(&path).send().await.unwrap();
    assert_problem(no_header, 401, "unauthorized").await;
    let wrong = app
        .http
        .get(&path)
        .bearer_auth("po_sk_nope")
        .send()
        .await
        .unwrap();
    assert_problem(wrong, 401, "unauthorized").await;
    let not_bearer = app
        .http
        .get(&path)
        .header("authorization", format!("Basic {}", app.api_key))
        .send()
        .await
        .unwrap();
    assert_problem(not_bearer, 401, "unauthorized").await;

    payorch::store::api_clients::revoke(&app.db, app.client_id)
        .await
        .unwrap();
    let disabled = app.get("/v1/payments/any-ref").send().await.unwrap();
    assert_problem(disabled, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_provider_that_rejects_fails_the_payment_with_402() {
    let app = TestApp::spawn().await;
    // The sandbox refuses a reference it already holds with other parameters.
    let mut request = body(1_000);
    request["reference"] = json!("dup-at-provider");
    app.http
        .post(app.url("/sandbox/transaction/initialize"))
        .bearer_auth(payorch::config::SANDBOX_SECRET_KEY)
        .json(&json!({"reference": "dup-at-provider", "amount": 5, "email": "x@y.co"}))
        .send()
        .await
        .unwrap();
    let response = app.initialize(&request, None).await;
    assert_problem(response, 402, "provider_rejected").await;
    let read = app.payment("dup-at-provider").await;
    assert_eq!(read["status"], "failed");
    assert_eq!(read["failure_reason"], "provider_rejected");
}

#[tokio::test]
async fn verify_leaves_a_payment_the_provider_calls_abandoned_pending() {
    // Paystack says `abandoned` for a checkout nobody has paid yet; the
    // customer may still pay, so a poll must not close the payment.
    let app = TestApp::spawn().await;
    let verified = verified_after(&app, 7_000, json!({"status": "abandoned"})).await;
    assert_eq!(verified["status"], "pending");
    assert!(verified["failure_reason"].is_null());
}

#[tokio::test]
async fn initialize_is_sent_once_per_request_and_verify_is_retried() {
    let app = TestApp::spawn().await;
    // A 500 may come from a provider that did the work: initialize is not
    // repeated (a repeat would meet "Duplicate Transaction Reference").
    app.sandbox(
        "faults",
        json!({"operation": "initialize", "mode": "error", "count": 1}),
    )
    .await;
    let failed = app.initialize(&body(1_500), None).await;
    assert_problem(failed, 502, "provider_unavailable").await;
    assert_eq!(app.sandbox_stats().await["initialize_calls"], 1);

    // Verify only reads: one 500 is retried within the same request.
    let payment = app.new_payment(1_500).await;
    let reference = payment["reference"].as_str().unwrap().to_owned();
    app.sandbox(
        "faults",
        json!({"operation": "verify", "mode": "error", "count": 1}),
    )
    .await;
    let verified: Value = app
        .post(&format!("/v1/payments/{reference}/verify"))
        .json_body()
        .await;
    assert_eq!(verified["status"], "pending");
    assert_eq!(app.sandbox_stats().await["verify_calls"], 2);
}

#[tokio::test]
async fn a_provider_that_refuses_our_key_is_502_and_the_payment_stays_open() {
    // A 401 from the provider is payorch's misconfiguration, not the
    // payment's fate: it must not fail the payment.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = format!("http://{}", listener.local_addr().unwrap());
    let defaults = crate::helpers::sandbox_config();
    tokio::spawn(payorch::serve_sandbox(
        defaults,
        listener,
        std::future::pending(),
    ));
    let db = TestDb::postgres().await;
    let mut env = test_env(&db);
    env.insert("PAYSTACK_BASE_URL".into(), sandbox);
    env.insert(
        "PAYSTACK_SECRET_KEY".into(),
        "sk_test_not_the_sandboxes".into(),
    );
    let app = TestApp::spawn_with(Arc::new(db), env).await;
    let failed = app.initialize(&body(1_200), None).await;
    let problem = assert_problem(failed, 502, "provider_unavailable").await;
    assert!(
        !problem["detail"].as_str().unwrap().contains("401"),
        "internal causes stay in the log: {problem}"
    );
    assert_eq!(app.payment_count().await, 1);
    use sea_orm::EntityTrait;
    let payment = payorch::store::entities::payment::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payment.status, "created");
    assert_eq!(payment.failure_reason, None);
}
