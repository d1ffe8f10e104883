//! `make bench-api`: the payment API at 100 concurrent connections on
//! PostgreSQL, with `GET /healthz` as the HTTP floor in the same run; the
//! rate limiter on (Redis) and off for the same route; Redis commands per
//! limited request from `INFO commandstats`.

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use common::*;
use serde_json::json;

const CONCURRENCY: usize = 100;

fn seconds() -> Duration {
    Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    )
}

async fn start(db: &BenchDb, limits: &str, redis: bool) -> (Payorch, String, Vec<String>) {
    start_with(db, limits, redis, &[]).await
}

async fn start_with(
    db: &BenchDb,
    limits: &str,
    redis: bool,
    extra: &[(&str, &str)],
) -> (Payorch, String, Vec<String>) {
    let port = free_port();
    let mut env = HashMap::from([
        ("DATABASE_URL".to_string(), db.url.clone()),
        ("PAYORCH_PROVIDER".to_string(), "sandbox".to_string()),
        (
            "PAYORCH_SECRETS_KEY".to_string(),
            payorch::sealing::SealingKey::generate()
                .encoded()
                .expose()
                .to_owned(),
        ),
        (
            "PAYSTACK_SECRET_KEY".to_string(),
            payorch::config::SANDBOX_SECRET_KEY.to_string(),
        ),
        ("PAYORCH_HTTP_ADDR".to_string(), format!("127.0.0.1:{port}")),
        ("PAYORCH_RATE_LIMITS".to_string(), limits.to_string()),
        ("PAYORCH_REDIS_PREFIX".to_string(), name("bench")),
        ("PAYORCH_QUEUE_PREFIX".to_string(), name("bench")),
    ]);
    if redis {
        env.insert("REDIS_URL".into(), REDIS.into());
    }
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    let keys = api_keys(20, &env);
    let server = Payorch::spawn(&["serve"], &env);
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base).await;
    (server, base, keys)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn initialize_load(name: &str, base: &str, keys: &[String], concurrency: usize) -> Report {
    let body = json!({"amount": 10_000, "currency": "NGN", "email": "bench@example.com"});
    initialize_body_load(name, base, keys, concurrency, body).await
}

async fn initialize_body_load(
    name: &str,
    base: &str,
    keys: &[String],
    concurrency: usize,
    body: serde_json::Value,
) -> Report {
    let http = client();
    let base = base.to_owned();
    let keys: Arc<Vec<String>> = Arc::new(keys.to_vec());
    load(name, concurrency, seconds(), None, move |i| {
        let request = http
            .post(format!("{base}/v1/payments/initialize"))
            .bearer_auth(&keys[i % keys.len()])
            .json(&body);
        async move { request.send().await.is_ok_and(|r| r.status() == 201) }
    })
    .await
}

/// Initialize with a fresh Idempotency-Key per request (the key is
/// reserved with the payment and the answer stored with the checkout).
async fn initialize_keyed_load(
    name: &str,
    base: &str,
    keys: &[String],
    concurrency: usize,
) -> Report {
    let http = client();
    let base = base.to_owned();
    let keys: Arc<Vec<String>> = Arc::new(keys.to_vec());
    let body = json!({"amount": 10_000, "currency": "NGN", "email": "bench@example.com"});
    load(name, concurrency, seconds(), None, move |i| {
        let request = http
            .post(format!("{base}/v1/payments/initialize"))
            .bearer_auth(&keys[i % keys.len()])
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&body);
        async move { request.send().await.is_ok_and(|r| r.status() == 201) }
    })
    .await
}

