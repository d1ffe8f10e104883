//! Idempotency-Key semantics: replay byte for byte, 422 on another body,
//! 409 while in flight, safe retries after provider failures.

use std::{collections::HashMap, sync::Arc};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, TestDb, assert_problem, test_env};

fn body(amount: i64) -> Value {
    json!({"amount": amount, "currency": "NGN", "email": "ada@example.com", "metadata": {"cart": 7}})
}

async fn app_with(vars: &[(&str, &str)]) -> TestApp {
    let db = Arc::new(TestDb::postgres().await);
    let mut env: HashMap<String, String> = test_env(&db);
    for (k, v) in vars {
        env.insert(k.to_string(), v.to_string());
    }
    TestApp::spawn_with(db, env).await
}

#[tokio::test]
async fn the_same_key_and_body_replays_the_stored_response_byte_for_byte() {
    replays_byte_for_byte(&TestApp::spawn().await).await;
}

/// SQLite writes the key with this host's clock, PostgreSQL with its own.
#[tokio::test]
async fn the_same_key_and_body_replays_on_sqlite_too() {
    let db = Arc::new(TestDb::sqlite());
    let env = test_env(&db);
    replays_byte_for_byte(&TestApp::spawn_with(db, env).await).await;
}

async fn replays_byte_for_byte(app: &TestApp) {
    let key = Uuid::new_v4().to_string();
    let first = app.initialize(&body(2_500), Some(&key)).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_bytes = first.bytes().await.unwrap();

    // Same request, keys in another order: still the same request.
    let reordered = json!({"metadata": {"cart": 7}, "email": "ada@example.com", "currency": "NGN", "amount": 2500});
    let second = app.initialize(&reordered, Some(&key)).await;
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.bytes().await.unwrap(), first_bytes);
    assert_eq!(app.payment_count().await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let app = TestApp::spawn().await;
    let key = Uuid::new_v4().to_string();
    assert_eq!(app.initialize(&body(100), Some(&key)).await.status(), 201);
    let other = app.initialize(&body(101), Some(&key)).await;
    assert_problem(other, 422, "idempotency_key_reused").await;
    assert_eq!(app.payment_count().await, 1);
}

#[tokio::test]
async fn a_key_that_is_not_a_uuid_is_400_and_no_key_means_a_new_payment_each_time() {
    let app = TestApp::spawn().await;
    for bad in ["abc", "12345678123456781234567812345678", ""] {
        let response = app.initialize(&body(100), Some(bad)).await;
        assert_problem(response, 400, "bad_request").await;
    }
    assert_eq!(app.payment_count().await, 0);
    assert_eq!(app.initialize(&body(100), None).await.status(), 201);
    assert_eq!(app.initialize(&body(100), None).await.status(), 201);
    assert_eq!(app.payment_count().await, 2);
}

#[tokio::test]
async fn keys_are_scoped_to_the_client() {
    let app = TestApp::spawn().await;
    let key = Uuid::new_v4().to_string();
    assert_eq!(app.initialize(&body(100), Some(&key)).await.status(), 201);
    let other = app.other_client_key().await;
    let response = app
        .http
        .post(app.url("/v1/payments/initialize"))
        .bearer_auth(other)
        .header("Idempotency-Key", &key)
        .json(&body(100))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(response.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.payment_count().await, 2);
}

