//! Merchant events end to end: endpoints, the outbox, signed delivery to a
//! receiver the test runs, retries, rotation, tenancy, the SSRF guard.
//!
//! Signatures are checked here by re-deriving them from the Standard
//! Webhooks specification with the `hmac` and `base64` crates, not with
//! payorch's own signing code.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use poem::{EndpointExt, Request, Response, Route, Server, handler, http::StatusCode, web::Data};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::helpers::{SendJson, TestApp, TestDb, assert_problem, test_env};

/// What the receiver does with a request.
#[derive(Clone, Copy)]
pub enum Behaviour {
    Accept,
    /// Answers 500 to the first `n` requests of each `webhook-id`.
    FailFirst(usize),
    /// Never answers (until the sender gives up).
    Hang,
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

struct State {
    behaviour: Behaviour,
    seen: Mutex<Vec<Received>>,
    arrived: Notify,
}

/// An HTTP receiver on a free local port.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    _server: tokio::task::JoinHandle<()>,
}

#[handler]
async fn receive(req: &Request, body: String, state: Data<&Arc<State>>) -> Response {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let received = Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body,
        at: Instant::now(),
    };
    let earlier = {
        let mut seen = state.seen.lock().unwrap();
        let earlier = seen.iter().filter(|r| r.id == received.id).count();
        seen.push(received);
        earlier
    };
    state.arrived.notify_waiters();
    match state.behaviour {
        Behaviour::Accept => StatusCode::NO_CONTENT.into(),
        Behaviour::FailFirst(n) if earlier < n => StatusCode::INTERNAL_SERVER_ERROR.into(),
        Behaviour::FailFirst(_) => StatusCode::OK.into(),
        Behaviour::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            behaviour,
            seen: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        });
        let routes = Route::new()
            .at("/hook", poem::post(receive))
            .data(state.clone());
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
        let server = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(routes).await;
        });
        Receiver {
            addr,
            state,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn seen(&self) -> Vec<Received> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Waits until `done` holds of what was received (or fails after `within`).
    pub async fn until(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let arrived = self.state.arrived.notified();
            let seen = self.seen();
            if done(&seen) {
                return seen;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{what}: not received within {within:?}; got {seen:#?}"
            );
            let _ = tokio::time::timeout(left, arrived).await;
        }
    }

    /// Waits for a request of event type `kind`.
    pub async fn event(&self, kind: &str) -> Received {
        let seen = self
            .until(Duration::from_secs(15), kind, |seen| {
                seen.iter().any(|r| r.json()["type"] == kind)
            })
            .await;
        seen.into_iter().find(|r| r.json()["type"] == kind).unwrap()
    }
}

/// The Standard Webhooks signature of a request with `secret`, derived
/// from the specification.
fn expected_signature(secret: &str, received: &Received) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", received.id, received.timestamp, received.body).as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

pub fn verifies(secret: &str, received: &Received) -> bool {
    let expected = expected_signature(secret, received);
    received.signature.split(' ').any(|s| s == expected)
}

/// Test environment that lets endpoints live on this machine.
pub fn events_env(db: &TestDb) -> HashMap<String, String> {
    let mut env = test_env(db);
    env.insert("PAYORCH_ALLOW_PRIVATE_ENDPOINTS".into(), "true".into());
    env.insert("PAYORCH_EVENT_RETRY_DELAYS_MS".into(), "100,100,100".into());
    env
}

async fn app_with(env: impl FnOnce(&TestDb) -> HashMap<String, String>) -> TestApp {
    let db = Arc::new(TestDb::postgres().await);
    let env = env(&db);
    TestApp::spawn_with(db, env).await
}

