//! The operator console's server side: sign-in (one answer for an unknown
//! name and a wrong password, limited per name), the session cookie's
//! flags, the security headers, the CSRF token a session needs for every
//! change, sign-out, and the overview. The pages themselves are tested in
//! a browser (`scripts/browser_console.py`).

use std::{collections::HashMap, sync::Arc};

use payorch::operators::{Actor, OperatorName, Operators};
use reqwest::{StatusCode, header};
use serde_json::Value;

use crate::helpers::{TestApp, TestDb, assert_problem, test_env};

/// A client that follows no redirect, so each step can be looked at.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn app_with(extra: &[(&str, &str)]) -> TestApp {
    let db = TestDb::postgres().await;
    let mut env: HashMap<String, String> = test_env(&db);
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    TestApp::spawn_with(Arc::new(db), env).await
}

/// An operator `name`; its password.
async fn operator(app: &TestApp, name: &str) -> String {
    Operators::new(app.db.clone())
        .create(
            &OperatorName::parse(name).unwrap(),
            &Actor::Cli(Some("root".into())),
        )
        .await
        .unwrap()
        .1
}

/// The sign-in form's body (the test's values need no escaping).
fn form(name: &str, password: &str) -> String {
    for value in [name, password] {
        assert!(value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
    format!("name={name}&password={password}")
}

async fn sign_in(app: &TestApp, name: &str, password: &str) -> reqwest::Response {
    browser()
        .post(app.url("/console/sign-in"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(name, password))
        .send()
        .await
        .unwrap()
}

/// Signs in: the `Cookie` header value of the session, and the CSRF token
/// the console's page carries.
async fn session(app: &TestApp, name: &str, password: &str) -> (String, String) {
    let response = sign_in(app, name, password).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let csrf = page_csrf(app, &cookie).await;
    (cookie, csrf)
}

/// The CSRF token in the console page's `<meta name="csrf-token">`.
async fn page_csrf(app: &TestApp, cookie: &str) -> String {
    let page = browser()
        .get(app.url("/console"))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let (_, rest) = html
        .split_once(r#"<meta name="csrf-token" content=""#)
        .expect("the page carries its CSRF token");
    rest.split('"').next().unwrap().to_owned()
}

async fn whoami(app: &TestApp, cookie: &str, csrf: &str) -> reqwest::Response {
    browser()
        .get(app.url("/v1/operator/session"))
        .header(header::COOKIE, cookie)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn signing_in_starts_a_session_with_a_strict_http_only_cookie() {
    let app = app_with(&[]).await;
    let password = operator(&app, "alice").await;

    let anonymous = browser().get(app.url("/console")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()[header::LOCATION], "/console/sign-in");

    let response = sign_in(&app, "alice", &password).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/console#/overview");
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("payorch_session=pos_"), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    // Plain HTTP from an untrusted peer: not marked Secure.
    assert!(!cookie.contains("Secure"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap();

    let page = browser()
        .get(app.url("/console"))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");

    let csrf = page_csrf(&app, cookie).await;
    assert_eq!(csrf.len(), 64);
    let me: Value = whoami(&app, cookie, &csrf).await.json().await.unwrap();
    assert_eq!(me["operator"], "alice");
    assert_eq!(me["csrf_token"], csrf.as_str());

    // The sign-in is in the audit log.
    let operators = Operators::new(app.db.clone());
    let audit = operators.audit_log(10).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "console.sign_in" && e.operator == "operator:alice"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn behind_a_trusted_tls_proxy_the_cookie_is_secure() {
    let app = app_with(&[("PAYORCH_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let password = operator(&app, "alice").await;
    let response = browser()
        .post(app.url("/console/sign-in"))
        .header("x-forwarded-proto", "https")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form("alice", &password))
        .send()
        .await
        .unwrap();
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test]
async fn an_unknown_name_and_a_wrong_password_get_the_same_answer_and_sign_in_is_limited() {
    let app = app_with(&[]).await;
    let password = operator(&app, "alice").await;
    let wrong = sign_in(&app, "alice", "not-the-password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    let wrong = wrong.text().await.unwrap();
    let unknown = sign_in(&app, "mallory", "anything").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.text().await.unwrap(), wrong);
    assert!(wrong.contains("Name or password is wrong."));

    // Five attempts a minute per name: the sixth is refused, even with the
    // right password.
    for _ in 0..4 {
        assert_eq!(
            sign_in(&app, "alice", "guess").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = sign_in(&app, "alice", &password).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()[header::RETRY_AFTER], "60");
}

#[tokio::test]
async fn failing_on_purpose_from_one_address_does_not_keep_an_operator_out() {
    let app = app_with(&[("PAYORCH_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let password = operator(&app, "alice").await;
    let from = |ip: &str, password: &str| {
        browser()
            .post(app.url("/console/sign-in"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("x-forwarded-for", ip)
            .body(form("alice", password))
            .send()
    };
    for _ in 0..5 {
        let wrong = from("203.0.113.7", "guess").await.unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = from("203.0.113.7", "guess").await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let alice = from("198.51.100.9", &password).await.unwrap();
    assert_eq!(
        alice.status(),
        StatusCode::SEE_OTHER,
        "alice signs in from her own address"
    );

    // Spread over many addresses, the name's overall limit (60 a minute)
    // stops the guessing, wherever it comes from.
    let mut refused = false;
    for n in 0..16 {
        for _ in 0..5 {
            let status = from(&format!("192.0.2.{n}"), "guess")
                .await
                .unwrap()
                .status();
            refused |= status == StatusCode::TOO_MANY_REQUESTS;
        }
    }
    assert!(refused, "80 guesses a minute at one name are not all tried");
    let limited = from("198.51.100.10", &password).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_sign_in_posted_from_another_sites_page_is_refused() {
    let app = app_with(&[]).await;
    let password = operator(&app, "alice").await;
    let post = |headers: &[(&str, String)]| {
        let mut request = browser()
            .post(app.url("/console/sign-in"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form("alice", &password));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send()
    };
    let own = format!("http://{}", app.addr);
    for refused in [
        vec![("sec-fetch-site", "cross-site".to_owned())],
        vec![("sec-fetch-site", "same-site".to_owned())],
        vec![("origin", "https://evil.example".to_owned())],
    ] {
        let response = post(&refused).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{refused:?}");
        assert!(response.headers().get(header::SET_COOKIE).is_none());
    }
    for admitted in [
        vec![
            ("sec-fetch-site", "same-origin".to_owned()),
            ("origin", own.clone()),
        ],
        vec![("origin", own.clone())],
        vec![],
    ] {
        let response = post(&admitted).await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{admitted:?}");
        assert!(response.headers().get(header::SET_COOKIE).is_some());
    }
}

#[tokio::test]
async fn with_the_session_cookie_every_request_needs_the_csrf_token() {
    let app = app_with(&[]).await;
    let password = operator(&app, "alice").await;
    let (cookie, csrf) = session(&app, "alice", &password).await;
    // Not even a read with the cookie alone, as a page of another site
    // would send it.
    let read = browser()
        .get(app.url("/v1/operator/reviews"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_problem(read, 403, "csrf_token_invalid").await;
    let review = crate::operator::open_payment_review(&app).await;
    let resolve = |token: Option<&str>| {
        let mut request = browser()
            .post(app.url(&format!("/v1/operator/reviews/{review}/resolve")))
            .header(header::COOKIE, &cookie)
            .json(&serde_json::json!({"action": "dismiss", "note": "checked"}));
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        request.send()
    };

    assert_problem(resolve(None).await.unwrap(), 403, "csrf_token_invalid").await;
    assert_problem(
        resolve(Some(&"0".repeat(64))).await.unwrap(),
        403,
        "csrf_token_invalid",
    )
    .await;
    let done = resolve(Some(&csrf)).await.unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["resolved_by"], "operator:alice");

    // A bearer token needs none (it is not sent by a browser on its own).
    let me = app
        .http
        .get(app.url("/v1/operator/session"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_problem(me, 401, "unauthorized").await;
}

#[tokio::test]
async fn signing_out_ends_the_session_everywhere() {
    let app = app_with(&[]).await;
    let password = operator(&app, "alice").await;
    let (cookie, csrf) = session(&app, "alice", &password).await;
    let without_token = browser()
        .post(app.url("/console/sign-out"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(without_token.status(), StatusCode::FORBIDDEN);
    assert_eq!(whoami(&app, &cookie, &csrf).await.status(), StatusCode::OK);

    let out = browser()
        .post(app.url("/console/sign-out"))
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let cleared = out.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_problem(whoami(&app, &cookie, &csrf).await, 401, "unauthorized").await;
    let page = browser()
        .get(app.url("/console"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_session_never_reaches_the_merchant_api() {
    let app = app_with(&[]).await;
    let password = operator(&app, "alice").await;
    let (cookie, _) = session(&app, "alice", &password).await;
    let token = cookie.split_once('=').unwrap().1;
    let payments = browser()
        .get(app.url("/v1/events"))
        .bearer_auth(token)
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_problem(payments, 401, "unauthorized").await;
    // Nor is a session accepted as a bearer token on operator routes.
    let bearer = browser()
        .get(app.url("/v1/operator/session"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_problem(bearer, 401, "unauthorized").await;
}

#[tokio::test]
async fn the_overview_counts_open_reviews_by_kind_and_reads_the_queues() {
    let app = app_with(&[]).await;
    let password = operator(&app, "alice").await;
    let (cookie, csrf) = session(&app, "alice", &password).await;
    crate::operator::open_payment_review(&app).await;
    crate::operator::open_payment_review(&app).await;
    let overview: Value = browser()
        .get(app.url("/v1/operator/overview"))
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        overview["open_reviews"]["paid_after_final"], 2,
        "{overview}"
    );
    assert_eq!(overview["connectors"][0]["breaker"], "closed", "{overview}");
    let queues = overview["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 2);
    assert_eq!(queues[0]["name"], "webhooks");
    assert!(queues.iter().all(|q| q["waiting"].is_u64()), "{overview}");
    assert_eq!(overview["outbox_lag_seconds"], 0.0);
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed_through_the_operator_core_and_audited() {
    let app = app_with(&[]).await;
    let password = operator(&app, "alice").await;
    let (cookie, csrf) = session(&app, "alice", &password).await;
    // A signed body that is not an event is parked on receipt.
    let body = r#"{"not-an-event":true,"data":{"reference":"dlq-1"}}"#;
    let parked = app
        .http
        .post(app.url("/v1/webhooks/sandbox"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            "x-paystack-signature",
            payorch::provider::paystack::sign_webhook(
                payorch::config::SANDBOX_SECRET_KEY.as_bytes(),
                body.as_bytes(),
            ),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(parked.status(), StatusCode::OK);
    let get = |path: &str| {
        browser()
            .get(app.url(path))
            .header(header::COOKIE, &cookie)
            .header("x-csrf-token", &csrf)
            .send()
    };
    let listed: Value = get("/v1/operator/dead-letters")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let letters = listed.as_array().unwrap();
    assert_eq!(letters.len(), 1, "{listed}");
    assert_eq!(letters[0]["queue"], "webhooks");
    assert_eq!(letters[0]["provider"], "sandbox");
    let id = letters[0]["id"].as_str().unwrap().to_owned();
    let events: Value = get("/v1/operator/dead-letters?queue=events")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events, serde_json::json!([]));
    assert_problem(
        get("/v1/operator/dead-letters?queue=nope").await.unwrap(),
        422,
        "validation_failed",
    )
    .await;

    let replayed: Value = browser()
        .post(app.url("/v1/operator/dead-letters/replay"))
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"queue": "webhooks", "id": id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replayed["replayed"], 1, "{replayed}");
    let audit = Operators::new(app.db.clone()).audit_log(10).await.unwrap();
    let entry = audit
        .iter()
        .find(|e| e.action == "dead_letters.replay")
        .expect("the replay is audited");
    assert_eq!(entry.operator, "operator:alice");
    assert_eq!(entry.target, format!("queue:webhooks/{id}"));
}