/// Initialize through two connectors, Paystack first: healthy; then Paystack
/// failing (every call a 500) with its breaker open, so each payment goes
/// to Flutterwave; and Flutterwave pinned, for the dialect's own cost.
async fn failover(db: &BenchDb) -> [Report; 3] {
    let connections = 10;
    let (server, base, keys) = start_with(
        db,
        "",
        false,
        &[
            ("PAYORCH_PROVIDERS", "paystack,flutterwave"),
            ("PAYORCH_ROUTING", "NGN=paystack,flutterwave"),
            ("PAYORCH_BREAKER_OPEN_MS", "3600000"),
        ],
    )
    .await;
    let ngn = json!({"amount": 10_000, "currency": "NGN", "email": "bench@example.com"});
    let healthy = initialize_body_load(
        "POST initialize, primary healthy, 10 connections",
        &base,
        &keys,
        connections,
        ngn.clone(),
    )
    .await;
    let mut pinned_body = ngn.clone();
    pinned_body["provider"] = json!("flutterwave");
    let pinned = initialize_body_load(
        "POST initialize, flutterwave pinned, 10 connections",
        &base,
        &keys,
        connections,
        pinned_body,
    )
    .await;
    let http = client();
    let faulted = http
        .post(format!("{base}/sandbox/_control/faults"))
        .bearer_auth(payorch::config::SANDBOX_SECRET_KEY)
        .json(&json!({"provider": "paystack", "operation": "initialize", "mode": "error", "count": 1_000_000_000u32}))
        .send()
        .await
        .unwrap();
    assert_eq!(faulted.status(), 204, "faulting the sandbox's Paystack");
    // Five failures open the breaker (each of these fails over).
    for _ in 0..10 {
        let response = http
            .post(format!("{base}/v1/payments/initialize"))
            .bearer_auth(&keys[0])
            .json(&ngn)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "failover answers");
    }
    let open = initialize_body_load(
        "POST initialize, primary failing, breaker open, 10 connections",
        &base,
        &keys,
        connections,
        ngn,
    )
    .await;
    server.terminate();
    [healthy, pinned, open]
}

