//! `make bench-console`: the operator console's server time with
//! 1,000,000 payments seeded (two transitions, a merchant event, its
//! delivery attempt and a provider call each; 20 merchants with an
//! endpoint each; statuses spread independently of merchants; 10,000
//! reviews, 1,000 of them open). Each page's
//! requests and each kind of payment search are asked 300 times in turn
//! by one operator, and the bench prints the server time of each (p50 and
//! p99 of `Server-Timing` `app` + `provider`), and the database time (`db`),
//! beside this machine's floor: a `SELECT 1` round trip to PostgreSQL and
//! payorch's own `GET /healthz`. Targets: p99 < 50 ms for every page and
//! search; the overview's refresh costs the database < 5 ms.

mod common;

use std::{collections::HashMap, time::Instant};

use common::*;
use rand::Rng;
use sea_orm::{ConnectionTrait, Database};

const PAYMENTS: i64 = 1_000_000;
const CLIENTS: i64 = 20;
const EMAILS: i64 = 50_000;
const SAMPLES: usize = 300;
const WARMUP: usize = 20;

/// A seeded client's id (`1..=CLIENTS`), as the seed SQL writes it.
fn client_id(n: i64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// The seed, in statements (each timed).
fn seed() -> Vec<(&'static str, String)> {
    let client = "('00000000-0000-4000-8000-' || lpad(to_hex(1 + i % 20), 12, '0'))::uuid";
    let at = "now() - i * interval '2 seconds'";
    vec![
        (
            "20 API clients",
            format!(
                "INSERT INTO api_clients (id, name, key_hash, created_at)
                 SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(c), 12, '0'))::uuid,
                        'merchant-' || c, md5('key' || c) || md5('hash' || c), now() - interval '90 days'
                 FROM generate_series(1, {CLIENTS}) c"
            ),
        ),
        (
            "1,000,000 payments",
            format!(
                "INSERT INTO payments (id, client_id, reference, client_reference, provider, amount,
                                       currency, email, status, version, created_at, updated_at,
                                       refunded_amount, metadata)
                 SELECT md5('p' || i)::uuid, {client}, 'pay-' || i, 'order-' || i,
                        CASE WHEN i % 3 = 0 THEN 'flutterwave' ELSE 'paystack' END,
                        1000 + i % 50000, 'NGN', 'customer' || (i % {EMAILS}) || '@example.com',
                        (ARRAY['succeeded','succeeded','succeeded','succeeded','succeeded',
                               'succeeded','failed','pending','abandoned','refunded'])
                            [1 + abs(hashint4(i)) % 10],
                        2, {at}, {at} + interval '30 seconds', 0, json_build_object('order', i)
                 FROM generate_series(1, {PAYMENTS}) i"
            ),
        ),
        (
            "2,000,000 transitions",
            format!(
                "INSERT INTO payment_transitions (payment_id, from_status, to_status, cause, created_at)
                 SELECT md5('p' || i)::uuid, 'new', 'created', 'initialize:created', {at}
                 FROM generate_series(1, {PAYMENTS}) i
                 UNION ALL
                 SELECT md5('p' || i)::uuid, 'created', 'pending', 'initialize:provider_accepted',
                        {at} + interval '1 second'
                 FROM generate_series(1, {PAYMENTS}) i"
            ),
        ),
        (
            "1,000,000 provider calls",
            format!(
                "INSERT INTO provider_calls (reference, connector, operation, started_at, duration_ms, outcome)
                 SELECT 'pay-' || i, CASE WHEN i % 3 = 0 THEN 'flutterwave' ELSE 'paystack' END,
                        'initialize', {at}, 20 + i % 200, 'ok'
                 FROM generate_series(1, {PAYMENTS}) i"
            ),
        ),
        (
            "1,000,000 merchant events",
            format!(
                "INSERT INTO events (id, client_id, type, payment_id, body, created_at, published_at)
                 SELECT 'evt_' || md5('e' || i), {client}, 'payment.pending', md5('p' || i)::uuid,
                        '{{\"type\":\"payment.pending\",\"data\":{{\"reference\":\"order-' || i || '\"}}}}',
                        {at}, {at}
                 FROM generate_series(1, {PAYMENTS}) i"
            ),
        ),
        (
            "20 endpoints",
            format!(
                "INSERT INTO webhook_endpoints (id, client_id, url, event_types, enabled, secret,
                                                created_at, updated_at)
                 SELECT ('10000000-0000-4000-8000-' || lpad(to_hex(c), 12, '0'))::uuid,
                        ('00000000-0000-4000-8000-' || lpad(to_hex(c), 12, '0'))::uuid,
                        'https://merchant-' || c || '.example.com/hooks', '[]', true, 'whsec_unused',
                        now(), now()
                 FROM generate_series(1, {CLIENTS}) c"
            ),
        ),
        (
            "1,000,000 delivery attempts",
            format!(
                "INSERT INTO event_attempts (event_id, endpoint_id, attempt, at, status, response_status,
                                             duration_ms)
                 SELECT 'evt_' || md5('e' || i),
                        ('10000000-0000-4000-8000-' || lpad(to_hex(1 + i % 20), 12, '0'))::uuid, 1,
                        {at} + interval '1 second',
                        CASE WHEN i % 20 = 1 AND i < 4000 THEN 'failed' ELSE 'delivered' END,
                        CASE WHEN i % 20 = 1 AND i < 4000 THEN 500 ELSE 200 END, 15
                 FROM generate_series({PAYMENTS}, 1, -1) i"
            ),
        ),
        (
            "10,000 reviews (1,000 open)",
            "INSERT INTO reviews (id, kind, payment_id, status, opened_at, detail, resolved_at,
                                  resolved_by, resolution, note)
             SELECT md5('r' || i)::uuid,
                    (ARRAY['paid_after_final','amount_mismatch','unknown_transaction',
                           'charged_at_other_connector'])[1 + i % 4],
                    md5('p' || (i * 97))::uuid,
                    CASE WHEN i <= 1000 THEN 'open' ELSE 'resolved' END,
                    now() - i * interval '1 minute', '{}',
                    CASE WHEN i <= 1000 THEN NULL ELSE now() END,
                    CASE WHEN i <= 1000 THEN NULL ELSE 'operator:bench' END,
                    CASE WHEN i <= 1000 THEN NULL ELSE 'dismiss' END, NULL
             FROM generate_series(1, 10000) i"
                .to_owned(),
        ),
        ("ANALYZE", "ANALYZE".to_owned()),
    ]
}

