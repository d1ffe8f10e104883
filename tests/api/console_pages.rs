//! The operator API behind the console's pages: API clients (create,
//! revoke across instances, rotate with a grace period), the payment
//! search and timeline, merchant endpoints (failure streak, disable,
//! redeliver) and connectors. Each action is audited. The pages
//! themselves are tested in a browser (`scripts/browser_console.py`).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use payorch::store::{endpoints, events};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{TestApp, TestDb, assert_problem, test_env},
    operator::operator_with_token,
};

fn get(app: &TestApp, token: &str, path: &str) -> reqwest::RequestBuilder {
    app.http.get(app.url(path)).bearer_auth(token)
}

fn post(app: &TestApp, token: &str, path: &str, body: Value) -> reqwest::RequestBuilder {
    app.http.post(app.url(path)).bearer_auth(token).json(&body)
}

async fn json_of(request: reqwest::RequestBuilder, status: u16) -> Value {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), status);
    response.json().await.unwrap()
}

/// The status a merchant route answers `key` with: 404 (a payment that
/// does not exist) when the key works, 401 when it does not.
async fn key_status(app: &TestApp, key: &str) -> u16 {
    app.http
        .get(app.url("/v1/payments/no-such-payment"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Asks until `key` gets `status` from `app`; how long that took.
async fn until_key_status(app: &TestApp, key: &str, status: u16) -> Duration {
    let started = Instant::now();
    loop {
        if key_status(app, key).await == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the key never got {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn audit_actions(app: &TestApp, token: &str) -> Vec<(String, String)> {
    json_of(get(app, token, "/v1/operator/audit"), 200)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_revoked_key_is_refused_on_every_instance_and_a_rotated_one_works_through_its_grace() {
    let db = Arc::new(TestDb::postgres().await);
    let mut env: HashMap<String, String> = test_env(&db);
    env.insert("PAYORCH_AUTH_CACHE_MS".into(), "300".into());
    let a = TestApp::spawn_with(db.clone(), env.clone()).await;
    let b = TestApp::spawn_with(db, env).await;
    let (_, token) = operator_with_token(&a, "alice").await;

    let created = json_of(
        post(&a, &token, "/v1/operator/clients", json!({"name": "shop"})),
        201,
    )
    .await;
    let id = created["client"]["id"].as_str().unwrap().to_owned();
    let first = created["key"].as_str().unwrap().to_owned();
    assert_eq!(created["client"]["name"], "shop");
    assert!(created["client"]["disabled_at"].is_null());
    // Both instances know it; b now has it cached.
    assert_eq!(key_status(&a, &first).await, 404);
    assert_eq!(key_status(&b, &first).await, 404);

    // Rotated with an hour's grace: the old key and the new both work.
    let rotated = json_of(
        post(
            &a,
            &token,
            &format!("/v1/operator/clients/{id}/rotate"),
            json!({"grace_seconds": 3600, "note": "yearly rotation"}),
        ),
        200,
    )
    .await;
    let second = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert!(rotated["client"]["previous_key_expires_at"].is_string());
    for app in [&a, &b] {
        assert_eq!(key_status(app, &first).await, 404);
        assert_eq!(key_status(app, &second).await, 404);
    }

    // Rotated again without grace: only the newest works; the key in its
    // grace period from before stops too.
    let third = json_of(
        post(
            &a,
            &token,
            &format!("/v1/operator/clients/{id}/rotate"),
            json!({"grace_seconds": 0}),
        ),
        200,
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    until_key_status(&b, &second, 401).await;
    until_key_status(&b, &first, 401).await;
    assert_eq!(key_status(&b, &third).await, 404);

    // Revoked on a: b refuses the key once its cache entry (300 ms) ends.
    let revoked = json_of(
        post(
            &a,
            &token,
            &format!("/v1/operator/clients/{id}/revoke"),
            json!({"note": "leaked"}),
        ),
        200,
    )
    .await;
    let disabled_at = revoked["client"]["disabled_at"].clone();
    assert!(disabled_at.is_string());
    let took = until_key_status(&b, &third, 401).await;
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(key_status(&a, &third).await, 401);

    // Revoking again changes nothing; rotating a revoked client is refused.
    let again = json_of(
        post(
            &a,
            &token,
            &format!("/v1/operator/clients/{id}/revoke"),
            json!({}),
        ),
        200,
    )
    .await;
    assert_eq!(again["client"]["disabled_at"], disabled_at);
    let refused = post(
        &a,
        &token,
        &format!("/v1/operator/clients/{id}/rotate"),
        json!({"grace_seconds": 0}),
    )
    .send()
    .await
    .unwrap();
    assert_problem(refused, 409, "conflict").await;

    let target = format!("client:{id}");
    let actions: Vec<String> = audit_actions(&a, &token)
        .await
        .into_iter()
        .filter(|(_, t)| *t == target)
        .map(|(action, _)| action)
        .collect();
    assert_eq!(
        actions,
        [
            "api_client.revoke",
            "api_client.rotate",
            "api_client.rotate",
            "api_client.create"
        ]
    );
    let listed = json_of(get(&a, &token, "/v1/operator/clients"), 200).await;
    let shop = listed["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .unwrap();
    assert_eq!(shop["disabled_at"], disabled_at);
    assert!(shop.get("key").is_none() && shop.get("key_hash").is_none());
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn client_changes_with_bad_input_store_nothing() {
    let app = TestApp::spawn().await;
    let (_, token) = operator_with_token(&app, "alice").await;
    let before = json_of(get(&app, &token, "/v1/operator/clients"), 200).await;
    for (path, body, status, code) in [
        (
            "/v1/operator/clients".to_owned(),
            json!({"name": "  "}),
            422,
            "validation_failed",
        ),
        (
            "/v1/operator/clients".to_owned(),
            json!({"name": "x".repeat(101)}),
            422,
            "validation_failed",
        ),
        (
            format!("/v1/operator/clients/{}/rotate", app.client_id),
            json!({"grace_seconds": 604_801}),
            422,
            "validation_failed",
        ),
        (
            format!("/v1/operator/clients/{}/revoke", Uuid::now_v7()),
            json!({}),
            404,
            "client_not_found",
        ),
        (
            format!("/v1/operator/clients/{}/rotate", Uuid::now_v7()),
            json!({"grace_seconds": 0}),
            404,
            "client_not_found",
        ),
    ] {
        let response = post(&app, &token, &path, body).send().await.unwrap();
        assert_problem(response, status, code).await;
    }
    assert_eq!(
        json_of(get(&app, &token, "/v1/operator/clients"), 200).await,
        before
    );
    assert_eq!(key_status(&app, &app.api_key).await, 404);
    assert!(
        audit_actions(&app, &token)
            .await
            .iter()
            .all(|(a, _)| !a.starts_with("api_client."))
    );
}

async fn search(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let found = json_of(
        get(app, token, &format!("/v1/operator/payments?{query}")),
        200,
    )
    .await;
    found["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["client_reference"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn payments_are_found_by_each_field_and_their_timeline_shows_the_provider_call() {
    let app = TestApp::spawn().await;
    let (_, token) = operator_with_token(&app, "alice").await;
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut references = Vec::new();
    for (reference, email) in [
        ("order-1", "ada@example.com"),
        ("order-2", "grace@example.com"),
        ("order-3", "ada@example.com"),
    ] {
        let response = app
            .initialize(
                &json!({"amount": 5000, "currency": "NGN", "email": email, "reference": reference,
                        "metadata": {"note": "<script>alert(1)</script>"}}),
                None,
            )
            .await;
        assert_eq!(response.status(), 201);
        references.push(reference);
    }
    let other_key = app.other_client_key().await;
    let response = app
        .http
        .post(app.url("/v1/payments/initialize"))
        .bearer_auth(&other_key)
        .json(&json!({"amount": 100, "currency": "NGN", "email": "ada@example.com", "reference": "order-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    // The client's reference matches each client's payment under it.
    assert_eq!(
        search(&app, &token, "reference=order-1").await,
        ["order-1", "order-1"]
    );
    let mine = format!("reference=order-1&client_id={}", app.client_id);
    let found = json_of(
        get(&app, &token, &format!("/v1/operator/payments?{mine}")),
        200,
    )
    .await;
    let payment = found["payments"][0].clone();
    assert_eq!(found["payments"].as_array().unwrap().len(), 1);
    // The other client's payment was opened at the provider under a
    // reference of its own (order-1 was taken there): it finds that one.
    let all = json_of(
        get(&app, &token, "/v1/operator/payments?reference=order-1"),
        200,
    )
    .await;
    let theirs = all["payments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["client_id"] != app.client_id.to_string())
        .unwrap()
        .clone();
    let provider_reference = theirs["reference"].as_str().unwrap();
    assert_ne!(provider_reference, "order-1");
    let found = json_of(
        get(
            &app,
            &token,
            &format!("/v1/operator/payments?reference={provider_reference}"),
        ),
        200,
    )
    .await;
    assert_eq!(found["payments"].as_array().unwrap().len(), 1);
    assert_eq!(found["payments"][0]["id"], theirs["id"]);
    assert_eq!(
        search(
            &app,
            &token,
            &format!("email=ada@EXAMPLE.com&client_id={}", app.client_id)
        )
        .await,
        ["order-3", "order-1"]
    );
    assert_eq!(search(&app, &token, "status=pending").await.len(), 4);
    assert_eq!(search(&app, &token, "status=succeeded").await.len(), 0);
    assert_eq!(
        search(
            &app,
            &token,
            &format!("connector={}", payment["connector"].as_str().unwrap())
        )
        .await
        .len(),
        4
    );
    let window = |from: chrono::DateTime<chrono::Utc>| {
        format!(
            "from={}",
            from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )
        .replace('+', "%2B")
    };
    assert_eq!(search(&app, &token, &window(started)).await.len(), 4);
    assert!(
        search(
            &app,
            &token,
            &window(chrono::Utc::now() + chrono::Duration::seconds(5))
        )
        .await
        .is_empty()
    );
    // Pages: newest first, each once.
    let mut paged = Vec::new();
    let mut query = format!("limit=1&client_id={}", app.client_id);
    loop {
        let page = json_of(
            get(&app, &token, &format!("/v1/operator/payments?{query}")),
            200,
        )
        .await;
        for p in page["payments"].as_array().unwrap() {
            paged.push(p["client_reference"].as_str().unwrap().to_owned());
        }
        match page["next_before"].as_str() {
            Some(before) => query = format!("limit=1&client_id={}&before={before}", app.client_id),
            None => break,
        }
    }
    assert_eq!(paged, ["order-3", "order-2", "order-1"]);
    for (query, field) in [
        ("status=paid", "status"),
        ("connector=stripe", "connector"),
        ("limit=101", "limit"),
        ("before=0190a0a0-0000-7000-8000-000000000000", "before"),
    ] {
        let response = get(&app, &token, &format!("/v1/operator/payments?{query}"))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{query}");
    }

    // The timeline: its transitions at once, the provider call once the
    // background writer has it.
    let id = payment["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let timeline = loop {
        let answer = json_of(
            get(&app, &token, &format!("/v1/operator/payments/{id}")),
            200,
        )
        .await;
        let has_call = answer["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "provider_call");
        if has_call {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "no provider call recorded: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        timeline["payment"]["metadata"]["note"],
        "<script>alert(1)</script>"
    );
    assert_eq!(timeline["payment"]["client_reference"], "order-1");
    let entries = timeline["timeline"].as_array().unwrap();
    let call = entries
        .iter()
        .find(|e| e["kind"] == "provider_call")
        .unwrap();
    assert!(
        call["title"]
            .as_str()
            .unwrap()
            .starts_with("initialize at "),
        "{call}"
    );
    assert_eq!(call["outcome"], "ok");
    assert!(call["duration_ms"].is_i64(), "{call}");
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "transition" && e["title"] == "created → pending"),
        "{timeline}"
    );
    let times: Vec<&str> = entries.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let parsed: Vec<chrono::DateTime<chrono::Utc>> =
        times.iter().map(|t| t.parse().unwrap()).collect();
    assert!(
        parsed.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {times:?}"
    );

    let missing = get(
        &app,
        &token,
        &format!("/v1/operator/payments/{}", Uuid::now_v7()),
    )
    .send()
    .await
    .unwrap();
    assert_problem(missing, 404, "payment_not_found").await;
}

async fn endpoint(app: &TestApp, url: &str) -> Uuid {
    let id = Uuid::now_v7();
    endpoints::insert(
        &app.db,
        endpoints::NewEndpoint {
            id,
            client_id: app.client_id,
            url: url.to_owned(),
            description: Some("<b>orders</b>".to_owned()),
            event_types: Vec::new(),
            secret: "whsec_unused".to_owned(),
        },
    )
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn endpoints_show_their_failure_streak_and_can_be_disabled_and_sent_an_event_again() {
    let app = TestApp::spawn().await;
    let (_, token) = operator_with_token(&app, "alice").await;
    let failing = endpoint(&app, "https://orders.example.com/hooks").await;
    let healthy = endpoint(&app, "https://billing.example.com/hooks").await;
    let event_id = format!("evt_{}", Uuid::now_v7().simple());
    events::insert(
        &app.db,
        events::Event {
            id: event_id.clone(),
            client_id: app.client_id,
            kind: "payment.succeeded".into(),
            payment_id: None,
            refund_id: None,
            body: "{}".into(),
            created_at: chrono::Utc::now(),
            published_at: Some(chrono::Utc::now()),
        },
    )
    .await
    .unwrap();
    let attempt = |endpoint_id, n: u32, status: &'static str, code: u16| events::NewAttempt {
        event_id: event_id.clone(),
        endpoint_id,
        attempt: n,
        at: chrono::Utc::now(),
        status,
        response_status: Some(code),
        duration_ms: 12,
        error: None,
    };
    events::record_attempts(
        &app.db,
        vec![
            attempt(failing, 1, "failed", 500),
            attempt(failing, 2, "delivered", 200),
            attempt(failing, 3, "failed", 502),
            attempt(failing, 4, "failed", 503),
            attempt(failing, 5, "failed", 504),
            attempt(healthy, 1, "delivered", 204),
        ],
    )
    .await
    .unwrap();

    let listed = json_of(get(&app, &token, "/v1/operator/endpoints"), 200).await;
    let by_id = |id: Uuid| {
        listed["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id.to_string())
            .unwrap()
            .clone()
    };
    let f = by_id(failing);
    assert_eq!(f["failure_streak"], 3, "{f}");
    assert_eq!(f["client_name"], "test-client");
    assert_eq!(f["enabled"], true);
    let codes: Vec<i64> = f["last_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["response_status"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [504, 503, 502, 200, 500], "newest first");
    assert!(f.get("secret").is_none());
    assert_eq!(by_id(healthy)["failure_streak"], 0);
    let other_client = Uuid::now_v7();
    let none = json_of(
        get(
            &app,
            &token,
            &format!("/v1/operator/endpoints?client_id={other_client}"),
        ),
        200,
    )
    .await;
    assert_eq!(none["endpoints"], json!([]));

    for _ in 0..2 {
        let disabled = json_of(
            post(
                &app,
                &token,
                &format!("/v1/operator/endpoints/{failing}/disable"),
                json!({"note": "down for days"}),
            ),
            200,
        )
        .await;
        assert_eq!(disabled["endpoint"]["enabled"], false);
    }
    assert!(
        !endpoints::find(&app.db, failing)
            .await
            .unwrap()
            .unwrap()
            .enabled
    );

    let queued = json_of(
        post(
            &app,
            &token,
            &format!("/v1/operator/events/{event_id}/redeliver"),
            json!({"endpoint_id": healthy}),
        ),
        202,
    )
    .await;
    assert_eq!(queued["endpoint_ids"], json!([healthy]));
    let missing = post(
        &app,
        &token,
        "/v1/operator/events/evt_missing/redeliver",
        json!({}),
    )
    .send()
    .await
    .unwrap();
    assert_problem(missing, 404, "event_not_found").await;
    let missing = post(
        &app,
        &token,
        &format!("/v1/operator/endpoints/{}/disable", Uuid::now_v7()),
        json!({}),
    )
    .send()
    .await
    .unwrap();
    assert_problem(missing, 404, "endpoint_not_found").await;

    let actions = audit_actions(&app, &token).await;
    assert_eq!(
        actions
            .iter()
            .filter(|(a, _)| a == "endpoint.disable")
            .count(),
        1,
        "disabling twice records once: {actions:?}"
    );
    assert!(actions.contains(&("event.redeliver".to_owned(), format!("event:{event_id}"))));
}

#[tokio::test]
async fn connectors_show_their_breaker_recent_calls_and_the_routing_table() {
    let db = TestDb::postgres().await;
    let mut env = test_env(&db);
    env.insert("PAYORCH_ROUTING".into(), "NGN=paystack;*=paystack".into());
    let app = TestApp::spawn_with(Arc::new(db), env).await;
    let (_, token) = operator_with_token(&app, "alice").await;
    app.new_payment(5000).await;
    app.new_payment(7000).await;

    let view = json_of(get(&app, &token, "/v1/operator/connectors"), 200).await;
    assert_eq!(view["window_seconds"], 300);
    let connector = &view["connectors"][0];
    assert_eq!(connector["breaker"], "closed");
    assert_eq!(connector["calls"], 2, "{view}");
    assert_eq!(connector["errors"], 0);
    assert_eq!(connector["error_rate"], 0.0);
    assert!(connector["p99_ms"].is_u64());
    let series = connector["series"].as_array().unwrap();
    assert_eq!(series.len(), 10);
    assert_eq!(
        series
            .iter()
            .map(|b| b["calls"].as_u64().unwrap())
            .sum::<u64>(),
        2
    );
    assert_eq!(
        view["routing"],
        json!([
            {"currency": "NGN", "connectors": [{"name": "paystack", "weight": null}]},
            {"currency": "*", "connectors": [{"name": "paystack", "weight": null}]},
        ])
    );
    let overview = json_of(get(&app, &token, "/v1/operator/overview"), 200).await;
    assert_eq!(overview["connectors"][0]["calls"], 2, "{overview}");
    assert!(
        overview["workers"].is_null(),
        "the queue table has no consumers to count"
    );
}

/// The overview's `workers` until it is `want` (or fails after 10 s).
async fn until_workers(app: &TestApp, token: &str, want: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let overview = json_of(get(app, token, "/v1/operator/overview"), 200).await;
        if overview["workers"] == want {
            return overview;
        }
        assert!(
            Instant::now() < deadline,
            "workers never {want}: {overview}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_overview_counts_the_workers_connected_to_rabbitmq() {
    let mut pipeline = crate::webhooks::Pipeline::start(0, &[]).await;
    let (_, token) = operator_with_token(&pipeline.app, "alice").await;
    // No publish yet: read over a connection of its own.
    let overview = until_workers(&pipeline.app, &token, 0).await;
    assert_eq!(overview["queues"][0]["waiting"], 0, "{overview}");
    pipeline.add_worker();
    until_workers(&pipeline.app, &token, 1).await;

    // After a publish, read over the publishing connection: the same answer.
    let body = json!({"event": "charge.success", "data": {"id": 1, "reference": "no-such-payment",
        "amount": 100, "currency": "NGN", "status": "success"}});
    let response = pipeline.post(body.to_string().as_bytes()).await;
    assert_eq!(response.status(), 200);
    let overview = until_workers(&pipeline.app, &token, 1).await;
    assert!(overview["queues"][0]["waiting"].is_u64(), "{overview}");
    assert_eq!(overview["queues"][1]["name"], "events");
}
