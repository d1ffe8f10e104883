//! An installation without a configured provider key never trusts the
//! well-known test key: the sandbox gets a key generated for its database.

use std::sync::Arc;

use payorch::{config::SANDBOX_SECRET_KEY, provider::paystack, store::settings};
use serde_json::json;

use crate::helpers::{TestApp, TestDb, test_env};

async fn post_webhook(app: &TestApp, key: &str, body: &[u8]) -> reqwest::StatusCode {
    app.http
        .post(app.url("/v1/webhooks/sandbox"))
        .header("content-type", "application/json")
        .header(
            "x-paystack-signature",
            paystack::sign_webhook(key.as_bytes(), body),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn without_a_configured_key_the_sandbox_signs_with_one_of_its_own() {
    let db = Arc::new(TestDb::postgres().await);
    let mut env = test_env(&db);
    env.remove("PAYSTACK_SECRET_KEY");
    let app = TestApp::spawn_with(db.clone(), env.clone()).await;

    // The mounted sandbox and the API agree on the generated key.
    let payment = app.new_payment(3_000).await;
    let reference = payment["reference"].as_str().unwrap();
    let generated = settings::sandbox_secret(&app.db).await.unwrap();
    assert!(generated.expose().starts_with("sk_test_"));
    assert_ne!(generated.expose(), SANDBOX_SECRET_KEY);

    let body = json!({"event": "charge.success", "data": {
        "id": 41, "reference": reference, "amount": 3_000, "currency": "NGN",
        "status": "success", "paid_at": null, "gateway_response": "Approved"}})
    .to_string()
    .into_bytes();
    assert_eq!(
        post_webhook(&app, SANDBOX_SECRET_KEY, &body).await,
        401,
        "the public test key must not sign for this installation"
    );
    assert_eq!(post_webhook(&app, generated.expose(), &body).await, 200);

    // A second process on the same database uses the same key.
    let second = TestApp::spawn_with(db, env).await;
    assert_eq!(
        settings::sandbox_secret(&second.db).await.unwrap().expose(),
        generated.expose()
    );
    assert_eq!(post_webhook(&second, generated.expose(), &body).await, 200);
}
