//! Operators and the operator API: tokens that reach `/v1/operator/…` and
//! nothing else, API keys that never reach it, reviews listed and resolved
//! with the decision recorded and audited, and `payorch operator` as an
//! operator meets it. Real PostgreSQL, the sandbox on the app's listener.

use payorch::{
    operators::{Actor, OperatorError, OperatorName, Operators},
    store::{
        entities::{operator, operator_token},
        operators as operator_rows,
        reviews::{self, NewReview},
    },
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{TestApp, assert_problem},
    refunds::{app_with, refunds},
    reviews::{lost_refund, payorch, reconcile},
};

fn root() -> Actor {
    Actor::Cli(Some("root".into()))
}

/// An operator named `name` with one bearer token, made through the core
/// as `payorch operator create` and `token` make them.
pub(crate) async fn operator_with_token(app: &TestApp, name: &str) -> (Operators, String) {
    let operators = Operators::new(app.db.clone());
    operators
        .create(&OperatorName::parse(name).unwrap(), &root())
        .await
        .unwrap();
    let (_, token) = operators.issue_token(name, &root()).await.unwrap();
    (operators, token)
}

fn get(app: &TestApp, token: &str, path: &str) -> reqwest::RequestBuilder {
    app.http.get(app.url(path)).bearer_auth(token)
}

fn resolve(app: &TestApp, token: &str, id: &str, body: Value) -> reqwest::RequestBuilder {
    app.http
        .post(app.url(&format!("/v1/operator/reviews/{id}/resolve")))
        .bearer_auth(token)
        .json(&body)
}