#[tokio::main]
async fn main() {
    payorch::install_crypto_provider();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "payorch bench-api: {CONCURRENCY} connections, {} s per scenario, {cores} cores, everything on this machine\n",
        seconds().as_secs()
    );
    let generous = "initialize=100000000/60,verify=100000000/60,unauthenticated=100000000/60";

    let db = BenchDb::create().await;
    let (server, base, keys) = start(&db, generous, true).await;
    let http = client();

    let floor = {
        let http = http.clone();
        let base = base.clone();
        load(
            "GET /healthz (floor)",
            CONCURRENCY,
            seconds(),
            None,
            move |_| {
                let request = http.get(format!("{base}/healthz"));
                async move { request.send().await.is_ok_and(|r| r.status() == 200) }
            },
        )
        .await
    };

    let evalsha_before = redis_calls("evalsha") + redis_calls("eval");
    let limited = initialize_load(
        "POST initialize, limiter on (Redis)",
        &base,
        &keys,
        CONCURRENCY,
    )
    .await;
    let evalsha = redis_calls("evalsha") + redis_calls("eval") - evalsha_before;
    let per_request = evalsha as f64 / (limited.latencies_us.len() + limited.failures) as f64;

    // Payments to verify and read: pending ones, as a client would poll them.
    let mut references = Vec::new();
    for i in 0..500 {
        let response: serde_json::Value = http
            .post(format!("{base}/v1/payments/initialize"))
            .bearer_auth(&keys[i % keys.len()])
            .json(&json!({"amount": 10_000, "currency": "NGN", "email": "bench@example.com"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let reference = response["reference"]
            .as_str()
            .unwrap_or_else(|| panic!("initialize answered {response}"))
            .to_owned();
        references.push((i % keys.len(), reference));
    }
    let references = Arc::new(references);
    let verify = {
        let (http, base, keys, references) =
            (http.clone(), base.clone(), keys.clone(), references.clone());
        load(
            "POST verify (pending, asks the sandbox)",
            CONCURRENCY,
            seconds(),
            None,
            move |i| {
                let (k, reference) = &references[i % references.len()];
                let request = http
                    .post(format!("{base}/v1/payments/{reference}/verify"))
                    .bearer_auth(&keys[*k]);
                async move { request.send().await.is_ok_and(|r| r.status() == 200) }
            },
        )
        .await
    };
    let get = {
        let (http, base, keys, references) =
            (http.clone(), base.clone(), keys.clone(), references.clone());
        load(
            "GET payment (with transitions)",
            CONCURRENCY,
            seconds(),
            None,
            move |i| {
                let (k, reference) = &references[i % references.len()];
                let request = http
                    .get(format!("{base}/v1/payments/{reference}"))
                    .bearer_auth(&keys[*k]);
                async move { request.send().await.is_ok_and(|r| r.status() == 200) }
            },
        )
        .await
    };
    let light_on = initialize_load(
        "POST initialize, limiter on, 10 connections",
        &base,
        &keys,
        10,
    )
    .await;
    let rss = rss_mib(server.pid());
    server.terminate();

    // The same route with no limiter at all, same database, same machine.
    let (server, base, keys) = start(&db, "", false).await;
    let unlimited =
        initialize_load("POST initialize, limiter off", &base, &keys, CONCURRENCY).await;
    let light_off = initialize_load(
        "POST initialize, limiter off, 10 connections",
        &base,
        &keys,
        10,
    )
    .await;
    let keyed = initialize_keyed_load(
        "POST initialize with Idempotency-Key, limiter off",
        &base,
        &keys,
        CONCURRENCY,
    )
    .await;
    let keyed_light = initialize_keyed_load(
        "POST initialize with Idempotency-Key, limiter off, 10 connections",
        &base,
        &keys,
        10,
    )
    .await;
    server.terminate();

    // The limiter's own round trip, from this process: what it adds to a
    // request when the machine is not saturated by everything else.
    let limiter = Arc::new(
        payorch::ratelimit::redis::RedisLimiter::new(REDIS, &name("bench"), Duration::from_secs(1))
            .unwrap(),
    );
    let policy = payorch::ratelimit::RateLimitPolicy {
        limit: 100_000_000,
        window: Duration::from_secs(60),
    };
    let check = |label: &'static str, concurrency: usize| {
        let limiter = limiter.clone();
        load(label, concurrency, seconds(), None, move |i| {
            let limiter = limiter.clone();
            async move {
                let identity = format!("client-{}", i % 20);
                limiter
                    .check(payorch::ratelimit::Route::Initialize, policy, &identity)
                    .await
                    .is_ok_and(|d| d.allowed)
            }
        })
    };
    let check_one = check("limiter check alone (EVALSHA), 1 caller", 1).await;
    let check_many = check("limiter check alone (EVALSHA), 100 callers", CONCURRENCY).await;
    let [healthy, pinned, open] = failover(&db).await;

    println!("{HEADER}");
    for report in [
        &floor,
        &limited,
        &unlimited,
        &light_on,
        &light_off,
        &keyed,
        &keyed_light,
        &verify,
        &get,
        &check_one,
        &check_many,
        &healthy,
        &pinned,
        &open,
    ] {
        println!("{}", report.row(Some(&floor)));
    }
    println!();
    println!(
        "failover with the breaker open: p50 {:+.2} ms, p99 {:+.2} ms against the primary healthy; \
         p50 {:+.2} ms, p99 {:+.2} ms against Flutterwave pinned",
        open.percentile(50.0) - healthy.percentile(50.0),
        open.percentile(99.0) - healthy.percentile(99.0),
        open.percentile(50.0) - pinned.percentile(50.0),
        open.percentile(99.0) - pinned.percentile(99.0),
    );
    println!();
    println!(
        "limiter cost on initialize: p50 {:+.2} ms, p99 {:+.2} ms (on minus off)",
        limited.percentile(50.0) - unlimited.percentile(50.0),
        limited.percentile(99.0) - unlimited.percentile(99.0),
    );
    println!(
        "Redis commands per limited request (INFO commandstats, eval+evalsha): {per_request:.3}"
    );
    println!("API resident memory after the run: {rss:.0} MiB");
}
