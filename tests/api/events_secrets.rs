//! Endpoint signing secrets sealed at rest (`PAYORCH_SECRETS_KEY`): what
//! the database holds, what a copy of it without the key is worth, key
//! rotation with `payorch secrets rotate`, rows written before sealing.

use std::{collections::HashMap, sync::Arc, time::Duration};

use payorch::{
    events::secrets::{Column, EndpointSecrets},
    sealing::{Keyring, SealingKey},
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    events::{Behaviour, Receiver, events_env, register, verifies},
    helpers::{SendJson, TestApp, TestDb, payorch_command},
};

/// The raw `secret` and `previous_secret` of an endpoint, as a dump has them.
async fn raw_secrets(db: &DatabaseConnection, id: Uuid) -> (String, Option<String>) {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1",
            [id.into()],
        ))
        .await
        .unwrap()
        .expect("the endpoint's row");
    (
        row.try_get("", "secret").unwrap(),
        row.try_get("", "previous_secret").unwrap(),
    )
}

async fn set_raw(db: &DatabaseConnection, id: Uuid, column: &str, value: &str) {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!("UPDATE webhook_endpoints SET {column} = $1 WHERE id = $2"),
        [value.into(), id.into()],
    ))
    .await
    .unwrap();
}

fn id_of(endpoint: &Value) -> Uuid {
    endpoint["id"].as_str().unwrap().parse().unwrap()
}

fn secrets_with(key: &str) -> EndpointSecrets {
    EndpointSecrets::new(Keyring::new(key.parse().unwrap(), None))
}