/// Registers `url` for the test's client; returns the endpoint's JSON.
pub async fn register(app: &TestApp, key: &str, body: Value) -> Value {
    let response = app
        .http
        .post(app.url("/v1/webhook-endpoints"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn pay(app: &TestApp, payment: &Value) {
    assert_eq!(app.checkout(payment, "success").await.status(), 200);
}

#[tokio::test]
async fn a_paid_checkout_tells_the_merchant_pending_then_succeeded_signed() {
    let app = app_with(events_env).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    let endpoint = register(&app, &app.api_key, json!({"url": receiver.url()})).await;
    let secret = endpoint["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert!(STANDARD.decode(&secret[6..]).unwrap().len() >= 24);

    let payment = app.new_payment(150_075).await;
    let pending = receiver.event("payment.pending").await;
    pay(&app, &payment).await;
    let succeeded = receiver.event("payment.succeeded").await;

    for received in [&pending, &succeeded] {
        assert!(verifies(secret, received), "{received:?}");
        let event = received.json();
        assert_eq!(event["id"], received.id, "webhook-id is the event id");
        assert!(received.id.starts_with("evt_"));
        assert_eq!(event["data"]["reference"], payment["reference"]);
        let sent_at: i64 = received.timestamp.parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - sent_at).abs() < 60);
    }
    assert!(pending.at <= succeeded.at);
    assert!(
        succeeded.json()["data"]["version"].as_i64() > pending.json()["data"]["version"].as_i64()
    );
    assert_eq!(succeeded.json()["data"]["status"], "succeeded");
    // A body altered by one byte does not verify.
    let mut forged = succeeded.clone();
    forged.body = forged.body.replacen("succeeded", "succeedeD", 1);
    assert!(!verifies(secret, &forged));
}

#[tokio::test]
async fn an_endpoint_that_fails_twice_gets_the_event_on_the_third_attempt_with_the_same_id() {
    let app = app_with(events_env).await;
    let receiver = Receiver::start(Behaviour::FailFirst(2)).await;
    register(
        &app,
        &app.api_key,
        json!({"url": receiver.url(), "event_types": ["payment.pending"]}),
    )
    .await;
    app.new_payment(5_000).await;
    let seen = receiver
        .until(Duration::from_secs(15), "three attempts", |seen| {
            seen.len() >= 3
        })
        .await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen.iter().all(|r| r.id == seen[0].id),
        "one webhook-id on every attempt"
    );
    let id = &seen[0].id;
    // The attempts are recorded as the receiver answered them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let attempts = loop {
        let event = app.get(&format!("/v1/events/{id}")).json_body().await;
        let attempts = event["attempts"].as_array().unwrap().clone();
        if attempts.len() == 3 || Instant::now() > deadline {
            break attempts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let summary: Vec<(String, i64)> = attempts
        .iter()
        .map(|a| {
            (
                a["status"].as_str().unwrap().to_owned(),
                a["response_status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("retrying".into(), 500),
            ("retrying".into(), 500),
            ("delivered".into(), 200)
        ]
    );
    assert_eq!(attempts[2]["attempt"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_delay_another_endpoints_events() {
    let app = app_with(|db| {
        let mut env = events_env(db);
        env.insert("PAYORCH_EVENT_TIMEOUT_MS".into(), "30000".into());
        env
    })
    .await;
    let hanging = Receiver::start(Behaviour::Hang).await;
    let healthy = Receiver::start(Behaviour::Accept).await;
    register(&app, &app.api_key, json!({"url": hanging.url()})).await;
    register(&app, &app.api_key, json!({"url": healthy.url()})).await;
    // More events than the hanging endpoint may hold attempts for.
    let mut created = Vec::new();
    for _ in 0..40 {
        app.new_payment(1_000).await;
        created.push(Instant::now());
    }
    let seen = healthy
        .until(
            Duration::from_secs(10),
            "40 events at the healthy endpoint",
            |seen| seen.len() >= 40,
        )
        .await;
    let last_created = *created.last().unwrap();
    let last_received = seen.iter().map(|r| r.at).max().unwrap();
    assert!(
        last_received.saturating_duration_since(last_created) < Duration::from_secs(1),
        "the healthy endpoint waited {:?} after the last change",
        last_received.saturating_duration_since(last_created)
    );
    assert!(!hanging.seen().is_empty(), "the hanging endpoint was tried");
}

#[tokio::test]
async fn during_a_rotation_each_delivery_carries_both_signatures() {
    let app = app_with(events_env).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    let endpoint = register(&app, &app.api_key, json!({"url": receiver.url()})).await;
    let old = endpoint["secret"].as_str().unwrap().to_owned();
    let id = endpoint["id"].as_str().unwrap();
    let rotated = app
        .post(&format!("/v1/webhook-endpoints/{id}/rotate-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 200);
    let new = rotated.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(old, new);
    // The secret is not shown again.
    let read = app
        .get(&format!("/v1/webhook-endpoints/{id}"))
        .json_body()
        .await;
    assert!(read.get("secret").is_none(), "{read}");

    app.new_payment(2_000).await;
    let received = receiver.event("payment.pending").await;
    assert_eq!(
        received.signature.split(' ').count(),
        2,
        "{}",
        received.signature
    );
    assert!(verifies(&old, &received));
    assert!(verifies(&new, &received));
}

#[tokio::test]
async fn another_client_cannot_see_or_redeliver_a_clients_events_or_endpoints() {
    let app = app_with(events_env).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    let endpoint = register(&app, &app.api_key, json!({"url": receiver.url()})).await;
    let endpoint_id = endpoint["id"].as_str().unwrap();
    app.new_payment(3_000).await;
    let event_id = receiver.event("payment.pending").await.id;
    let other = app.other_client_key().await;
    let as_other = |method: reqwest::Method, path: &str| {
        app.http.request(method, app.url(path)).bearer_auth(&other)
    };

    let listed = as_other(reqwest::Method::GET, "/v1/events")
        .json_body()
        .await;
    assert_eq!(listed["data"], json!([]));
    let read = as_other(reqwest::Method::GET, &format!("/v1/events/{event_id}"))
        .send()
        .await
        .unwrap();
    assert_problem(read, 404, "event_not_found").await;
    let redeliver = as_other(
        reqwest::Method::POST,
        &format!("/v1/events/{event_id}/redeliver"),
    )
    .send()
    .await
    .unwrap();
    assert_problem(redeliver, 404, "event_not_found").await;
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let response = as_other(method, &format!("/v1/webhook-endpoints/{endpoint_id}"))
            .send()
            .await
            .unwrap();
        assert_problem(response, 404, "endpoint_not_found").await;
    }
    let listed = as_other(reqwest::Method::GET, "/v1/webhook-endpoints")
        .json_body()
        .await;
    assert_eq!(listed, json!([]));
    // The owner still has both, and the event went out once.
    let own = app.get(&format!("/v1/events/{event_id}")).json_body().await;
    assert_eq!(own["id"], event_id);
    assert_eq!(receiver.seen().len(), 1);
}

#[tokio::test]
async fn redelivery_sends_the_same_event_id_again() {
    let app = app_with(events_env).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    let endpoint = register(&app, &app.api_key, json!({"url": receiver.url()})).await;
    app.new_payment(4_000).await;
    let first = receiver.event("payment.pending").await;
    let response = app
        .post(&format!("/v1/events/{}/redeliver", first.id))
        .json(&json!({"endpoint_id": endpoint["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let seen = receiver
        .until(Duration::from_secs(10), "the redelivery", |seen| {
            seen.len() >= 2
        })
        .await;
    assert_eq!(seen[1].id, first.id);
    assert_eq!(seen[1].body, first.body);
}

#[tokio::test]
async fn events_are_listed_newest_first_with_filters_and_a_cursor() {
    let app = app_with(events_env).await;
    let mut references = Vec::new();
    for _ in 0..3 {
        references.push(
            app.new_payment(1_000).await["reference"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let page = app
        .get("/v1/events?type=payment.pending&limit=2")
        .json_body()
        .await;
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(page["has_more"], true);
    assert_eq!(data[0]["data"]["reference"], references[2]);
    assert_eq!(data[1]["data"]["reference"], references[1]);
    let next = app
        .get(&format!(
            "/v1/events?type=payment.pending&limit=2&after={}",
            page["next_after"].as_str().unwrap()
        ))
        .json_body()
        .await;
    assert_eq!(next["data"].as_array().unwrap().len(), 1);
    assert_eq!(next["data"][0]["data"]["reference"], references[0]);
    assert_eq!(next["has_more"], false);
    let one = app
        .get(&format!("/v1/events?payment={}", references[1]))
        .json_body()
        .await;
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    let bad = app.get("/v1/events?limit=0").send().await.unwrap();
    assert_problem(bad, 422, "validation_failed").await;
    let unknown = app
        .get("/v1/events?type=payment.exploded")
        .send()
        .await
        .unwrap();
    assert_problem(unknown, 422, "validation_failed").await;
}

#[tokio::test]
async fn bad_endpoints_are_refused_with_422_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"url": "not a url"}), "validation_failed", "url"),
        (
            json!({"url": "ftp://merchant.example/hook"}),
            "validation_failed",
            "url",
        ),
        (
            json!({"url": "https://merchant.example/hook", "event_types": ["payment.exploded"]}),
            "validation_failed",
            "event_types",
        ),
        (
            json!({"url": "https://merchant.example/hook", "description": "x".repeat(256)}),
            "validation_failed",
            "description",
        ),
        // SSRF: a name that resolves to loopback, and an address literal.
        (
            json!({"url": "http://localhost:9/hook"}),
            "endpoint_url_not_allowed",
            "",
        ),
        (
            json!({"url": "http://169.254.169.254/latest"}),
            "endpoint_url_not_allowed",
            "",
        ),
        (
            json!({"url": "http://10.0.0.7/hook"}),
            "endpoint_url_not_allowed",
            "",
        ),
    ];
    for (body, code, field) in cases {
        let response = app
            .post("/v1/webhook-endpoints")
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 422, code).await;
        if !field.is_empty() {
            assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        }
    }
    assert_eq!(
        app.get("/v1/webhook-endpoints").json_body().await,
        json!([])
    );
}

/// Registers an endpoint whose name does not resolve (registration lets
/// it through), then points it at `url` in the database: as if its DNS
/// had changed since registration.
pub async fn endpoint_moved_to(app: &TestApp, url: &str) {
    let created = register(
        app,
        &app.api_key,
        json!({"url": "https://merchant.example/hook"}),
    )
    .await;
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    use sea_orm::{ConnectionTrait, Statement};
    app.db
        .execute_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "UPDATE webhook_endpoints SET url = $1 WHERE id = $2",
            [url.into(), id.into()],
        ))
        .await
        .unwrap();
}

/// The first delivery attempt of the newest event (waits up to 10 s).
pub async fn first_attempt(app: &TestApp) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = app.get("/v1/events").json_body().await;
        if let Some(event_id) = page["data"][0]["id"].as_str() {
            let event = app.get(&format!("/v1/events/{event_id}")).json_body().await;
            if let Some(attempt) = event["attempts"]
                .as_array()
                .and_then(|a| a.first())
                .cloned()
            {
                return attempt;
            }
        }
        assert!(Instant::now() < deadline, "no attempt recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn delivery_refuses_an_endpoint_that_now_resolves_to_loopback() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    endpoint_moved_to(
        &app,
        &format!("http://localhost:{}/hook", receiver.addr.port()),
    )
    .await;
    app.new_payment(1_000).await;
    let attempt = first_attempt(&app).await;
    assert_eq!(attempt["status"], "retrying");
    assert!(attempt["response_status"].is_null());
    assert!(
        attempt["error"].as_str().unwrap().contains("forbidden"),
        "{attempt}"
    );
    assert!(
        receiver.seen().is_empty(),
        "nothing reached the loopback receiver"
    );
}

#[tokio::test]
async fn a_refund_that_is_refused_emits_nothing_and_one_that_is_made_emits_refund_pending() {
    let app = app_with(events_env).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    register(&app, &app.api_key, json!({"url": receiver.url(), "event_types": ["refund.pending", "refund.succeeded", "payment.refunded"]})).await;
    let payment = app.new_payment(10_000).await;
    let reference = payment["reference"].as_str().unwrap();
    // Not paid yet: refused (409), nothing written, nothing emitted.
    let refused = app
        .post(&format!("/v1/payments/{reference}/refunds"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    pay(&app, &payment).await;
    let verified = app
        .post(&format!("/v1/payments/{reference}/verify"))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    // More than is left: refused (422), nothing emitted.
    let too_much = app
        .post(&format!("/v1/payments/{reference}/refunds"))
        .json(&json!({"amount": 10_001}))
        .send()
        .await
        .unwrap();
    assert_eq!(too_much.status(), 422);
    let made = app
        .post(&format!("/v1/payments/{reference}/refunds"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let pending = receiver.event("refund.pending").await;
    assert_eq!(pending.json()["data"]["amount"], 10_000);
    let refunded = receiver.event("payment.refunded").await;
    assert_eq!(refunded.json()["data"]["status"], "refunded");
    receiver.event("refund.succeeded").await;
    let kinds: Vec<String> = app.get("/v1/events?limit=100").json_body().await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "refund.pending").count(),
        1,
        "{kinds:?}"
    );
}

#[tokio::test]
async fn an_endpoint_that_answers_gone_is_disabled() {
    let app = app_with(events_env).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    tokio::spawn(Server::new_with_acceptor(acceptor).run(Route::new().at(
        "/hook",
        poem::post(poem::endpoint::make_sync(|_| StatusCode::GONE)),
    )));
    let endpoint = register(
        &app,
        &app.api_key,
        json!({"url": format!("http://{addr}/hook")}),
    )
    .await;
    let id = endpoint["id"].as_str().unwrap();
    app.new_payment(1_000).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let read = app
            .get(&format!("/v1/webhook-endpoints/{id}"))
            .json_body()
            .await;
        if read["enabled"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "the endpoint stayed enabled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn embedded_sqlite_delivers_events_in_process() {
    let db = Arc::new(TestDb::sqlite());
    let env = events_env(&db);
    let app = TestApp::spawn_with(db, env).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    let endpoint = register(&app, &app.api_key, json!({"url": receiver.url()})).await;
    let payment = app.new_payment(7_000).await;
    receiver.event("payment.pending").await;
    pay(&app, &payment).await;
    let succeeded = receiver.event("payment.succeeded").await;
    assert!(verifies(endpoint["secret"].as_str().unwrap(), &succeeded));
}

/// `kill -9` of a worker while 1 000 state changes are being made and
/// delivered: every committed event reaches the receiver at least once,
/// and nothing reaches it that was not committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_worker_during_a_burst_of_1000_changes_loses_no_event() {
    use crate::webhooks::{Pipeline, WorkerProcess, scalar};
    let pipeline = Pipeline::start(
        0,
        &[
            ("PAYORCH_ALLOW_PRIVATE_ENDPOINTS", "true"),
            ("PAYORCH_EVENT_RETRY_DELAYS_MS", "200,200,200,200,200"),
            ("PAYORCH_WORKER_PREFETCH", "16"),
        ],
    )
    .await;
    let app = &pipeline.app;
    let receiver = Receiver::start(Behaviour::Accept).await;
    register(app, &app.api_key, json!({"url": receiver.url()})).await;
    let mut workers: Vec<WorkerProcess> = (0..3)
        .map(|_| WorkerProcess::spawn(&pipeline.env))
        .collect();
    // 500 payments (500 × payment.pending), then a burst settles each
    // (500 × payment.succeeded or payment.failed).
    for _ in 0..500 {
        app.new_payment(1_000).await;
    }
    let burst = app.burst(json!({"outcome": "mixed", "concurrency": 32}));
    receiver
        .until(
            Duration::from_secs(120),
            "a good part of the burst",
            |seen| seen.len() >= 300,
        )
        .await;
    workers[0].signal("-KILL");
    workers[0].wait();
    let report = burst.await.unwrap();
    assert_eq!(report["accepted"], 500, "{report}");

    let deadline = Instant::now() + Duration::from_secs(60);
    while scalar(
        &app.db,
        "SELECT COUNT(*) FROM payment_transitions WHERE to_status IN ('succeeded', 'failed')",
    )
    .await
        < 500
    {
        assert!(Instant::now() < deadline, "the burst was not applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let committed: std::collections::BTreeSet<String> = {
        use sea_orm::{ConnectionTrait, Statement};
        app.db
            .query_all_raw(Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT id FROM events",
            ))
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.try_get::<String>("", "id").unwrap())
            .collect()
    };
    assert_eq!(committed.len(), 1_000, "500 pending + 500 settled");
    let seen = receiver
        .until(Duration::from_secs(120), "every committed event", |seen| {
            let ids: std::collections::BTreeSet<&str> =
                seen.iter().map(|r| r.id.as_str()).collect();
            committed.iter().all(|id| ids.contains(id.as_str()))
        })
        .await;
    let received: std::collections::BTreeSet<String> = seen.iter().map(|r| r.id.clone()).collect();
    assert!(
        received.is_subset(&committed),
        "an event that was never committed arrived"
    );
    for worker in workers.iter_mut().skip(1) {
        worker.signal("-TERM");
        assert_eq!(worker.wait(), Some(0));
    }
}

/// `payorch listen`: registers a temporary endpoint, prints each event
/// verified, removes the endpoint on Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payorch_listen_prints_verified_events_and_removes_its_endpoint_on_ctrl_c() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let app = app_with(events_env).await;
    let mut command = tokio::process::Command::from(crate::helpers::payorch_command());
    let mut child = command
        .args(["listen", "--api", &app.url("")])
        .env("PAYORCH_API_KEY", &app.api_key)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut read_until = async |needle: &str| {
        let found = tokio::time::timeout(Duration::from_secs(15), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("`payorch listen` ended before printing {needle:?}");
        })
        .await;
        found.unwrap_or_else(|_| panic!("`payorch listen` never printed {needle:?}"))
    };
    read_until("listening on").await;
    let endpoints = app.get("/v1/webhook-endpoints").json_body().await;
    assert_eq!(endpoints.as_array().unwrap().len(), 1);

    app.new_payment(1_000).await;
    let line = read_until("payment.pending").await;
    assert!(line.contains("signature=verified"), "{line}");

    std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    read_until("removed").await;
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        app.get("/v1/webhook-endpoints").json_body().await,
        json!([])
    );
}

#[tokio::test]
async fn the_retention_purge_deletes_old_relayed_events_with_their_attempts() {
    use crate::webhooks::scalar;
    let app = app_with(events_env).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    register(&app, &app.api_key, json!({"url": receiver.url()})).await;
    app.new_payment(1_000).await;
    app.new_payment(1_000).await;
    receiver
        .until(Duration::from_secs(10), "both events", |seen| {
            seen.len() >= 2
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while scalar(&app.db, "SELECT COUNT(*) FROM event_attempts").await < 2 {
        assert!(Instant::now() < deadline, "attempts not recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    use sea_orm::ConnectionTrait;
    app.db
        .execute_unprepared(
            "UPDATE events SET created_at = now() - interval '31 days' \
             WHERE id = (SELECT MIN(id) FROM events)",
        )
        .await
        .unwrap();
    let purged = payorch::purge_events(&app.db, Duration::from_secs(30 * 86_400))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert_eq!(scalar(&app.db, "SELECT COUNT(*) FROM events").await, 1);
    assert_eq!(
        scalar(&app.db, "SELECT COUNT(*) FROM event_attempts").await,
        1
    );
}

#[tokio::test]
async fn one_endpoint_failing_is_retried_alone_and_the_others_get_the_event_once() {
    let app = app_with(events_env).await;
    let healthy = Receiver::start(Behaviour::Accept).await;
    let flaky = Receiver::start(Behaviour::FailFirst(1)).await;
    register(&app, &app.api_key, json!({"url": healthy.url()})).await;
    register(&app, &app.api_key, json!({"url": flaky.url()})).await;
    app.new_payment(1_000).await;
    let retried = flaky
        .until(Duration::from_secs(10), "the retry", |seen| seen.len() >= 2)
        .await;
    assert_eq!(retried[0].id, retried[1].id);
    // The retry went to the failing endpoint alone: by the time a later
    // event reaches the healthy endpoint, it has had the first one once.
    app.new_payment(2_000).await;
    let seen = healthy
        .until(Duration::from_secs(10), "the second event", |seen| {
            seen.iter().any(|r| r.id != retried[0].id)
        })
        .await;
    let first = seen.iter().filter(|r| r.id == retried[0].id).count();
    assert_eq!(first, 1, "{seen:?}");
}

#[tokio::test]
async fn concurrent_registrations_never_take_a_client_past_its_endpoint_limit() {
    let app = app_with(events_env).await;
    let url = |n: usize| json!({"url": format!("http://127.0.0.1:9/hook-{n}")});
    let limit = payorch::events::MAX_ENDPOINTS;
    for n in 0..limit - 5 {
        register(&app, &app.api_key, url(n)).await;
    }
    let attempts = (limit..limit + 20).map(|n| {
        app.http
            .post(app.url("/v1/webhook-endpoints"))
            .bearer_auth(&app.api_key)
            .json(&url(n))
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|response| response.unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 422).count(),
        15,
        "{statuses:?}"
    );
    let listed: Value = app
        .get("/v1/webhook-endpoints")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(limit));
}

#[tokio::test]
async fn an_attempt_that_cannot_be_recorded_leaves_its_message_unacknowledged() {
    use payorch::{
        events::{delivery::Deliverer, secrets::EndpointSecrets},
        queue::{Disposition, RetryPolicy},
        sealing::Keyring,
    };
    use sea_orm::ConnectionTrait;
    let db = Arc::new(TestDb::postgres().await);
    let env = events_env(&db);
    let key = env["PAYORCH_SECRETS_KEY"].clone();
    let app = TestApp::spawn_with(db, env).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    let endpoint = register(&app, &app.api_key, json!({"url": receiver.url()})).await;
    let endpoint_id: uuid::Uuid = endpoint["id"].as_str().unwrap().parse().unwrap();
    app.new_payment(1_000).await;
    let event = receiver.event("payment.pending").await;
    // From now on the attempts table refuses every row.
    app.db
        .execute_unprepared(
            "ALTER TABLE event_attempts ADD CONSTRAINT test_refuses_rows CHECK (false) NOT VALID",
        )
        .await
        .unwrap();
    let deliverer = Deliverer::new(
        app.db.clone(),
        RetryPolicy {
            delays: vec![Duration::from_millis(100)],
        },
        Duration::from_secs(5),
        true,
        None,
        EndpointSecrets::new(Keyring::new(key.parse().unwrap(), None)),
    );
    let disposition = deliverer
        .handle(payorch::events::delivery(
            &event.id,
            vec![endpoint_id],
            Some(event.body.clone()),
        ))
        .await;
    assert!(
        matches!(&disposition, Disposition::Defer(why) if why.contains("could not be recorded")),
        "{disposition:?}"
    );
    // It was sent (the receiver deduplicates the next one by webhook-id).
    assert_eq!(
        receiver.seen().iter().filter(|r| r.id == event.id).count(),
        2
    );
}

/// `/metrics` as the app serves it.
async fn metrics_text(app: &TestApp) -> String {
    app.http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits (10 s at most) until `done` holds of `/metrics`.
async fn metrics_until(app: &TestApp, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics_text(app).await;
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_deleted_or_disabled_endpoints_failure_streak_leaves_the_metrics() {
    let app = app_with(events_env).await;
    let failing = Receiver::start(Behaviour::FailFirst(usize::MAX)).await;
    let deleted = register(&app, &app.api_key, json!({"url": failing.url()})).await;
    let disabled = register(&app, &app.api_key, json!({"url": failing.url()})).await;
    let kept = register(&app, &app.api_key, json!({"url": failing.url()})).await;
    let series = |endpoint: &Value| {
        format!(
            "payorch_event_endpoint_failure_streak{{endpoint=\"{}\"}}",
            endpoint["id"].as_str().unwrap()
        )
    };
    app.new_payment(1_000).await;
    metrics_until(&app, "a streak per failing endpoint", |text| {
        [&deleted, &disabled, &kept]
            .iter()
            .all(|endpoint| text.contains(&series(endpoint)))
    })
    .await;

    let id = |endpoint: &Value| endpoint["id"].as_str().unwrap().to_owned();
    let response = app
        .http
        .delete(app.url(&format!("/v1/webhook-endpoints/{}", id(&deleted))))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let response = app
        .http
        .patch(app.url(&format!("/v1/webhook-endpoints/{}", id(&disabled))))
        .bearer_auth(&app.api_key)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = metrics_until(&app, "the series of the endpoints gone", |text| {
        !text.contains(&id(&deleted)) && !text.contains(&id(&disabled))
    })
    .await;
    assert!(text.contains(&series(&kept)), "{text}");
}

/// Waits until `sql` (a count) reaches `count`.
async fn until_count(app: &TestApp, sql: &str, count: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = crate::webhooks::scalar(&app.db, sql).await;
        if now >= count {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {now} of {count}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_endpoint_that_times_out_gets_one_attempt_at_a_time_and_the_rest_are_counted_not_sent() {
    let app = app_with(|db| {
        let mut env = events_env(db);
        env.insert("PAYORCH_EVENT_TIMEOUT_MS".into(), "300".into());
        env
    })
    .await;
    let hanging = Receiver::start(Behaviour::Hang).await;
    register(&app, &app.api_key, json!({"url": hanging.url()})).await;
    const EVENTS: i64 = 20;
    futures_util::future::join_all((0..EVENTS).map(|_| app.new_payment(1_000))).await;

    // Every event runs through its whole schedule (four attempts) to
    // `failed`: none is put off without end.
    until_count(
        &app,
        "SELECT COUNT(*) FROM event_attempts WHERE status = 'failed'",
        EVENTS,
        Duration::from_secs(60),
    )
    .await;
    let attempts = crate::webhooks::scalar(&app.db, "SELECT COUNT(*) FROM event_attempts").await;
    assert_eq!(attempts, EVENTS * 4);
    let held_back = crate::webhooks::scalar(
        &app.db,
        "SELECT COUNT(*) FROM event_attempts \
         WHERE error LIKE 'not sent: the endpoint''s last attempt timed out%' \
           AND response_status IS NULL",
    )
    .await;
    assert!(
        held_back > 0,
        "every attempt was sent to the hanging endpoint"
    );
    // Those were never sent: the endpoint saw no more than the others.
    let not_sent = crate::webhooks::scalar(
        &app.db,
        "SELECT COUNT(*) FROM event_attempts WHERE error LIKE 'not sent:%'",
    )
    .await;
    assert!(hanging.seen().len() as i64 <= attempts - not_sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_merchants_hanging_endpoint_does_not_hold_up_another_merchants_events() {
    let app = app_with(|db| {
        let mut env = events_env(db);
        env.insert("PAYORCH_EVENT_TIMEOUT_MS".into(), "2000".into());
        // Deferred deliveries come back after the first retry delay: one
        // nearer the default's than the other tests' 100 ms.
        env.insert(
            "PAYORCH_EVENT_RETRY_DELAYS_MS".into(),
            "2000,2000,2000".into(),
        );
        env
    })
    .await;
    let hanging = Receiver::start(Behaviour::Hang).await;
    register(&app, &app.api_key, json!({"url": hanging.url()})).await;
    let other = app.other_client_key().await;
    let healthy = Receiver::start(Behaviour::Accept).await;
    register(&app, &other, json!({"url": healthy.url()})).await;

    // More events for the hanging endpoint than the deliverer holds.
    for _ in 0..15 {
        futures_util::future::join_all((0..20).map(|_| app.new_payment(1_000))).await;
    }
    hanging
        .until(
            Duration::from_secs(10),
            "the hanging endpoint tried",
            |seen| !seen.is_empty(),
        )
        .await;
    // Meanwhile the other merchant's events arrive at once.
    for n in 0..5 {
        let created = Instant::now();
        let response = app
            .http
            .post(app.url("/v1/payments/initialize"))
            .bearer_auth(&other)
            .json(&json!({"amount": 1_000, "currency": "NGN", "email": "ada@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let seen = healthy
            .until(
                Duration::from_secs(15),
                "the other merchant's event",
                |seen| seen.len() > n,
            )
            .await;
        // Held up, it would wait for the deliverer's places, which the
        // hanging endpoint's deliveries hold for up to the slot wait (5 s)
        // each; on a machine this test shares, well under half of that.
        let waited = seen[n].at.saturating_duration_since(created);
        assert!(
            waited < payorch::events::delivery::SLOT_WAIT / 2,
            "the other merchant's event {n} waited {waited:?}"
        );
    }
}
