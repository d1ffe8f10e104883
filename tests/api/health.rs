//! Liveness, readiness and the generated API description.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use payorch::config::SANDBOX_SECRET_KEY;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{SendJson, TestApp, TestDb, assert_problem, test_env};

#[tokio::test]
async fn healthz_answers_ok() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_checks_the_database_and_configured_services() {
    let app = TestApp::spawn().await;
    let body: serde_json::Value = app.http.get(app.url("/readyz")).json_body().await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"], "ok");
    assert!(
        body["checks"].get("redis").is_none(),
        "redis is not configured"
    );

    let db = Arc::new(TestDb::postgres().await);
    let mut env = test_env(&db);
    env.insert("REDIS_URL".into(), "redis://127.0.0.1:6379".into());
    env.insert(
        "AMQP_URL".into(),
        "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
    );
    let app = TestApp::spawn_with(db, env).await;
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["redis"], "ok");
    assert_eq!(body["checks"]["amqp"], "ok");
}

#[tokio::test]
async fn readyz_names_the_dependency_that_failed() {
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = Arc::new(TestDb::postgres().await);
    let mut env = test_env(&db);
    env.insert("REDIS_URL".into(), format!("redis://127.0.0.1:{port}"));
    let app = TestApp::spawn_with(db, env).await;
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["database"], "ok");
    assert!(
        body["checks"]["redis"]
            .as_str()
            .unwrap()
            .starts_with("failed"),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_routes_are_problem_json() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_problem(response, 404, "not_found").await;
    let response = app.get("/v1/nope").send().await.unwrap();
    assert_problem(response, 404, "not_found").await;
    // Gates belong to operations: a path that is no operation is a 404
    // with or without a key (route shapes are public in /openapi.json), and
    // costs no key lookup.
    let response = app
        .http
        .get(app.url("/v1/payments/a/b/c"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 404, "not_found").await;
    // An operation's own path still checks the key first.
    let response = app
        .http
        .get(app.url("/v1/payments/some-reference"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn openapi_and_docs_are_served() {
    let app = TestApp::spawn().await;
    let spec: serde_json::Value = app.http.get(app.url("/openapi.json")).json_body().await;
    assert!(spec["paths"]["/healthz"]["get"].is_object());
    // Every client operation is in the generated document, refunds too,
    // each with its real 201 schema.
    let refunds = &spec["paths"]["/v1/payments/{reference}/refunds"];
    assert!(
        refunds["post"].is_object() && refunds["get"].is_object(),
        "{spec}"
    );
    assert_eq!(
        refunds["post"]["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/RefundView"
    );
    for path in [
        "/v1/payments/initialize",
        "/v1/payments/{reference}/verify",
        "/v1/payments/{reference}",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} missing");
    }
    // Completed beyond the derive: the validation rules, as schema only,
    // and links from a created payment or refund to the operations on it.
    let initialize = &spec["components"]["schemas"]["InitializeBody"]["properties"];
    assert_eq!(
        initialize["currency"]["enum"].as_array().map(Vec::len),
        Some(8)
    );
    assert_eq!(initialize["amount"]["maximum"], 10_000_000_000_000_i64);
    assert_eq!(initialize["reference"]["maxLength"], 100);
    let created = &spec["paths"]["/v1/payments/initialize"]["post"]["responses"]["201"];
    assert_eq!(
        created["links"]["GetPayment"]["operationRef"],
        "#/paths/~1v1~1payments~1{reference}/get"
    );
    assert_eq!(
        refunds["post"]["responses"]["201"]["links"]["VerifyPayment"]["parameters"]["reference"],
        "$response.body#/payment_reference"
    );
    let docs = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

#[tokio::test]
async fn shutdown_finishes_cleanly() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.shutdown()
        .await
        .expect("serve returns Ok after shutdown");
}

#[tokio::test]
async fn shutdown_lets_a_request_at_the_provider_finish() {
    // A sandbox of its own behind the relay: the app's mounted sandbox would
    // answer on the app's listener, which shutdown closes.
    let sandbox_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = sandbox_listener.local_addr().unwrap();
    let defaults = crate::helpers::sandbox_config();
    tokio::spawn(payorch::serve_sandbox(
        defaults,
        sandbox_listener,
        std::future::pending(),
    ));
    let (relay, release) = crate::helpers::holding_relay(sandbox).await;

    // Kept here so the database outlives the app and can be read after it.
    let test_db = Arc::new(TestDb::postgres().await);
    let mut env = test_env(&test_db);
    env.insert("PAYSTACK_BASE_URL".into(), format!("http://{relay}"));
    let app = TestApp::spawn_with(test_db.clone(), env).await;
    let addr = app.addr;
    let db = app.db.clone();

    let (http, base) = app.clone_http();
    let key = app.api_key.clone();
    let in_flight = tokio::spawn(async move {
        let response = http
            .post(format!("{base}/v1/payments/initialize"))
            .bearer_auth(&key)
            .json(&json!({"amount": 4_200, "currency": "NGN", "email": "ada@example.com"}))
            .send()
            .await
            .expect("the in-flight request is answered");
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("a JSON answer");
        (status, body)
    });

    // Asked straight, not through the relay, which would hold the answer.
    let stats_url = format!("http://{sandbox}/_control/stats");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = app
            .http
            .get(&stats_url)
            .bearer_auth(SANDBOX_SECRET_KEY)
            .json_body()
            .await;
        if stats["initialize_calls"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "initialize never reached the provider: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!in_flight.is_finished(), "the provider's answer is held");

    let (stopped, ()) = tokio::join!(app.shutdown(), async {
        // The listener closes when shutdown begins: only then may the
        // provider answer, so the request surely ends during the shutdown.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "the app still accepts connections after shutdown was asked for"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        release.send_replace(true);
    });
    stopped.expect("serve returns Ok after shutdown");

    let (status, payment) = in_flight.await.unwrap();
    assert_eq!(status, 201, "{payment}");
    assert_eq!(payment["status"], "pending");
    assert!(payment["authorization_url"].is_string(), "{payment}");
    let refused = TcpStream::connect(addr)
        .await
        .expect_err("nothing listens after shutdown");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    use sea_orm::EntityTrait;
    let stored = payorch::store::entities::payment::Entity::find()
        .all(&db)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].reference, payment["reference"].as_str().unwrap());
    assert_eq!(stored[0].status, "pending");
}