/// Percentile `p` (0–100) of `values`, sorted.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// `name;dur=X` of a `Server-Timing` header.
fn timing(header: &str, name: &str) -> f64 {
    header
        .split(',')
        .map(str::trim)
        .find_map(|part| part.strip_prefix(&format!("{name};dur=")))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in {header}"))
}

struct Timed {
    server: Vec<f64>,
    db: Vec<f64>,
}

/// Asks `path` (a fresh path per call) `SAMPLES` times after `WARMUP`.
async fn measure(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    mut path: impl FnMut() -> String,
) -> Timed {
    let mut timed = Timed {
        server: Vec::with_capacity(SAMPLES),
        db: Vec::with_capacity(SAMPLES),
    };
    for i in 0..WARMUP + SAMPLES {
        let path = path();
        let response = http
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let header = response.headers()["server-timing"]
            .to_str()
            .unwrap()
            .to_owned();
        let _ = response.bytes().await.unwrap();
        if i >= WARMUP {
            timed
                .server
                .push(timing(&header, "app") + timing(&header, "provider"));
            timed.db.push(timing(&header, "db"));
        }
    }
    timed
}

#[tokio::main]
async fn main() {
    payorch::install_crypto_provider();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "payorch bench-console: {PAYMENTS} payments seeded, {SAMPLES} requests per row, one at a time, {cores} cores\n"
    );
    let db = BenchDb::create().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = HashMap::from([
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
        ("PAYORCH_QUEUE_PREFIX".to_string(), name("bench")),
        // With RabbitMQ, `serve` is the API alone, as deployed beside
        // workers: without it, it would also sweep the 100,000 seeded
        // pending payments and deliver their events while being measured.
        ("AMQP_URL".to_string(), AMQP.to_string()),
    ]);
    Payorch::run(&["migrate"], &env);
    let pg = Database::connect(&db.url).await.unwrap();
    let seeding = Instant::now();
    for (what, sql) in seed() {
        let started = Instant::now();
        pg.execute_unprepared(&sql).await.unwrap();
        println!(
            "seed: {what:<30} {:>7.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    println!(
        "seed: {:<30} {:>7.1} s\n",
        "in all",
        seeding.elapsed().as_secs_f64()
    );

    Payorch::run(&["operator", "create", "--name", "bench"], &env);
    let token = Payorch::run(&["operator", "token", "bench"], &env)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    let server = Payorch::spawn(&["serve"], &env);
    wait_healthy(&base).await;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    // A live API has published webhooks, so it holds a publishing
    // connection the overview reads queue depths over: one webhook here.
    let webhook = serde_json::json!({"event": "charge.success", "data": {"id": 1,
        "reference": "no-such-payment", "amount": 100, "currency": "NGN", "status": "success"}})
    .to_string();
    let signature = payorch::provider::paystack::sign_webhook(
        payorch::config::SANDBOX_SECRET_KEY.as_bytes(),
        webhook.as_bytes(),
    );
    let published = http
        .post(format!("{base}/v1/webhooks/paystack"))
        .header("content-type", "application/json")
        .header("x-paystack-signature", signature)
        .body(webhook)
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200, "the webhook is queued");

    // The floor: a PostgreSQL round trip, and payorch's cheapest answer.
    let mut select_one = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        pg.execute_unprepared("SELECT 1").await.unwrap();
        select_one.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let healthz = measure(&http, &base, &token, || "/healthz".to_owned()).await;

    let any = |n: i64| rand::rng().random_range(1..=n);
    let ten_days_ago = chrono::Utc::now() - chrono::Duration::days(10);
    let hour = |from: chrono::DateTime<chrono::Utc>| {
        let at =
            |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        format!(
            "from={}&to={}",
            at(from),
            at(from + chrono::Duration::hours(1))
        )
    };
    let second_page = {
        let first: serde_json::Value = http
            .get(format!("{base}/v1/operator/payments?status=succeeded"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        first["next_before"].as_str().unwrap().to_owned()
    };

    type Path = Box<dyn FnMut() -> String>;
    let any_payment = {
        let ids: Vec<String> = pg
            .query_all_raw(sea_orm::Statement::from_string(
                pg.get_database_backend(),
                format!(
                    "SELECT id::text AS id FROM payments TABLESAMPLE SYSTEM (1) LIMIT {}",
                    WARMUP + SAMPLES
                ),
            ))
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get::<String>("", "id").unwrap())
            .collect();
        let mut next = 0;
        move || {
            next += 1;
            format!("/v1/operator/payments/{}", ids[(next - 1) % ids.len()])
        }
    };
    let rows: Vec<(&str, Path)> = vec![
        (
            "page: overview (one refresh)",
            Box::new(|| "/v1/operator/overview".into()),
        ),
        (
            "page: payments (newest 50)",
            Box::new(|| "/v1/operator/payments".into()),
        ),
        ("page: a payment and its timeline", Box::new(any_payment)),
        (
            "page: reviews (open, 100)",
            Box::new(|| "/v1/operator/reviews?open=true&limit=100".into()),
        ),
        (
            "page: dead letters",
            Box::new(|| "/v1/operator/dead-letters?limit=100".into()),
        ),
        (
            "page: endpoints (20, streaks)",
            Box::new(|| "/v1/operator/endpoints".into()),
        ),
        (
            "page: API clients",
            Box::new(|| "/v1/operator/clients".into()),
        ),
        (
            "page: connectors",
            Box::new(|| "/v1/operator/connectors".into()),
        ),
        (
            "page: audit log (100)",
            Box::new(|| "/v1/operator/audit?limit=100".into()),
        ),
        (
            "search: client's reference",
            Box::new(move || format!("/v1/operator/payments?reference=order-{}", any(PAYMENTS))),
        ),
        (
            "search: provider reference",
            Box::new(move || format!("/v1/operator/payments?reference=pay-{}", any(PAYMENTS))),
        ),
        (
            "search: email (20 payments)",
            Box::new(move || {
                format!(
                    "/v1/operator/payments?email=customer{}@example.com",
                    any(EMAILS) - 1
                )
            }),
        ),
        (
            "search: status=pending",
            Box::new(|| "/v1/operator/payments?status=pending".into()),
        ),
        (
            "search: connector=flutterwave",
            Box::new(|| "/v1/operator/payments?connector=flutterwave".into()),
        ),
        (
            "search: one client",
            Box::new(move || {
                format!(
                    "/v1/operator/payments?client_id={}",
                    client_id(any(CLIENTS))
                )
            }),
        ),
        (
            "search: client + status=failed",
            Box::new(move || {
                format!(
                    "/v1/operator/payments?status=failed&client_id={}",
                    client_id(any(CLIENTS))
                )
            }),
        ),
        (
            "search: one hour, 10 days ago",
            Box::new(move || format!("/v1/operator/payments?{}", hour(ten_days_ago))),
        ),
        (
            "search: next page (before=…)",
            Box::new(move || {
                format!("/v1/operator/payments?status=succeeded&before={second_page}")
            }),
        ),
    ];

    let floor_db = percentile(&mut select_one.clone(), 50.0);
    let mut healthz_server = healthz.server.clone();
    println!(
        "floor: SELECT 1 round trip p50 {:.3} ms, p99 {:.3} ms; GET /healthz server p50 {:.3} ms, p99 {:.3} ms\n",
        floor_db,
        percentile(&mut select_one, 99.0),
        percentile(&mut healthz_server.clone(), 50.0),
        percentile(&mut healthz_server, 99.0),
    );
    println!(
        "{:<36} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "request", "server p50", "server p99", "db p50", "db p99", "db p50/floor"
    );
    let mut worst: f64 = 0.0;
    for (name, mut path) in rows {
        let mut timed = measure(&http, &base, &token, &mut path).await;
        let (p50, p99) = (
            percentile(&mut timed.server, 50.0),
            percentile(&mut timed.server, 99.0),
        );
        let (db50, db99) = (
            percentile(&mut timed.db, 50.0),
            percentile(&mut timed.db, 99.0),
        );
        worst = worst.max(p99);
        println!(
            "{name:<36} {p50:>7.2} ms {p99:>7.2} ms {db50:>7.2} ms {db99:>7.2} ms {:>11.1}x",
            db50 / floor_db
        );
    }
    println!(
        "\nworst p99: {worst:.2} ms (target < 50 ms); overview db per refresh: see its row (target < 5 ms)"
    );
    // Its keep-alive connections would hold the server's graceful shutdown.
    drop(http);
    server.terminate();
    drop(pg);
    delete_payorch_queues(&env).await;
}