/// `POST /v1/payments/initialize` as the client whose key is `key`.
async fn new_payment_as(app: &TestApp, key: &str) {
    let response = app
        .http
        .post(app.url("/v1/payments/initialize"))
        .bearer_auth(key)
        .json(&json!({"amount": 1_000, "currency": "NGN", "email": "ada@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn a_stored_secret_is_sealed_and_a_dump_without_the_key_cannot_sign() {
    let db = Arc::new(TestDb::postgres().await);
    let env = events_env(&db);
    let key = env["PAYORCH_SECRETS_KEY"].clone();
    let app = TestApp::spawn_with(db, env).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    let endpoint = register(&app, &app.api_key, json!({"url": receiver.url()})).await;
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    let id = id_of(&endpoint);

    let (stored, previous) = raw_secrets(&app.db, id).await;
    assert!(previous.is_none());
    let key_id = key.parse::<SealingKey>().unwrap().id().to_owned();
    assert!(stored.starts_with(&format!("enc:v1:{key_id}:")), "{stored}");
    assert!(!stored.contains(&secret) && !stored.contains(&secret[6..]));
    assert!(!stored.contains(&key));

    // Deliveries are signed with the secret the API revealed once.
    app.new_payment(1_000).await;
    let received = receiver.event("payment.pending").await;
    assert!(verifies(&secret, &received));

    // Someone holding a dump but not the key: another key does not open
    // the value (not even relabelled with that key's id), and the value
    // itself used as a signing secret signs nothing the receiver accepts.
    let other = SealingKey::generate();
    let thief = EndpointSecrets::new(Keyring::new(other.clone(), None));
    assert!(thief.open(id, Column::Secret, &stored).is_err());
    let relabelled = stored.replacen(&key_id, other.id(), 1);
    assert!(thief.open(id, Column::Secret, &relabelled).is_err());
    let from_dump = payorch::events::signing::sign(
        &stored,
        &received.id,
        received.timestamp.parse().unwrap(),
        &received.body,
    );
    assert!(!received.signature.split(' ').any(|s| s == from_dump));
    // With the key, it opens to the revealed secret.
    assert_eq!(
        secrets_with(&key)
            .open(id, Column::Secret, &stored)
            .unwrap()
            .expose(),
        secret
    );

    // Never shown again: not in a read, a list or an update.
    for answer in [
        app.get(&format!("/v1/webhook-endpoints/{id}"))
            .json_body()
            .await,
        app.get("/v1/webhook-endpoints").json_body().await,
        app.http
            .patch(app.url(&format!("/v1/webhook-endpoints/{id}")))
            .bearer_auth(&app.api_key)
            .json(&json!({"description": "shop"}))
            .json_body()
            .await,
    ] {
        let text = answer.to_string();
        assert!(
            !text.contains(&secret[6..]) && !text.contains("enc:v1"),
            "{text}"
        );
        assert!(!text.contains("\"secret\""), "{text}");
    }
}

#[tokio::test]
async fn a_sealed_secret_moved_to_another_row_does_not_open() {
    let db = Arc::new(TestDb::postgres().await);
    let env = events_env(&db);
    let key = env["PAYORCH_SECRETS_KEY"].clone();
    let app = TestApp::spawn_with(db, env).await;
    let good = Receiver::start(Behaviour::Accept).await;
    let victim = Receiver::start(Behaviour::Accept).await;
    let a = register(&app, &app.api_key, json!({"url": good.url()})).await;
    let b = register(&app, &app.api_key, json!({"url": victim.url()})).await;
    let (a_id, b_id) = (id_of(&a), id_of(&b));
    let (a_sealed, _) = raw_secrets(&app.db, a_id).await;
    // Bound to its row and column: not another row's, not the other column.
    let secrets = secrets_with(&key);
    assert!(secrets.open(b_id, Column::Secret, &a_sealed).is_err());
    assert!(
        secrets
            .open(a_id, Column::PreviousSecret, &a_sealed)
            .is_err()
    );

    // An attacker who can write the database copies A's sealed secret
    // (whose clear value they know, say as A's owner) into B's row: B's
    // deliveries are not signed with it — they are not sent at all.
    set_raw(&app.db, b_id, "secret", &a_sealed).await;
    app.new_payment(1_000).await;
    let event = good.event("payment.pending").await;
    assert!(verifies(a["secret"].as_str().unwrap(), &event));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let attempt = loop {
        let found = app
            .get(&format!("/v1/events/{}", event.id))
            .json_body()
            .await["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|attempt| attempt["endpoint_id"] == b["id"])
            .cloned();
        if let Some(attempt) = found {
            break attempt;
        }
        assert!(std::time::Instant::now() < deadline, "no attempt to B");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(attempt["status"], "retrying", "{attempt}");
    assert!(
        attempt["error"]
            .as_str()
            .unwrap()
            .contains("signing secret"),
        "{attempt}"
    );
    assert!(
        victim.seen().is_empty(),
        "nothing sent unsigned or mis-signed"
    );
}

/// `payorch secrets rotate` against `database_url` with `env`.
fn rotate(database_url: &str, env: &[(&str, &str)]) -> std::process::Output {
    payorch_command()
        .args(["secrets", "rotate"])
        .env("DATABASE_URL", database_url)
        .env("PAYORCH_PROVIDER", "sandbox")
        .env("RUST_LOG", "debug")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_rotate_reseals_every_row_and_then_the_old_key_can_go() {
    let db = Arc::new(TestDb::postgres().await);
    let old_env = events_env(&db);
    let old_key = old_env["PAYORCH_SECRETS_KEY"].clone();
    let new_key = SealingKey::generate();
    let new_key_text = new_key.encoded().expose().to_owned();
    let database_url = db.url.clone();

    // Under the old key: two endpoints, one of them rotated (both columns
    // hold a sealed value), and one row from before sealing (in clear).
    let app = TestApp::spawn_with(db.clone(), old_env.clone()).await;
    let client_key = app.api_key.clone();
    let receivers = [
        Receiver::start(Behaviour::Accept).await,
        Receiver::start(Behaviour::Accept).await,
        Receiver::start(Behaviour::Accept).await,
    ];
    let mut endpoints = Vec::new();
    for receiver in &receivers {
        endpoints.push(register(&app, &client_key, json!({"url": receiver.url()})).await);
    }
    let rotated_id = id_of(&endpoints[1]);
    let rotated = app
        .post(&format!("/v1/webhook-endpoints/{rotated_id}/rotate-secret"))
        .json_body()
        .await;
    let plain_id = id_of(&endpoints[2]);
    let plain_secret = payorch::events::signing::generate_secret();
    set_raw(&app.db, plain_id, "secret", &plain_secret).await;
    app.shutdown().await.unwrap();

    // Rotation with only the new key configured cannot open the old rows.
    // (the row in clear it can, and does).
    let refused = rotate(&database_url, &[("PAYORCH_SECRETS_KEY", &new_key_text)]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("3 endpoint(s) checked, 1 sealed again"),
        "{refused:?}"
    );
    assert!(String::from_utf8_lossy(&refused.stdout).contains("2 unreadable"));
    // With both: every row sealed again under the new key.
    let output = rotate(
        &database_url,
        &[
            ("PAYORCH_SECRETS_KEY", &new_key_text),
            ("PAYORCH_SECRETS_KEY_PREVIOUS", &old_key),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "3 endpoint(s) checked, 2 sealed again under key {}, 0 unreadable",
            new_key.id()
        )),
        "{stdout}"
    );
    // Neither keys nor secrets in what it printed or logged.
    let mut revealed: Vec<String> =
        vec![old_key.clone(), new_key_text.clone(), plain_secret.clone()];
    for secret in [
        &endpoints[0]["secret"],
        &endpoints[1]["secret"],
        &rotated["secret"],
    ] {
        revealed.push(secret.as_str().unwrap().to_owned());
    }
    for secret in &revealed {
        assert!(!stdout.contains(secret.as_str()) && !stderr.contains(secret.as_str()));
    }
    let check = crate::helpers::TestDb::connect(&db).await;
    for endpoint in &endpoints {
        let (secret, previous) = raw_secrets(&check, id_of(endpoint)).await;
        for value in std::iter::once(secret).chain(previous) {
            assert!(
                value.starts_with(&format!("enc:v1:{}:", new_key.id())),
                "{value}"
            );
        }
    }
    // Again: nothing left to do.
    let again = rotate(
        &database_url,
        &[
            ("PAYORCH_SECRETS_KEY", &new_key_text),
            ("PAYORCH_SECRETS_KEY_PREVIOUS", &old_key),
        ],
    );
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("3 endpoint(s) checked, 0 sealed again"),
        "{again:?}"
    );

    // The old key dropped: deliveries still verify with each endpoint's
    // signing secret (both, for the one in its rotation overlap).
    let mut new_env: HashMap<String, String> = old_env.clone();
    new_env.insert("PAYORCH_SECRETS_KEY".into(), new_key_text.clone());
    let app = TestApp::spawn_with(db, new_env).await;
    new_payment_as(&app, &client_key).await;
    let first = receivers[0].event("payment.pending").await;
    assert!(verifies(endpoints[0]["secret"].as_str().unwrap(), &first));
    let second = receivers[1].event("payment.pending").await;
    assert_eq!(second.signature.split(' ').count(), 2);
    assert!(verifies(endpoints[1]["secret"].as_str().unwrap(), &second));
    assert!(verifies(rotated["secret"].as_str().unwrap(), &second));
    let third = receivers[2].event("payment.pending").await;
    assert!(verifies(&plain_secret, &third));
}

#[tokio::test]
async fn a_secret_in_clear_from_before_sealing_is_sealed_at_start_and_still_signs() {
    let db = Arc::new(TestDb::postgres().await);
    let env = events_env(&db);
    let key = env["PAYORCH_SECRETS_KEY"].clone();
    let app = TestApp::spawn_with(db.clone(), env.clone()).await;
    let client_key = app.api_key.clone();
    let receiver = Receiver::start(Behaviour::Accept).await;
    let endpoint = register(&app, &client_key, json!({"url": receiver.url()})).await;
    let id = id_of(&endpoint);
    let plain = payorch::events::signing::generate_secret();
    set_raw(&app.db, id, "secret", &plain).await;
    // Readable as it is until the next start…
    new_payment_as(&app, &client_key).await;
    assert!(verifies(&plain, &receiver.event("payment.pending").await));
    app.shutdown().await.unwrap();

    // …which seals it.
    let app = TestApp::spawn_with(db, env).await;
    // Answering means started (the listener accepts once startup is done).
    app.get("/v1/webhook-endpoints").json_body().await;
    let (stored, _) = raw_secrets(&app.db, id).await;
    assert!(stored.starts_with("enc:v1:"), "{stored}");
    assert!(!stored.contains(&plain[6..]));
    assert_eq!(
        secrets_with(&key)
            .open(id, Column::Secret, &stored)
            .unwrap()
            .expose(),
        plain
    );
}
