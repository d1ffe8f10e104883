//! `make bench-api`: the payment API at 100 concurrent connections on
//! PostgreSQL, with `GET /healthz` as the HTTP floor in the same run; the
//! rate limiter on (Redis) and off for the same route; Redis commands per
//! limited request from `INFO commandstats`. The sandbox runs as its own
//! process (`payorch sandbox`), and each scenario's CPU per request is
//! reported for payorch, the sandbox and PostgreSQL apart. Then pgbench
//! runs, on the same database, the SQL a `GET` and an initialize must do
//! (from payorch's pool size of connections): each endpoint's rate as a
//! share of its script's says how much of the cost is PostgreSQL's.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
    time::Duration,
};

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

/// payorch's database pool (its default): pgbench gets as many connections.
const POOL: usize = 20;

async fn start(
    db: &BenchDb,
    sandbox: &SandboxProcess,
    limits: &str,
    redis: bool,
) -> (Payorch, String, Vec<String>) {
    start_with(db, sandbox, limits, redis, &[]).await
}

async fn start_with(
    db: &BenchDb,
    sandbox: &SandboxProcess,
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
    sandbox.connect(&mut env);
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
async fn failover(db: &BenchDb, sandbox: &SandboxProcess) -> [Report; 3] {
    let connections = 10;
    let (server, base, keys) = start_with(
        db,
        sandbox,
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
        .post(format!("{}/_control/faults", sandbox.base))
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

/// What one scenario cost in CPU per successful request: payorch, the
/// sandbox, PostgreSQL (every backend, also those started meanwhile).
struct Cpu {
    payorch: f64,
    sandbox: f64,
    postgres: f64,
    /// The statements PostgreSQL ran per request (`pg_stat_statements`,
    /// when the server loads it).
    statements: Vec<String>,
}

/// The bench database, read for `pg_stat_statements` around each scenario.
static PROFILED: OnceLock<sea_orm::DatabaseConnection> = OnceLock::new();

/// Runs `scenario` and measures the CPU each side spent on it.
async fn with_cpu(
    payorch: u32,
    sandbox: u32,
    scenario: impl std::future::Future<Output = Report>,
) -> (Report, Cpu) {
    let profiled = match PROFILED.get() {
        Some(db) => statements_reset(db).await,
        None => false,
    };
    let (payorch_before, sandbox_before) = (cpu_time(payorch), cpu_time(sandbox));
    let postgres_before = cpu_by_pid("postgres");
    let report = scenario.await;
    let per_request =
        |spent: Duration| spent.as_micros() as f64 / report.latencies_us.len().max(1) as f64;
    let statements = match PROFILED.get() {
        Some(db) if profiled => statements_per_unit(db, report.latencies_us.len().max(1)).await,
        _ => Vec::new(),
    };
    let cpu = Cpu {
        statements,
        payorch: per_request(cpu_time(payorch).saturating_sub(payorch_before)),
        sandbox: per_request(cpu_time(sandbox).saturating_sub(sandbox_before)),
        postgres: per_request(cpu_since("postgres", &postgres_before)),
    };
    (report, cpu)
}

/// pgbench: a `GET`'s reads (the payment by its client and reference, its
/// transitions, its open review), for the 500 payments `get-0…get-499` of
/// client `:cid`.
const GET_SCRIPT: &str = r"\set i random(0, 499)
\set one 1
SELECT id, client_id, reference, client_reference, provider, amount, currency, email, status,
       failure_reason, authorization_url, access_code, metadata, version, created_at, updated_at,
       paid_at, refunded_amount, checked_at, earlier_connectors
  FROM payments
 WHERE client_id = :cid AND client_reference = 'get-' || :i::text
 LIMIT :one \gset p_
SELECT id, payment_id, from_status, to_status, cause, event_id, created_at
  FROM payment_transitions WHERE payment_id = :p_id ORDER BY id ASC;
SELECT id, kind, payment_id, refund_id, status, opened_at, detail, resolved_at, resolved_by,
       resolution, note, connector, reference
  FROM reviews
 WHERE payment_id = :p_id AND refund_id IS NULL AND status = 'open'
 ORDER BY opened_at ASC LIMIT :one;
";

/// pgbench: the writes an initialize must make, in its two transactions
/// (the payment and its first audit row; then the checkout: the versioned
/// update, its audit row and the merchant event in the outbox), without
/// the provider call between them. (`\x3a` is a colon: pgbench would read
/// `:name` in a string as a variable.)
const INITIALIZE_SCRIPT: &str = r"\set r random(1, 4611686018427387903)
BEGIN;
INSERT INTO payments (id, client_id, reference, client_reference, provider, amount, currency, email,
       status, failure_reason, authorization_url, access_code, metadata, version,
       created_at, updated_at, paid_at, refunded_amount, checked_at, earlier_connectors)
VALUES (md5(:r::text)::uuid, :cid, 'po-' || md5(:r::text), 'po-' || md5(:r::text), 'paystack',
       10000, 'NGN', 'bench@example.com', 'created', NULL, NULL, NULL, NULL, 0,
       now(), now(), NULL, 0, NULL, NULL)
ON CONFLICT (reference) DO NOTHING;
INSERT INTO payment_transitions (payment_id, from_status, to_status, cause, event_id, created_at)
VALUES (md5(:r::text)::uuid, 'new', 'created', E'initialize\x3acreated', NULL, now());
COMMIT;
BEGIN;
UPDATE payments
   SET status = 'pending', failure_reason = NULL,
       authorization_url = 'http://localhost/sandbox/checkout/ac_' || md5(:r::text || 'a'),
       access_code = 'ac_' || md5(:r::text || 'a'),
       version = 1, updated_at = now(), paid_at = NULL
 WHERE id = md5(:r::text)::uuid AND version = 0;
INSERT INTO payment_transitions (payment_id, from_status, to_status, cause, event_id, created_at)
VALUES (md5(:r::text)::uuid, 'created', 'pending', E'initialize\x3aprovider_accepted', NULL, now());
INSERT INTO events (id, client_id, type, payment_id, refund_id, body, created_at, published_at)
VALUES ('evt_' || md5(:r::text || 'e'), :cid, 'payment.pending', md5(:r::text)::uuid, NULL,
        repeat('x', 700), now(), NULL);
COMMIT;
";

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
    let _ = PROFILED.set(sea_orm::Database::connect(&db.url).await.unwrap());
    // Its webhooks are not needed here; no API listens at that address.
    let sandbox = SandboxProcess::start("http://127.0.0.1:9").await;
    let (server, base, keys) = start(&db, &sandbox, generous, true).await;
    let http = client();
    let pids = (server.pid(), sandbox.pid());

    let floor = {
        let http = http.clone();
        let base = base.clone();
        with_cpu(
            pids.0,
            pids.1,
            load(
                "GET /healthz (floor)",
                CONCURRENCY,
                seconds(),
                None,
                move |_| {
                    let request = http.get(format!("{base}/healthz"));
                    async move { request.send().await.is_ok_and(|r| r.status() == 200) }
                },
            ),
        )
        .await
    };

    let evalsha_before = redis_calls("evalsha") + redis_calls("eval");
    let limited = with_cpu(
        pids.0,
        pids.1,
        initialize_load(
            "POST initialize, limiter on (Redis)",
            &base,
            &keys,
            CONCURRENCY,
        ),
    )
    .await;
    let evalsha = redis_calls("evalsha") + redis_calls("eval") - evalsha_before;
    let per_request = evalsha as f64 / (limited.0.latencies_us.len() + limited.0.failures) as f64;

    // Payments to verify and read: pending ones, as a client would poll
    // them; one client's, under references pgbench's script knows.
    let mut references = Vec::new();
    for i in 0..500 {
        let response: serde_json::Value = http
            .post(format!("{base}/v1/payments/initialize"))
            .bearer_auth(&keys[0])
            .json(
                &json!({"amount": 10_000, "currency": "NGN", "email": "bench@example.com",
                          "reference": format!("get-{i}")}),
            )
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
        references.push(reference);
    }
    let references = Arc::new(references);
    let verify = {
        let (http, base, key, references) = (
            http.clone(),
            base.clone(),
            keys[0].clone(),
            references.clone(),
        );
        with_cpu(
            pids.0,
            pids.1,
            load(
                "POST verify (pending, asks the sandbox)",
                CONCURRENCY,
                seconds(),
                None,
                move |i| {
                    let reference = &references[i % references.len()];
                    let request = http
                        .post(format!("{base}/v1/payments/{reference}/verify"))
                        .bearer_auth(&key);
                    async move { request.send().await.is_ok_and(|r| r.status() == 200) }
                },
            ),
        )
        .await
    };
    let get = {
        let (http, base, key, references) = (
            http.clone(),
            base.clone(),
            keys[0].clone(),
            references.clone(),
        );
        with_cpu(
            pids.0,
            pids.1,
            load(
                "GET payment (with transitions)",
                CONCURRENCY,
                seconds(),
                None,
                move |i| {
                    let reference = &references[i % references.len()];
                    let request = http
                        .get(format!("{base}/v1/payments/{reference}"))
                        .bearer_auth(&key);
                    async move { request.send().await.is_ok_and(|r| r.status() == 200) }
                },
            ),
        )
        .await
    };
    let light_on = with_cpu(
        pids.0,
        pids.1,
        initialize_load(
            "POST initialize, limiter on, 10 connections",
            &base,
            &keys,
            10,
        ),
    )
    .await;
    let rss = rss_mib(server.pid());
    server.terminate();

    // The same route with no limiter at all, same database, same machine.
    let (server, base, keys) = start(&db, &sandbox, "", false).await;
    let pids = (server.pid(), sandbox.pid());
    let unlimited = with_cpu(
        pids.0,
        pids.1,
        initialize_load("POST initialize, limiter off", &base, &keys, CONCURRENCY),
    )
    .await;
    let light_off = with_cpu(
        pids.0,
        pids.1,
        initialize_load(
            "POST initialize, limiter off, 10 connections",
            &base,
            &keys,
            10,
        ),
    )
    .await;
    let keyed = with_cpu(
        pids.0,
        pids.1,
        initialize_keyed_load(
            "POST initialize with Idempotency-Key, limiter off",
            &base,
            &keys,
            CONCURRENCY,
        ),
    )
    .await;
    let keyed_light = with_cpu(
        pids.0,
        pids.1,
        initialize_keyed_load(
            "POST initialize with Idempotency-Key, limiter off, 10 connections",
            &base,
            &keys,
            10,
        ),
    )
    .await;
    server.terminate();

    // PostgreSQL alone doing what those requests need of it, from as many
    // connections as payorch's pool, on the same database.
    let client_id = {
        use sea_orm::{ConnectionTrait, Database, Statement};
        let pg = Database::connect(&db.url).await.unwrap();
        let row = pg
            .query_one_raw(Statement::from_string(
                pg.get_database_backend(),
                "SELECT id::text AS id FROM api_clients WHERE name = 'bench-0' \
                 ORDER BY created_at LIMIT 1",
            ))
            .await
            .unwrap()
            .expect("the bench's first client");
        row.try_get::<String>("", "id").unwrap()
    };
    let secs = seconds().as_secs();
    let get_tps = pgbench_tps(&db.name, GET_SCRIPT, POOL, secs, &[("cid", &client_id)]);
    let initialize_tps = pgbench_tps(
        &db.name,
        INITIALIZE_SCRIPT,
        POOL,
        secs,
        &[("cid", &client_id)],
    );

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
    let [healthy, pinned, open] = failover(&db, &sandbox).await;

    println!("{HEADER}");
    let measured = [
        &floor,
        &limited,
        &unlimited,
        &light_on,
        &light_off,
        &keyed,
        &keyed_light,
        &verify,
        &get,
    ];
    for (report, _) in measured {
        println!("{}", report.row(Some(&floor.0)));
    }
    for report in [&check_one, &check_many, &healthy, &pinned, &open] {
        println!("{}", report.row(Some(&floor.0)));
    }
    println!("\n| scenario | payorch CPU µs/request | sandbox | PostgreSQL |\n|---|---|---|---|");
    for (report, cpu) in measured {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} |",
            report.name, cpu.payorch, cpu.sandbox, cpu.postgres
        );
    }
    for (report, cpu) in measured {
        if !cpu.statements.is_empty() {
            println!(
                "\n{}: pg_stat_statements per request (calls, rows, execution)",
                report.name
            );
            for line in &cpu.statements {
                println!("{line}");
            }
        }
    }
    println!(
        "\nPostgreSQL alone, pgbench with {POOL} connections (payorch's pool), same database:\n\
         GET payment: {:.0}/s = {:.0} % of pgbench's {get_tps:.0} tps of its reads\n\
         initialize, limiter off: {:.0}/s = {:.0} % of pgbench's {initialize_tps:.0} tps of its writes",
        get.0.rate(),
        100.0 * get.0.rate() / get_tps,
        unlimited.0.rate(),
        100.0 * unlimited.0.rate() / initialize_tps,
    );
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
        limited.0.percentile(50.0) - unlimited.0.percentile(50.0),
        limited.0.percentile(99.0) - unlimited.0.percentile(99.0),
    );
    println!(
        "Redis commands per limited request (INFO commandstats, eval+evalsha): {per_request:.3}"
    );
    println!("API resident memory after the run: {rss:.0} MiB");
}