async fn json(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A payment-level review of a payment that does not exist: enough for
/// listing and dismissing (the reviews table names payments, no more).
pub(crate) async fn open_payment_review(app: &TestApp) -> Uuid {
    reviews::open(
        &app.db,
        NewReview {
            kind: payorch::domain::ReviewKind::PaidAfterFinal,
            payment_id: Uuid::now_v7(),
            refund_id: None,
            detail: json!({"seen": "test"}),
            connector: None,
            reference: None,
        },
    )
    .await
    .unwrap()
    .unwrap()
    .id
}

#[tokio::test]
async fn an_operator_lists_reviews_and_resolves_one_recorded_and_audited() {
    let app = app_with(&[("PAYORCH_PROVIDER_TIMEOUT_MS", "1000")]).await;
    let reference = lost_refund(&app, 1_000).await;
    let printed = reconcile(&app, "0").await;
    assert!(printed.contains("pending -> requires_review"), "{printed}");
    let other = open_payment_review(&app).await;
    let (operators, token) = operator_with_token(&app, "alice").await;

    // Oldest first; filtered by state and kind.
    let all = json(get(&app, &token, "/v1/operator/reviews")).await;
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["kind"], "refund_outcome_unknown");
    assert_eq!(all[1]["id"], other.to_string());
    let review = all[0].clone();
    let id = review["id"].as_str().unwrap().to_owned();
    assert_eq!(review["status"], "open");
    assert_eq!(review["resolved_by"], Value::Null);
    assert_eq!(
        review["refund_id"],
        refunds(&app, &reference).await[0]["id"]
    );
    let listed = |query: &str| json(get(&app, &token, &format!("/v1/operator/reviews?{query}")));
    let open = listed("open=true&kind=refund_outcome_unknown").await;
    assert_eq!(open.as_array().unwrap().len(), 1);
    assert_eq!(open[0]["id"], review["id"]);
    assert!(listed("open=false").await.as_array().unwrap().is_empty());
    let page = listed("limit=1").await;
    assert_eq!(page.as_array().unwrap().len(), 1);
    let next = listed(&format!("after={id}")).await;
    assert_eq!(next.as_array().unwrap().len(), 1);
    assert_eq!(next[0]["id"], other.to_string());
    for (query, field) in [
        ("kind=refund", "kind"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        (&format!("after={}", Uuid::now_v7()), "after"),
    ] {
        let refused = get(&app, &token, &format!("/v1/operator/reviews?{query}"))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(refused, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{query}");
    }
    let bad = get(&app, &token, "/v1/operator/reviews?open=maybe")
        .send()
        .await
        .unwrap();
    assert_problem(bad, 400, "bad_request").await;

    // One review.
    let one = json(get(&app, &token, &format!("/v1/operator/reviews/{id}"))).await;
    assert_eq!(one, review);
    let missing = get(
        &app,
        &token,
        &format!("/v1/operator/reviews/{}", Uuid::now_v7()),
    )
    .send()
    .await
    .unwrap();
    assert_problem(missing, 404, "review_not_found").await;

    // Actions the review does not take, as the core decides them.
    let unknown = resolve(&app, &token, &id, json!({"action": "frobnicate"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(unknown, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "action");
    let not_theirs = resolve(&app, &token, &id, json!({"action": "provider"}))
        .send()
        .await
        .unwrap();
    assert_problem(not_theirs, 422, "review_action_not_applicable").await;
    let not_for_payments = resolve(
        &app,
        &token,
        &other.to_string(),
        json!({"action": "mark_failed"}),
    )
    .send()
    .await
    .unwrap();
    assert_problem(not_for_payments, 422, "review_action_not_applicable").await;
    let nowhere = resolve(
        &app,
        &token,
        &Uuid::now_v7().to_string(),
        json!({"action": "dismiss"}),
    )
    .send()
    .await
    .unwrap();
    assert_problem(nowhere, 404, "review_not_found").await;
    let long = resolve(
        &app,
        &token,
        &id,
        json!({"action": "dismiss", "note": "x".repeat(2001)}),
    )
    .send()
    .await
    .unwrap();
    assert_problem(long, 422, "validation_failed").await;
    assert_eq!(
        operators.audit_log(100).await.unwrap().len(),
        2,
        "only the create and the token so far"
    );

    // The operator's word settles the refund, recorded on the review.
    let resolved = resolve(
        &app,
        &token,
        &id,
        json!({"action": "mark_succeeded", "note": "seen in the dashboard"}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resolved.status(), 200);
    let resolved: Value = resolved.json().await.unwrap();
    assert_eq!(resolved["id"], review["id"]);
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["resolution"], "mark_succeeded");
    assert_eq!(resolved["resolved_by"], "operator:alice");
    assert_eq!(resolved["note"], "seen in the dashboard");
    assert!(resolved["resolved_at"].is_string());
    assert_eq!(refunds(&app, &reference).await[0]["status"], "succeeded");
    assert_eq!(app.payment(&reference).await["status"], "refunded");
    assert_eq!(listed("open=false").await[0]["id"], review["id"]);

    // Audited, newest first, through the core and the API alike.
    let audit = operators.audit_log(10).await.unwrap();
    assert_eq!(audit.len(), 3, "{audit:?}");
    assert_eq!(audit[0].operator, "operator:alice");
    assert_eq!(audit[0].action, "review.mark_succeeded");
    assert_eq!(audit[0].target, format!("review:{id}"));
    assert_eq!(audit[0].note.as_deref(), Some("seen in the dashboard"));
    assert_eq!(
        (audit[1].action.as_str(), audit[1].operator.as_str()),
        ("operator.token", "cli:root")
    );
    assert_eq!(
        (audit[2].action.as_str(), audit[2].target.as_str()),
        ("operator.create", "operator:alice")
    );
    let logged = json(get(&app, &token, "/v1/operator/audit?limit=1")).await;
    assert_eq!(logged.as_array().unwrap().len(), 1);
    assert_eq!(logged[0]["action"], "review.mark_succeeded");
    assert_eq!(logged[0]["operator"], "operator:alice");

    // Never resolved twice; a refusal writes no audit row.
    let twice = resolve(&app, &token, &id, json!({"action": "dismiss"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(twice, 409, "review_already_resolved").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("operator:alice"),
        "{problem}"
    );
    assert_eq!(operators.audit_log(10).await.unwrap().len(), 3);
}

#[tokio::test]
async fn operator_tokens_and_api_keys_never_cross() {
    let app = TestApp::spawn().await;
    let (_, token) = operator_with_token(&app, "alice").await;

    // An API key on operator routes, and nothing, and junk: 401.
    for path in [
        "/v1/operator/reviews",
        &format!("/v1/operator/reviews/{}", Uuid::now_v7()),
        "/v1/operator/audit",
    ] {
        let with_key = app.get(path).send().await.unwrap();
        let problem = assert_problem(with_key, 401, "unauthorized").await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("operator token"),
            "{problem}"
        );
        let anonymous = app.http.get(app.url(path)).send().await.unwrap();
        assert_problem(anonymous, 401, "unauthorized").await;
        let junk = app
            .http
            .get(app.url(path))
            .bearer_auth("pot_not-a-token")
            .send()
            .await
            .unwrap();
        assert_problem(junk, 401, "unauthorized").await;
    }
    let with_key = app
        .post(&format!("/v1/operator/reviews/{}/resolve", Uuid::now_v7()))
        .json(&json!({"action": "dismiss"}))
        .send()
        .await
        .unwrap();
    assert_problem(with_key, 401, "unauthorized").await;
    // Not even a body the route cannot read gets past the gate.
    let anonymous = app
        .http
        .post(app.url("/v1/operator/reviews/not-a-uuid/resolve"))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401, "unauthorized").await;

    // An operator token on the merchant API: 401 everywhere.
    let payment = app.new_payment(1_000).await;
    let reference = payment["reference"].as_str().unwrap();
    for request in [
        app.http.get(app.url(&format!("/v1/payments/{reference}"))),
        app.http
            .get(app.url(&format!("/v1/payments/{reference}/refunds"))),
        app.http.get(app.url("/v1/events")),
        app.http.get(app.url("/v1/webhook-endpoints")),
        app.http
            .post(app.url("/v1/payments/initialize"))
            .json(&json!({"amount": 100, "currency": "NGN", "email": "a@b.co"})),
    ] {
        let refused = request.bearer_auth(&token).send().await.unwrap();
        assert_problem(refused, 401, "unauthorized").await;
    }
    assert_eq!(app.payment_count().await, 1);

    // Each in its own place.
    assert_eq!(app.payment(reference).await["status"], "pending");
    let listed = json(get(&app, &token, "/v1/operator/reviews")).await;
    assert_eq!(listed, json!([]));

    // In the one OpenAPI document, under their own tag and scheme.
    let spec: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resolve_op = &spec["paths"]["/v1/operator/reviews/{id}/resolve"]["post"];
    assert_eq!(resolve_op["tags"], json!(["Operator"]));
    // An operator token, or the console's session.
    assert_eq!(
        resolve_op["security"],
        json!([{"OperatorToken": []}, {"ConsoleSessionAuth": []}])
    );
    assert!(resolve_op["responses"]["401"].is_object());
    assert!(resolve_op["responses"]["403"].is_object());
    let listing = &spec["paths"]["/v1/operator/reviews"]["get"]["parameters"];
    let limit = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(limit["schema"]["maximum"], 500);
    let body = &spec["components"]["schemas"]["ResolveBody"]["properties"];
    assert_eq!(body["note"]["maxLength"], 2000);
    assert!(
        body["action"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("dismiss"))
    );
    assert_eq!(
        spec["paths"]["/v1/payments/{reference}"]["get"]["security"],
        json!([{"ClientAuth": []}])
    );
}

#[tokio::test]
async fn a_disabled_operator_and_a_revoked_token_are_refused_at_once() {
    let app = TestApp::spawn().await;
    let (operators, first) = operator_with_token(&app, "alice").await;
    let (_, second) = operators.issue_token("alice", &root()).await.unwrap();
    let (_, bobs) = operator_with_token(&app, "bob").await;
    let status = |token: String| {
        let request = get(&app, &token, "/v1/operator/reviews");
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for token in [&first, &second, &bobs] {
        assert_eq!(status(token.clone()).await, 200);
    }

    assert!(operator_rows::revoke_token(&app.db, &first).await.unwrap());
    assert_eq!(status(first.clone()).await, 401);
    assert_eq!(status(second.clone()).await, 200);

    assert!(operators.disable("alice", &root()).await.unwrap());
    assert_eq!(status(second.clone()).await, 401);
    assert_eq!(status(bobs.clone()).await, 200, "others are untouched");
    assert!(!operators.disable("alice", &root()).await.unwrap());
    assert!(matches!(
        operators.issue_token("alice", &root()).await,
        Err(OperatorError::Disabled(_))
    ));
    assert!(matches!(
        operators.disable("nobody", &root()).await,
        Err(OperatorError::NotFound(_))
    ));
    assert!(matches!(
        operators
            .create(&OperatorName::parse("bob").unwrap(), &root())
            .await,
        Err(OperatorError::NameTaken(_))
    ));
    let revoked = operator_token::Entity::find()
        .filter(operator_token::Column::RevokedAt.is_not_null())
        .all(&app.db)
        .await
        .unwrap();
    assert_eq!(revoked.len(), 2, "disabling revoked what was left");
    let actions: Vec<_> = operators
        .audit_log(100)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.action)
        .collect();
    assert_eq!(
        actions.iter().filter(|a| *a == "operator.disable").count(),
        1,
        "{actions:?}"
    );
}

#[tokio::test]
async fn payorch_operator_creates_issues_a_token_and_disables() {
    let app = TestApp::spawn().await;
    let run = |args: &'static [&'static str]| payorch(&app, args, &[]);
    let last_line = |output: &std::process::Output| {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_owned()
    };

    let created = run(&["operator", "create", "--name", "bob"]).await;
    assert!(created.status.success(), "{created:?}");
    let password = last_line(&created);
    assert_eq!(password.len(), 32, "{created:?}");
    assert!(!String::from_utf8_lossy(&created.stderr).contains(&password));
    let row = operator::Entity::find()
        .filter(operator::Column::Name.eq("bob"))
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert!(row.password_hash.starts_with("$argon2id$"), "argon2id");
    assert!(!row.password_hash.contains(&password));
    assert!(!format!("{row:?}").contains(&row.password_hash));
    let operators = Operators::new(app.db.clone());
    let signed_in = operators.sign_in("bob", &password).await.unwrap();
    assert_eq!(signed_in.unwrap().name, "bob");
    assert!(operators.sign_in("bob", "guess").await.unwrap().is_none());
    assert!(operators.sign_in("eve", &password).await.unwrap().is_none());

    let issued = run(&["operator", "token", "bob"]).await;
    assert!(issued.status.success(), "{issued:?}");
    let token = last_line(&issued);
    assert!(token.starts_with("pot_") && token.len() == 68, "{token}");
    let stored = operator_token::Entity::find().all(&app.db).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].token_hash, operator_rows::hash_token(&token));
    assert_eq!(stored[0].operator_id, row.id);
    let listed = get(&app, &token, "/v1/operator/reviews")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);

    let disabled = run(&["operator", "disable", "bob"]).await;
    assert!(disabled.status.success(), "{disabled:?}");
    let refused = get(&app, &token, "/v1/operator/reviews")
        .send()
        .await
        .unwrap();
    assert_problem(refused, 401, "unauthorized").await;
    assert!(operators.sign_in("bob", &password).await.unwrap().is_none());

    for (args, says) in [
        (
            &["operator", "token", "bob"][..],
            "operator bob is disabled",
        ),
        (
            &["operator", "token", "nobody"][..],
            "no operator named nobody",
        ),
        (
            &["operator", "disable", "nobody"][..],
            "no operator named nobody",
        ),
        (
            &["operator", "create", "--name", "bob"][..],
            "an operator named bob exists already",
        ),
    ] {
        let output = payorch(&app, args, &[]).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    for args in [
        &["operator", "create", "--name", "bad name"][..],
        &["operator", "create"],
        &["operator", "token"],
    ] {
        let output = payorch(&app, args, &[]).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }

    let audit: Vec<_> = operators
        .audit_log(10)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| (entry.operator, entry.action, entry.target))
        .collect();
    let bob = || "operator:bob".to_owned();
    assert_eq!(
        audit,
        vec![
            ("cli:alice".into(), "operator.disable".into(), bob()),
            ("cli:alice".into(), "operator.token".into(), bob()),
            ("cli:alice".into(), "operator.create".into(), bob()),
        ]
    );
}

#[tokio::test]
async fn payorch_reviews_resolve_is_audited_as_the_cli_user() {
    let app = TestApp::spawn().await;
    let id = open_payment_review(&app).await.to_string();
    let output = payorch(
        &app,
        &[
            "reviews",
            "resolve",
            &id,
            "--action",
            "dismiss",
            "--note",
            "a test order",
        ],
        &[],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let (operators, token) = operator_with_token(&app, "alice").await;
    let review = json(get(&app, &token, &format!("/v1/operator/reviews/{id}"))).await;
    assert_eq!(review["resolved_by"], "cli:alice");
    assert_eq!(review["resolution"], "dismiss");
    let audit = operators.audit_log(10).await.unwrap();
    let resolved = audit
        .iter()
        .find(|entry| entry.action == "review.dismiss")
        .unwrap_or_else(|| panic!("{audit:?}"));
    assert_eq!(resolved.operator, "cli:alice");
    assert_eq!(resolved.target, format!("review:{id}"));
    assert_eq!(resolved.note.as_deref(), Some("a test order"));
}
