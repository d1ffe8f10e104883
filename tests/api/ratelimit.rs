//! Rate limits against the machine's real Redis (random key prefix per
//! test), the local fallback, and a Redis the test owns and breaks.

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;

use crate::helpers::{TestApp, TestDb, assert_problem, random_name, test_env};

const REDIS: &str = "redis://127.0.0.1:6379";

fn body() -> serde_json::Value {
    json!({"amount": 100, "currency": "NGN", "email": "a@b.co"})
}

async fn app_with(db: Arc<TestDb>, vars: &[(&str, &str)]) -> TestApp {
    let mut env: HashMap<String, String> = test_env(&db);
    for (k, v) in vars {
        env.insert(k.to_string(), v.to_string());
    }
    TestApp::spawn_with(db, env).await
}

async fn redis_app(limits: &str) -> TestApp {
    let db = Arc::new(TestDb::postgres().await);
    app_with(db, &[("REDIS_URL", REDIS), ("PAYORCH_RATE_LIMITS", limits)]).await
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("header {name} missing"))
        .to_str()
        .unwrap()
        .to_owned()
}

async fn fifty_at_once(app: &TestApp, key: &str) -> (usize, usize) {
    let sends = (0..50).map(|_| {
        app.http
            .post(app.url("/v1/payments/initialize"))
            .bearer_auth(key)
            .json(&body())
            .send()
    });
    let mut allowed = 0;
    let mut limited = 0;
    for response in futures_util::future::join_all(sends).await {
        match response.unwrap().status().as_u16() {
            201 => allowed += 1,
            429 => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    (allowed, limited)
}

#[tokio::test]
async fn fifty_concurrent_requests_let_exactly_the_limit_through() {
    let app = redis_app("initialize=5/60,verify=10/60,unauthenticated=100/60").await;
    assert_eq!(fifty_at_once(&app, &app.api_key).await, (5, 45));
    assert_eq!(app.payment_count().await, 5);

    // Another client has a budget of its own, and so has another route.
    let other = app.other_client_key().await;
    assert_eq!(fifty_at_once(&app, &other).await, (5, 45));
    let payment = <payorch::store::entities::payment::Entity as sea_orm::EntityTrait>::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let verify = app
        .post(&format!("/v1/payments/{}/verify", payment.reference))
        .send()
        .await
        .unwrap();
    assert_eq!(verify.status(), 200);
    assert_eq!(header(&verify, "x-ratelimit-limit"), "10");
}

#[tokio::test]
async fn the_local_limiter_holds_the_limit_without_redis() {
    let db = Arc::new(TestDb::postgres().await);
    let app = app_with(db, &[("PAYORCH_RATE_LIMITS", "initialize=5/60")]).await;
    assert_eq!(fifty_at_once(&app, &app.api_key).await, (5, 45));
}

#[tokio::test]
async fn two_instances_on_one_redis_share_the_budget() {
    let db = Arc::new(TestDb::postgres().await);
    let prefix = random_name("r");
    let vars = [
        ("REDIS_URL", REDIS),
        ("PAYORCH_REDIS_PREFIX", prefix.as_str()),
        ("PAYORCH_RATE_LIMITS", "initialize=5/60"),
        // Shared budget, not the fallback: a Redis answer slowed past the
        // default 50 ms on a loaded machine must not hand the decision to
        // each instance's local limiter.
        ("PAYORCH_REDIS_TIMEOUT_MS", "2000"),
    ];
    let first = app_with(db.clone(), &vars).await;
    let second = app_with(db, &vars).await;
    let mut allowed = 0;
    for i in 0..12 {
        let app = if i % 2 == 0 { &first } else { &second };
        let response = app
            .http
            .post(app.url("/v1/payments/initialize"))
            .bearer_auth(&first.api_key)
            .json(&body())
            .send()
            .await
            .unwrap();
        if response.status() == 201 {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5, "5 in total across both instances, not 10");
}

#[tokio::test]
async fn headers_count_down_and_a_429_says_when_to_come_back() {
    let app = redis_app("initialize=5/60").await;
    let mut responses = Vec::new();
    for _ in 0..6 {
        responses.push(app.initialize(&body(), None).await);
    }
    let first = &responses[0];
    assert_eq!(first.status(), 201);
    assert_eq!(header(first, "ratelimit-policy"), "\"initialize\";q=5;w=60");
    assert_eq!(header(first, "ratelimit"), "\"initialize\";r=4;t=60");
    assert_eq!(header(first, "x-ratelimit-limit"), "5");
    assert_eq!(header(first, "x-ratelimit-remaining"), "4");
    assert_eq!(header(first, "x-ratelimit-reset"), "60");

    let fifth = &responses[4];
    assert_eq!(fifth.status(), 201);
    assert_eq!(header(fifth, "x-ratelimit-remaining"), "0");
    assert!(header(fifth, "ratelimit").starts_with("\"initialize\";r=0;t="));

    let sixth = responses.pop().unwrap();
    assert_eq!(header(&sixth, "x-ratelimit-remaining"), "0");
    let retry_after: u64 = header(&sixth, "retry-after").parse().unwrap();
    // The first request leaves the window 60 s after it came.
    assert!((58..=60).contains(&retry_after), "{retry_after}");
    assert_problem(sixth, 429, "rate_limited").await;

    // 4xx responses of a limited route carry the headers too.
    let invalid = app
        .initialize(
            &json!({"amount": 0, "currency": "NGN", "email": "a@b.co"}),
            None,
        )
        .await;
    assert_eq!(invalid.status(), 429);
}

#[tokio::test]
async fn the_budget_comes_back_when_the_window_slides_on() {
    let app = redis_app("initialize=2/2").await;
    assert_eq!(app.initialize(&body(), None).await.status(), 201);
    assert_eq!(app.initialize(&body(), None).await.status(), 201);
    let refused = app.initialize(&body(), None).await;
    assert_eq!(refused.status(), 429);
    let wait: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=2).contains(&wait));
    // Wait exactly as long as the server said, then it must let us in.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(app.initialize(&body(), None).await.status(), 201);
}

#[tokio::test]
async fn a_validation_error_on_a_limited_route_carries_the_headers() {
    let app = redis_app("initialize=5/60").await;
    let invalid = app
        .initialize(
            &json!({"amount": 0, "currency": "NGN", "email": "a@b.co"}),
            None,
        )
        .await;
    assert_eq!(header(&invalid, "x-ratelimit-remaining"), "4");
    assert_problem(invalid, 422, "validation_failed").await;
}

#[tokio::test]
async fn requests_without_a_valid_key_are_limited_per_ip() {
    let db = Arc::new(TestDb::postgres().await);
    let app = app_with(
        db,
        &[
            ("REDIS_URL", REDIS),
            ("PAYORCH_RATE_LIMITS", "unauthenticated=3/60"),
            ("PAYORCH_AUTH_CACHE_MS", "600000"),
        ],
    )
    .await;
    // The real client was seen recently: its key is known to this instance.
    assert_eq!(
        app.get("/v1/payments/x").send().await.unwrap().status(),
        404
    );
    let bad_key = format!("po_sk_{}", "0".repeat(64));
    let mut statuses = Vec::new();
    for i in 0..6 {
        let request = app.http.get(app.url("/v1/payments/x"));
        let request = if i % 2 == 0 {
            request.bearer_auth(&bad_key)
        } else {
            request
        };
        statuses.push(request.send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429]);
    // Once the IP is out of budget, a valid key this instance has not seen
    // (another client behind the same NAT) is still looked up and served,
    // within the block's few lookups...
    let get_with = |key: String| {
        let request = app.http.get(app.url("/v1/payments/x")).bearer_auth(key);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get_with(app.other_client_key().await).await, 404);
    // ...which bad keys spend (4 left), and then nothing more is looked up:
    // not even a valid key.
    for _ in 0..4 {
        assert_eq!(get_with(bad_key.clone()).await, 429);
    }
    assert_eq!(get_with(app.other_client_key().await).await, 429);
    // Cached clients behind the same IP are served throughout.
    assert_eq!(
        app.get("/v1/payments/x").send().await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn webhooks_are_limited_per_ip_before_the_signature_is_checked() {
    let db = Arc::new(TestDb::postgres().await);
    let app = app_with(
        db,
        &[
            ("PAYORCH_RATE_LIMITS", "webhook=3/60"),
            ("PAYORCH_TRUSTED_PROXIES", "127.0.0.0/8"),
        ],
    )
    .await;
    let post = |ip: &'static str| {
        let request = app
            .http
            .post(app.url("/v1/webhooks/sandbox"))
            .header("x-forwarded-for", ip)
            .header("x-paystack-signature", "0".repeat(128))
            .body("{}");
        async move {
            let response = request.send().await.unwrap();
            let limit = response
                .headers()
                .get("x-ratelimit-limit")
                .map(|v| v.to_str().unwrap().to_owned());
            (response.status().as_u16(), limit)
        }
    };
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(post("203.0.113.9").await);
    }
    let three = Some("3".to_owned());
    assert_eq!(
        statuses,
        [
            (401, three.clone()),
            (401, three.clone()),
            (401, three.clone()),
            (429, three.clone())
        ],
        "forged bodies spend the IP's budget, then no HMAC is computed"
    );
    assert_eq!(
        post("198.51.100.4").await,
        (401, three),
        "another IP's own budget"
    );
}

async fn unauthenticated_statuses(app: &TestApp, forwarded_for: &[&str]) -> Vec<u16> {
    let mut statuses = Vec::new();
    for ip in forwarded_for {
        let response = app
            .http
            .get(app.url("/v1/payments/x"))
            .header("x-forwarded-for", *ip)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn forwarded_for_is_ignored_from_an_untrusted_peer() {
    let db = Arc::new(TestDb::postgres().await);
    let app = app_with(db, &[("PAYORCH_RATE_LIMITS", "unauthenticated=2/60")]).await;
    let statuses =
        unauthenticated_statuses(&app, &["203.0.113.1", "203.0.113.2", "203.0.113.3"]).await;
    assert_eq!(statuses, [401, 401, 429], "all counted against the peer");
}

#[tokio::test]
async fn forwarded_for_is_honoured_from_a_trusted_proxy() {
    let db = Arc::new(TestDb::postgres().await);
    let app = app_with(
        db,
        &[
            ("PAYORCH_RATE_LIMITS", "unauthenticated=2/60"),
            ("PAYORCH_TRUSTED_PROXIES", "127.0.0.0/8"),
        ],
    )
    .await;
    let statuses = unauthenticated_statuses(
        &app,
        &[
            "203.0.113.1",
            "203.0.113.1",
            "203.0.113.1",
            "198.51.100.7, 127.0.0.1",
        ],
    )
    .await;
    assert_eq!(
        statuses,
        [401, 401, 429, 401],
        "each client IP has its own budget"
    );
}

/// A Redis of the test's own on a free port, to stop, freeze and restart.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn start_on(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let redis = OwnRedis { port, child };
        redis.wait_until_up();
        redis
    }

    fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        OwnRedis::start_on(port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "ping"])
                .output()
                .map(|o| o.stdout.starts_with(b"PONG"))
                .unwrap_or(false);
            if pong {
                return;
            }
            assert!(Instant::now() < deadline, "own redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: &str) {
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    fn keys(&self, pattern: &str) -> usize {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--scan", "--pattern", pattern])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one initialize and returns its status and how long it took.
async fn timed(app: &TestApp) -> (u16, Duration) {
    let started = Instant::now();
    let status = app.initialize(&body(), None).await.status().as_u16();
    (status, started.elapsed())
}

#[tokio::test]
async fn a_dead_or_frozen_redis_falls_back_to_local_limits_and_recovers() {
    let redis = OwnRedis::start();
    let prefix = random_name("r");
    let db = Arc::new(TestDb::postgres().await);
    let app = app_with(
        db,
        &[
            ("REDIS_URL", redis.url().as_str()),
            ("PAYORCH_REDIS_PREFIX", prefix.as_str()),
            ("PAYORCH_RATE_LIMITS", "initialize=3/60"),
        ],
    )
    .await;
    assert_eq!(timed(&app).await.0, 201);
    assert_eq!(redis.keys(&format!("{prefix}:rl:*")), 1, "counted in Redis");

    // Frozen: connected but silent. Every request is still answered, fast,
    // and the local limiter still limits.
    redis.signal("-STOP");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, took) = timed(&app).await;
        assert!(took < Duration::from_secs(2), "a request waited {took:?}");
        statuses.push(status);
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429], "local limit of 3");
    redis.signal("-CONT");

    // Dead: connection refused. Still served, still limited.
    let port = redis.port;
    drop(redis);
    let (status, took) = timed(&app).await;
    assert_eq!(status, 429);
    assert!(took < Duration::from_secs(2));

    // Back on the same port: a probe finds it and the shared limit returns.
    let redis = OwnRedis::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    while redis.keys(&format!("{prefix}:rl:*")) == 0 {
        assert!(Instant::now() < deadline, "never went back to Redis");
        let (status, _) = timed(&app).await;
        assert!(status == 201 || status == 429, "{status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
