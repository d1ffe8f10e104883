//! Liveness, readiness and the generated API description.

use std::sync::Arc;

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
