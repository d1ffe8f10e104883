//! `make bench-reconcile`: `payorch reconcile` over 10,000 stale pending
//! payments against the sandbox — payments per second and provider calls
//! per payment (must be 1.0) — beside the sandbox's own verify rate in the
//! same run, at the sweep's own concurrency; then, every one of them paid
//! at the sandbox, one settlement pass (`reconcile --settlement`):
//! transactions per second and provider calls per transaction.

mod common;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use common::*;
use serde_json::json;

const PAYMENTS: usize = 10_000;
const SECRET: &str = payorch::config::SANDBOX_SECRET_KEY;

#[tokio::main]
async fn main() {
    payorch::install_crypto_provider();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "payorch bench-reconcile: {PAYMENTS} stale payments, {cores} cores, everything on this machine\n"
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
        (
            "PAYORCH_RATE_LIMITS".to_string(),
            "initialize=100000000/60".to_string(),
        ),
        ("PAYORCH_QUEUE_PREFIX".to_string(), name("bench")),
    ]);
    let keys = api_keys(1, &env);
    let server = Payorch::spawn(&["serve"], &env);
    wait_healthy(&base).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let references = Arc::new(std::sync::Mutex::new(Vec::with_capacity(PAYMENTS)));
    let created =
        {
            let (http, base, key, references) = (
                http.clone(),
                base.clone(),
                keys[0].clone(),
                references.clone(),
            );
            load(
                "initialize (setup)",
                32,
                Duration::from_secs(3600),
                Some(PAYMENTS),
                move |_| {
                    let request = http
                .post(format!("{base}/v1/payments/initialize"))
                .bearer_auth(&key)
                .json(&json!({"amount": 1_000, "currency": "NGN", "email": "bench@example.com"}));
                    let references = references.clone();
                    async move {
                        let Ok(response) = request.send().await else {
                            return false;
                        };
                        let Ok(body) = response.json::<serde_json::Value>().await else {
                            return false;
                        };
                        let Some(reference) = body["reference"].as_str() else {
                            return false;
                        };
                        references.lock().unwrap().push(reference.to_owned());
                        true
                    }
                },
            )
            .await
        };
    assert_eq!(created.failures, 0, "setup failed");
    let references = Arc::new(references.lock().unwrap().clone());

    // The sandbox alone, at the sweep's concurrency: its verify rate.
    let sandbox = {
        let (http, base, references) = (http.clone(), base.clone(), references.clone());
        load(
            "sandbox verify alone",
            payorch::payments::reconcile::CONCURRENCY,
            Duration::from_secs(3600),
            Some(PAYMENTS),
            move |i| {
                let request = http
                    .get(format!(
                        "{base}/sandbox/transaction/verify/{}",
                        references[i % references.len()]
                    ))
                    .bearer_auth(SECRET);
                async move { request.send().await.is_ok_and(|r| r.status() == 200) }
            },
        )
        .await
    };
    let stats = || async {
        http.get(format!("{base}/sandbox/_control/stats"))
            .bearer_auth(SECRET)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()["verify_calls"]
            .as_u64()
            .unwrap()
    };
    let before = stats().await;
    let mut reconcile_env = env.clone();
    reconcile_env.insert("PAYSTACK_BASE_URL".into(), format!("{base}/sandbox/"));
    // Stale: an hour old, past a threshold startup accepts.
    reconcile_env.insert("PAYORCH_RECONCILE_AFTER_S".into(), "60".into());
    use sea_orm::ConnectionTrait;
    sea_orm::Database::connect(db.url.as_str())
        .await
        .unwrap()
        .execute_unprepared("UPDATE payments SET created_at = created_at - interval '1 hour'")
        .await
        .unwrap();
    let started = Instant::now();
    let printed = Payorch::run(&["reconcile"], &reconcile_env);
    let took = started.elapsed();
    let calls = stats().await - before;
    let summary = printed.lines().last().unwrap_or("").to_owned();

    // Settlement: every transaction paid at the sandbox (quietly: no
    // webhook), then one pass over the listing settles them all.
    let paid = {
        let (http, base, references) = (http.clone(), base.clone(), references.clone());
        load(
            "pay at the sandbox (setup)",
            32,
            Duration::from_secs(3600),
            Some(PAYMENTS),
            move |i| {
                let request = http
                    .post(format!(
                        "{base}/sandbox/_control/transactions/{}/outcome",
                        references[i % references.len()]
                    ))
                    .bearer_auth(SECRET)
                    .json(&json!({"status": "success", "notify": false}));
                async move { request.send().await.is_ok_and(|r| r.status() == 200) }
            },
        )
        .await
    };
    assert_eq!(paid.failures, 0, "paying at the sandbox failed");
    let started = Instant::now();
    let settled = Payorch::run(&["reconcile", "--settlement"], &reconcile_env);
    let settle_took = started.elapsed();
    // `paystack\tlisted\tcalls\tmatched\tsettled\treviews\terrors`
    let row: Vec<u64> = settled
        .lines()
        .find_map(|line| line.strip_prefix("paystack\t"))
        .map(|rest| rest.split('\t').map(|n| n.parse().unwrap_or(0)).collect())
        .unwrap_or_default();
    server.terminate();

    let rate = PAYMENTS as f64 / took.as_secs_f64();
    println!("{HEADER}");
    println!("{}", sandbox.row(None));
    println!();
    println!(
        "payorch reconcile: {PAYMENTS} payments in {:.1} s = {rate:.0} payments/s ({summary})",
        took.as_secs_f64()
    );
    println!(
        "sandbox verify alone: {:.0}/s; reconcile reaches {:.0} % of it",
        sandbox.rate(),
        100.0 * rate / sandbox.rate()
    );
    println!(
        "provider calls per payment: {:.3}",
        calls as f64 / PAYMENTS as f64
    );
    println!();
    let (listed, pages, settled_n) = (
        row.first().copied().unwrap_or(0),
        row.get(1).copied().unwrap_or(0),
        row.get(3).copied().unwrap_or(0),
    );
    println!(
        "payorch reconcile --settlement: {listed} transactions listed, {settled_n} settled in {:.1} s = {:.0} transactions/s",
        settle_took.as_secs_f64(),
        listed as f64 / settle_took.as_secs_f64()
    );
    println!(
        "provider calls per transaction: {:.3} ({pages} listing pages)",
        pages as f64 / listed.max(1) as f64
    );
}