#[tokio::test]
async fn fifty_concurrent_requests_with_one_key_make_one_payment() {
    let app = TestApp::spawn().await;
    let key = Uuid::new_v4().to_string();
    let request = body(9_900);
    let sends = (0..50).map(|_| app.initialize(&request, Some(&key)));
    let responses = futures_util::future::join_all(sends).await;
    let mut created = Vec::new();
    let mut in_flight = 0;
    for response in responses {
        match response.status().as_u16() {
            201 => created.push(response.json::<Value>().await.unwrap()),
            409 => {
                assert_problem(response, 409, "idempotency_key_in_flight").await;
                in_flight += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(!created.is_empty());
    assert!(created.iter().all(|p| p["id"] == created[0]["id"]));
    assert_eq!(created.len() + in_flight, 50);
    assert_eq!(app.payment_count().await, 1);
    assert_eq!(app.sandbox_stats().await["transactions"], 1);
}

async fn provider_failure_then_retry(mode: &str, status: u16, code: &str) {
    let app = app_with(&[("PAYORCH_PROVIDER_TIMEOUT_MS", "400")]).await;
    app.sandbox(
        "faults",
        json!({"operation": "initialize", "mode": mode, "count": 20}),
    )
    .await;
    let key = Uuid::new_v4().to_string();
    let failed = app.initialize(&body(4_200), Some(&key)).await;
    assert_problem(failed, status, code).await;
    // The payment exists, waiting; the 5xx was not stored.
    assert_eq!(app.payment_count().await, 1);

    app.sandbox(
        "faults",
        json!({"operation": "initialize", "mode": mode, "count": 0}),
    )
    .await;
    let retried = app.initialize(&body(4_200), Some(&key)).await;
    assert_eq!(retried.status(), 201);
    assert!(retried.headers().get("idempotent-replayed").is_none());
    let payment: Value = retried.json().await.unwrap();
    assert_eq!(payment["status"], "pending");
    assert_eq!(
        app.payment_count().await,
        1,
        "the retry finished the same payment"
    );
    assert_eq!(app.sandbox_stats().await["transactions"], 1);

    let replay = app.initialize(&body(4_200), Some(&key)).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
}

#[tokio::test]
async fn a_provider_500_is_502_and_the_same_key_completes_the_same_payment() {
    provider_failure_then_retry("error", 502, "provider_unavailable").await;
}

#[tokio::test]
async fn a_provider_timeout_is_504_and_the_same_key_completes_the_same_payment() {
    provider_failure_then_retry("hang", 504, "provider_timeout").await;
}

#[tokio::test]
async fn a_4xx_is_stored_and_replayed() {
    let app = TestApp::spawn().await;
    let key = Uuid::new_v4().to_string();
    let invalid = json!({"amount": 0, "currency": "NGN", "email": "a@b.co"});
    let first = app.initialize(&invalid, Some(&key)).await;
    assert_eq!(first.status(), 422);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_bytes = first.bytes().await.unwrap();
    let second = app.initialize(&invalid, Some(&key)).await;
    assert_eq!(second.status(), 422);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.headers()["content-type"], "application/problem+json");
    assert_eq!(second.bytes().await.unwrap(), first_bytes);
}

#[tokio::test]
async fn a_crashed_requests_key_is_usable_after_its_lock_expires() {
    use payorch::{domain::IdempotencyKey, payments::idempotency};
    let app = app_with(&[
        ("PAYORCH_IDEMPOTENCY_LOCK_SECS", "1"),
        ("PAYORCH_PROVIDER_TIMEOUT_MS", "500"),
        ("PAYORCH_DB_ACQUIRE_TIMEOUT_MS", "300"),
    ])
    .await;
    let key = Uuid::new_v4();
    let request = body(3_000);
    // A first attempt reserved the key and then died: nothing else happened.
    let fingerprint = idempotency::fingerprint("initialize", &request);
    idempotency::reserve(
        &app.db,
        app.client_id,
        IdempotencyKey::parse(&key.to_string()).unwrap(),
        &fingerprint,
        std::time::Duration::from_secs(1),
        None,
    )
    .await
    .unwrap();
    let during = app.initialize(&request, Some(&key.to_string())).await;
    assert_problem(during, 409, "idempotency_key_in_flight").await;

    // Wait out the lock by watching the clock, not by guessing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let response = app.initialize(&request, Some(&key.to_string())).await;
        if response.status() == 201 {
            break;
        }
        assert_eq!(response.status(), 409);
        assert!(
            std::time::Instant::now() < deadline,
            "the lock never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(app.payment_count().await, 1);
}

#[tokio::test]
async fn expired_keys_are_purged() {
    use payorch::store::entities::idempotency_key;
    use sea_orm::{ActiveValue::Set, EntityTrait, PaginatorTrait};
    let app = TestApp::spawn().await;
    let key = Uuid::new_v4().to_string();
    assert_eq!(app.initialize(&body(100), Some(&key)).await.status(), 201);
    let old = chrono::Utc::now() - chrono::Duration::hours(25);
    idempotency_key::Entity::insert(idempotency_key::ActiveModel {
        client_id: Set(app.client_id),
        key: Set(Uuid::new_v4()),
        request_hash: Set("h".into()),
        state: Set("completed".into()),
        payment_id: Set(None),
        refund_id: Set(None),
        response_status: Set(Some(201)),
        response_body: Set(Some("{}".into())),
        created_at: Set(old),
        locked_until: Set(None),
        owner: Set(None),
    })
    .exec_without_returning(&app.db)
    .await
    .unwrap();
    let (keys, _) =
        payorch::payments::reconcile::purge(&app.db, std::time::Duration::from_secs(86_400))
            .await
            .unwrap();
    assert_eq!(keys, 1);
    assert_eq!(
        idempotency_key::Entity::find()
            .count(&app.db)
            .await
            .unwrap(),
        1
    );
}

/// A first attempt that failed at the provider (502, key released, payment
/// `created`), then the provider holding `reference` already.
async fn resumed_after_a_failure(app: &TestApp, key: &str, request: &Value, held: Value) {
    app.sandbox(
        "faults",
        json!({"operation": "initialize", "mode": "error", "count": 1}),
    )
    .await;
    let first = app.initialize(request, Some(key)).await;
    assert_problem(first, 502, "provider_unavailable").await;
    let taken = app
        .http
        .post(app.url("/sandbox/transaction/initialize"))
        .bearer_auth(payorch::config::SANDBOX_SECRET_KEY)
        .json(&held)
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 200);
    // Paystack refuses a reference it holds, whatever the terms.
    app.sandbox(
        "faults",
        json!({"operation": "initialize", "mode": "duplicate", "count": 1}),
    )
    .await;
}

#[tokio::test]
async fn a_resumed_initialize_the_provider_already_holds_becomes_pending() {
    // As if the first attempt reached the provider and only its answer was
    // lost: the retry's "Duplicate Transaction Reference" must not fail the
    // payment; the provider's own record of it decides.
    let app = TestApp::spawn().await;
    let key = Uuid::new_v4().to_string();
    let mut request = body(2_500);
    request["reference"] = json!("resumed-ref-held");
    let held = json!({"reference": "resumed-ref-held", "amount": 2_500, "currency": "NGN",
                      "email": "ada@example.com"});
    resumed_after_a_failure(&app, &key, &request, held).await;

    let resumed = app.initialize(&request, Some(&key)).await;
    assert_eq!(resumed.status(), 201);
    let payment: Value = resumed.json().await.unwrap();
    assert_eq!(payment["status"], "pending");
    assert!(payment["failure_reason"].is_null());
    assert_eq!(app.payment_count().await, 1);
    assert_eq!(app.sandbox_stats().await["transactions"], 1);
}

#[tokio::test]
async fn a_resumed_initialize_refused_for_a_reference_held_on_other_terms_fails() {
    let app = TestApp::spawn().await;
    let key = Uuid::new_v4().to_string();
    let mut request = body(2_500);
    request["reference"] = json!("resumed-ref-other");
    let held = json!({"reference": "resumed-ref-other", "amount": 1, "email": "o@t.co"});
    resumed_after_a_failure(&app, &key, &request, held).await;

    let resumed = app.initialize(&request, Some(&key)).await;
    assert_problem(resumed, 402, "provider_rejected").await;
    let read = app.payment("resumed-ref-other").await;
    assert_eq!(read["status"], "failed");
    assert_eq!(read["failure_reason"], "provider_rejected");
    // The refusal is stored under the key like any 4xx.
    let replay = app.initialize(&request, Some(&key)).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.status(), 402);
}

/// Fencing: a first request held at the provider past its key's lock; a
/// retry takes the key over and finishes; then the first finishes too. The
/// key keeps the retry's answer, the provider holds one transaction, and
/// the stale completion is counted.
#[tokio::test]
async fn a_request_that_outlived_its_key_lock_cannot_overwrite_the_retry() {
    use payorch::{
        config::{SANDBOX_SECRET_KEY, Secret},
        domain::{IdempotencyKey, Reference},
        payments::{ActorSettings, Answer, Idempotent, PaymentError, Payments, Rendered},
        provider::{Connectors, paystack::PaystackClient},
        store::payments::Payment,
    };
    use std::time::{Duration, Instant};

    crate::helpers::init_logs();
    let test_db = TestDb::postgres().await;
    let db = test_db.connect().await;
    payorch::store::migrate(&db, &test_db.url.parse().unwrap())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = listener.local_addr().unwrap();
    tokio::spawn(payorch::serve_sandbox(
        crate::helpers::sandbox_config(),
        listener,
        std::future::pending(),
    ));
    let (relay, release) = crate::helpers::holding_relay(sandbox).await;
    let lock = Duration::from_millis(300);
    // Two API processes: the first reaches the provider through the relay.
    let process = |base: std::net::SocketAddr| {
        let provider = Arc::new(PaystackClient::new(
            "sandbox",
            format!("http://{base}").parse().unwrap(),
            Secret::new(SANDBOX_SECRET_KEY),
            Duration::from_secs(30),
        ));
        let actors = ActorSettings {
            idle: Duration::from_secs(30),
            mailbox: 64,
            arbiters: 1,
        };
        Payments::start(db.clone(), Connectors::single(provider), actors, lock).unwrap()
    };
    let (slow, quick) = (process(relay), process(sandbox));
    let (client, _) = payorch::store::api_clients::create(&db, "c").await.unwrap();
    let idempotent = Idempotent {
        key: IdempotencyKey::parse(&Uuid::new_v4().to_string()).unwrap(),
        fingerprint: "the same request".into(),
    };
    let request = crate::helpers::payment_request(Reference::parse("fenced-1").unwrap(), 700);
    let answered_by = |who: &'static str| {
        move |result: Result<Payment, PaymentError>| Rendered {
            status: 201,
            body: format!("{who}:{}", result.map(|p| p.status).unwrap_or_default()),
        }
    };
    let stats = || async {
        reqwest::Client::new()
            .get(format!("http://{sandbox}/_control/stats"))
            .bearer_auth(SANDBOX_SECRET_KEY)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let stale_before = stale_completions();

    let first = tokio::spawn({
        let (slow, idempotent, request) = (slow.clone(), idempotent.clone(), request.clone());
        async move {
            slow.initialize(
                client.id,
                Some(idempotent),
                Ok(request),
                answered_by("first"),
            )
            .await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats().await["initialize_calls"] != 1 {
        assert!(
            Instant::now() < deadline,
            "the first request never reached the provider"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Past the lock, a retry takes the key over and finishes the payment.
    let retry = loop {
        match quick
            .initialize(
                client.id,
                Some(idempotent.clone()),
                Ok(request.clone()),
                answered_by("retry"),
            )
            .await
        {
            Err(PaymentError::IdempotencyInFlight) => {
                assert!(Instant::now() < deadline, "the lock never expired");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Answer::Fresh(rendered)) => break rendered,
            other => panic!("the retry: {other:?}"),
        }
    };
    assert_eq!(retry.body, "retry:pending");

    // The first request gets its provider answer now, and answers its own
    // caller, but the key is no longer its to complete.
    release.send(true).unwrap();
    let first = first.await.unwrap().unwrap();
    assert!(matches!(first, Answer::Fresh(_)), "{first:?}");

    let replay = quick
        .initialize(
            client.id,
            Some(idempotent),
            Ok(request),
            answered_by("replay"),
        )
        .await
        .unwrap();
    assert_eq!(
        replay,
        Answer::Replayed(retry),
        "the key keeps the retry's answer"
    );
    assert_eq!(stats().await["transactions"], 1, "one provider transaction");
    assert!(
        stale_completions() > stale_before,
        "the stale completion is counted"
    );
}

/// `payorch_idempotency_total{result="stale_owner"}` in this process.
fn stale_completions() -> f64 {
    payorch::telemetry::metrics()
        .render()
        .lines()
        .find(|line| line.starts_with("payorch_idempotency_total{result=\"stale_owner\"}"))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A stale owner's release does not unlock the key for the new owner's
/// retries; the new owner's does.
#[tokio::test]
async fn a_stale_release_leaves_the_new_owners_lock() {
    use payorch::{
        domain::IdempotencyKey,
        payments::{
            PaymentError,
            idempotency::{self, Reservation},
        },
    };
    use std::time::Duration;

    let test_db = TestDb::postgres().await;
    let db = test_db.connect().await;
    payorch::store::migrate(&db, &test_db.url.parse().unwrap())
        .await
        .unwrap();
    let (client, _) = payorch::store::api_clients::create(&db, "c").await.unwrap();
    let key = IdempotencyKey::parse(&Uuid::new_v4().to_string()).unwrap();
    let reserve = |lock_ms| {
        idempotency::reserve(
            &db,
            client.id,
            key,
            "f",
            Duration::from_millis(lock_ms),
            None,
        )
    };
    let Ok(Reservation::Proceed { claim: stale, .. }) = reserve(1).await else {
        panic!("the first reservation proceeds");
    };
    tokio::time::sleep(Duration::from_millis(20)).await; // past a 1 ms lock
    let Ok(Reservation::Proceed { claim: owner, .. }) = reserve(60_000).await else {
        panic!("the takeover proceeds");
    };
    assert_ne!(stale.owner, owner.owner);
    assert!(!idempotency::release(&db, &stale).await.unwrap());
    assert!(matches!(
        reserve(60_000).await,
        Err(PaymentError::IdempotencyInFlight)
    ));
    assert!(idempotency::release(&db, &owner).await.unwrap());
    assert!(matches!(
        reserve(60_000).await,
        Ok(Reservation::Proceed { .. })
    ));
}
