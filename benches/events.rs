//! `make bench-events`: merchant event delivery. 10,000 state changes
//! (payments initialized: each writes `payment.pending` in its
//! transaction), each fanned out to the 10 endpoints of its client, all
//! receivers on this machine.
//!
//! 1. Throughput: the changes are made with no worker running, so the
//!    outbox holds all of them; then one `payorch worker` relays and
//!    delivers the 100,000 deliveries: deliveries/s.
//! 2. Latency at a steady rate: with the worker running, changes are made
//!    at a fixed pace; per delivery, the time from the event's
//!    `created_at` (written just before its transaction commits) to its
//!    receipt: p50/p99.
//!
//! 3. Fairness: one merchant with 20 endpoints that never answer and 1,000
//!    changes made as fast as they go, while another merchant with one
//!    healthy endpoint makes 50 changes/s: the healthy merchant's
//!    commit-to-receipt p50/p99 (target: p99 under 1 s).
//!
//! Beside them, RabbitMQ's own confirmed-publish rate in the same run.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::*;
use poem::{EndpointExt, Route, Server, handler, http::StatusCode, web::Data};
use serde_json::json;

const CHANGES: usize = 10_000;
const ENDPOINTS: usize = 10;
const SENDERS: usize = 50;
/// Phase 2: changes per second, and for how long.
const PACE: usize = 200;
const PACED_SECONDS: usize = 10;
/// Phase 3: the hanging merchant's endpoints and changes; the healthy
/// merchant's pace and for how long.
const HANGING_ENDPOINTS: usize = 20;
const HANGING_CHANGES: usize = 1_000;
const FAIR_PACE: usize = 50;
const FAIR_SECONDS: usize = 20;

#[derive(Default)]
struct Tally {
    received: usize,
    /// Commit-to-receipt per delivery (phase 2 only), milliseconds.
    latencies_ms: Vec<f64>,
    measuring: bool,
}

#[handler]
fn receive(body: String, tally: Data<&Arc<Mutex<Tally>>>) -> StatusCode {
    let mut tally = tally.lock().unwrap();
    tally.received += 1;
    if tally.measuring
        && let Some(created) = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|e| e["created_at"].as_str().map(str::to_owned))
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(&at).ok())
    {
        let ms = (chrono::Utc::now() - created.to_utc())
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1000.0;
        tally.latencies_ms.push(ms);
    }
    StatusCode::NO_CONTENT
}

/// An endpoint that never answers (until the sender gives up).
#[handler]
async fn hang() -> StatusCode {
    std::future::pending::<()>().await;
    StatusCode::NO_CONTENT
}

/// Serves `routes` on a free local port; its address.
async fn listen(routes: impl poem::Endpoint + 'static) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    tokio::spawn(Server::new_with_acceptor(acceptor).run(routes));
    addr
}

/// Registers `url` for the client of `key`.
async fn register(http: &reqwest::Client, base: &str, key: &str, url: String) {
    let created = http
        .post(format!("{base}/v1/webhook-endpoints"))
        .bearer_auth(key)
        .json(&json!({ "url": url }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
}

/// One `POST initialize` for the client of `key`, as a task: whether it
/// was created.
fn initialize_for(http: &reqwest::Client, base: &str, key: &str) -> tokio::task::JoinHandle<bool> {
    let request = http
        .post(format!("{base}/v1/payments/initialize"))
        .bearer_auth(key)
        .json(&json!({"amount": 10_000, "currency": "NGN", "email": "b@example.com"}));
    tokio::spawn(async move { request.send().await.is_ok_and(|r| r.status() == 201) })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn wait_for(tally: &Mutex<Tally>, count: usize, limit: Duration) -> Duration {
    let started = Instant::now();
    while tally.lock().unwrap().received < count {
        assert!(
            started.elapsed() < limit,
            "only {} of {count} deliveries arrived",
            tally.lock().unwrap().received
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Of the events made since `from`, the time from their `created_at` to
/// their `published_at` (the relay's round, up to the queue's confirm):
/// p50 and p99, milliseconds.
async fn relay_share(url: &str, from: chrono::DateTime<chrono::Utc>) -> (f64, f64) {
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(url).await.unwrap();
    let sql = format!(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) \
         FROM (SELECT extract(epoch FROM published_at - created_at)::float8 * 1000 AS ms \
               FROM events WHERE created_at >= '{}' AND published_at IS NOT NULL) relayed",
        from.to_rfc3339()
    );
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    let share = (
        row.try_get_by_index::<f64>(0).unwrap_or(f64::NAN),
        row.try_get_by_index::<f64>(1).unwrap_or(f64::NAN),
    );
    let _ = db.close().await;
    share
}

#[tokio::main]
async fn main() {
    payorch::install_crypto_provider();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "payorch bench-events: {CHANGES} changes × {ENDPOINTS} endpoints, {cores} cores, everything on this machine\n"
    );
    let db = BenchDb::create().await;
    let prefix = name("bench");
    let port = free_port();
    let env = bench_env(
        &db.url,
        &prefix,
        port,
        &[("PAYORCH_ALLOW_PRIVATE_ENDPOINTS", "true")],
    );
    let mut keys = api_keys(3, &env);
    let (key, hanging_key, fair_key) = (keys.remove(0), keys.remove(0), keys.remove(0));
    let server = Payorch::spawn(&["serve"], &env);
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(SENDERS)
        .build()
        .unwrap();

    let tally = Arc::new(Mutex::new(Tally::default()));
    for _ in 0..ENDPOINTS {
        let addr = listen(
            Route::new()
                .at("/", poem::post(receive))
                .data(tally.clone()),
        )
        .await;
        register(&http, &base, &key, format!("http://{addr}/")).await;
    }

    let sample_len = 900;
    let ceiling = broker_ceiling(&prefix, sample_len, CHANGES * ENDPOINTS / 10, 100).await;

    // 1. Fill the outbox, then one worker drains it.
    let initialize = {
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        load(
            "POST initialize (each writes payment.pending)",
            SENDERS,
            Duration::from_secs(600),
            Some(CHANGES),
            move |_| {
                let request = http
                    .post(format!("{base}/v1/payments/initialize"))
                    .bearer_auth(&key)
                    .json(&json!({"amount": 10_000, "currency": "NGN", "email": "b@example.com"}));
                async move { request.send().await.is_ok_and(|r| r.status() == 201) }
            },
        )
        .await
    };
    let deliveries = CHANGES * ENDPOINTS;
    let worker = Payorch::spawn(&["worker"], &env);
    let worker_cpu_before = cpu_time(worker.pid());
    let postgres_before = cpu_by_pid("postgres");
    let drained = wait_for(&tally, deliveries, Duration::from_secs(900)).await;
    let worker_cpu = cpu_time(worker.pid()) - worker_cpu_before;
    let postgres_cpu = cpu_since("postgres", &postgres_before);
    let rate = deliveries as f64 / drained.as_secs_f64();

    // 2. A steady pace with the worker running.
    let paced_from = chrono::Utc::now();
    tally.lock().unwrap().measuring = true;
    let paced = PACE * PACED_SECONDS;
    let mut every = tokio::time::interval(Duration::from_secs(1) / PACE as u32);
    let mut sent = Vec::new();
    for _ in 0..paced {
        every.tick().await;
        let request = http
            .post(format!("{base}/v1/payments/initialize"))
            .bearer_auth(&key)
            .json(&json!({"amount": 10_000, "currency": "NGN", "email": "b@example.com"}));
        sent.push(tokio::spawn(async move {
            request.send().await.is_ok_and(|r| r.status() == 201)
        }));
    }
    for call in sent {
        assert!(call.await.unwrap(), "a paced initialize failed");
    }
    wait_for(
        &tally,
        deliveries + paced * ENDPOINTS,
        Duration::from_secs(300),
    )
    .await;
    let mut latencies = std::mem::take(&mut tally.lock().unwrap().latencies_ms);
    latencies.sort_by(f64::total_cmp);
    let relayed = relay_share(&db.url, paced_from).await;

    // 3. One merchant's hanging endpoints beside another's healthy one.
    let hanging = listen(Route::new().at("/:n", poem::post(hang))).await;
    for n in 0..HANGING_ENDPOINTS {
        register(&http, &base, &hanging_key, format!("http://{hanging}/{n}")).await;
    }
    let fair_tally = Arc::new(Mutex::new(Tally {
        measuring: true,
        ..Tally::default()
    }));
    let fair = listen(
        Route::new()
            .at("/", poem::post(receive))
            .data(fair_tally.clone()),
    )
    .await;
    register(&http, &base, &fair_key, format!("http://{fair}/")).await;
    let flood = {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move {
            let mut made = 0;
            for _ in 0..HANGING_CHANGES / SENDERS {
                let calls: Vec<_> = (0..SENDERS)
                    .map(|_| initialize_for(&http, &base, &hanging_key))
                    .collect();
                for call in calls {
                    made += usize::from(call.await.unwrap());
                }
            }
            made
        })
    };
    let fair_changes = FAIR_PACE * FAIR_SECONDS;
    let mut every = tokio::time::interval(Duration::from_secs(1) / FAIR_PACE as u32);
    let mut sent = Vec::new();
    for _ in 0..fair_changes {
        every.tick().await;
        sent.push(initialize_for(&http, &base, &fair_key));
    }
    for call in sent {
        assert!(call.await.unwrap(), "a paced initialize failed");
    }
    let flooded = flood.await.unwrap();
    wait_for(&fair_tally, fair_changes, Duration::from_secs(300)).await;
    let mut fair_latencies = std::mem::take(&mut fair_tally.lock().unwrap().latencies_ms);
    fair_latencies.sort_by(f64::total_cmp);

    worker.terminate();
    server.terminate();

    println!("{HEADER}");
    println!("{}", ceiling.row(None));
    println!("{}", initialize.row(None));
    println!();
    println!(
        "| measure | value |\n|---|---|\n\
         | deliveries drained by 1 worker | {deliveries} in {:.1} s |\n\
         | deliveries/s | {rate:.0} |\n\
         | vs RabbitMQ confirmed publishes/s ({:.0}) | {:.0}% |\n\
         | worker CPU per delivery | {:.0} µs |\n\
         | PostgreSQL CPU per delivery | {:.0} µs |\n\
         | paced: {PACE} changes/s × {ENDPOINTS} endpoints = {} deliveries/s, commit → receipt p50 | {:.1} ms |\n\
         | paced, p99 | {:.1} ms |\n\
         | paced, max | {:.1} ms |\n\
         | paced, of which commit → relayed (the event's `published_at`: its delivery confirmed by the queue) p50 / p99 | {:.1} / {:.1} ms |\n\
         | fairness: {flooded} changes × {HANGING_ENDPOINTS} hanging endpoints of one merchant; another's {FAIR_PACE} changes/s to one healthy endpoint, commit → receipt p50 | {:.1} ms |\n\
         | fairness, p99 (target < 1,000 ms) | {:.1} ms |\n\
         | fairness, max | {:.1} ms |",
        drained.as_secs_f64(),
        ceiling.rate(),
        100.0 * rate / ceiling.rate(),
        worker_cpu.as_micros() as f64 / deliveries as f64,
        postgres_cpu.as_micros() as f64 / deliveries as f64,
        PACE * ENDPOINTS,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        relayed.0,
        relayed.1,
        percentile(&fair_latencies, 0.50),
        percentile(&fair_latencies, 0.99),
        fair_latencies.last().copied().unwrap_or(f64::NAN),
    );

    delete_payorch_queues(&env).await;
}
