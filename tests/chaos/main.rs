//! The chaos campaign (DESIGN.md, "Chaos campaign"): the whole system as
//! separate processes — the sandbox with both dialects, two `serve`, two
//! `worker` — on PostgreSQL, Redis and RabbitMQ, under merchant, customer
//! and merchant-endpoint traffic and a fault schedule drawn from a seed.
//! Then the faults stop, reconciliation (sweep and settlement) runs, the
//! queues drain, and the checker compares payorch with the sandbox's
//! ledger. It prints one row per invariant, the fault counts, the seed and
//! the command that replays it, and fails on any violation.
//!
//! `CHAOS_SEED` (default: random, printed) and `CHAOS_SECONDS` (default
//! 60) choose the run; `make chaos SEED=… MINUTES=…` sets both. Modules:
//! `processes` (the cluster and its clean-up), `relay` (the wire from the
//! sandbox to payorch), `receiver` (merchant endpoints), `workload`,
//! `faults` (the schedule), `checker`.

mod checker;
mod faults;
mod processes;
mod receiver;
mod relay;
mod workload;

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use serde_json::{Value, json};

use crate::{
    checker::{Evidence, Row},
    faults::{Schedule, Targets},
    processes::{Cluster, SANDBOX_KEY, free_port},
    receiver::Receiver,
    relay::Relay,
    workload::{Api, Tally},
};

/// Merchant loops running at once.
const MERCHANTS: u64 = 4;

fn main() {
    let seed: u64 = match std::env::var("CHAOS_SEED") {
        Ok(seed) => seed.parse().expect("CHAOS_SEED: an unsigned integer"),
        Err(_) => rand::random(),
    };
    let seconds: u64 = std::env::var("CHAOS_SECONDS")
        .ok()
        .map(|s| s.parse().expect("CHAOS_SECONDS: a number of seconds"))
        .unwrap_or(60);
    // `make chaos` restarts RabbitMQ and Redis too; the short run inside
    // `make test` does not (other tests share them).
    let services = std::env::var("CHAOS_SERVICES").is_ok_and(|v| v == "restart");
    payorch::install_crypto_provider();
    println!(
        "chaos campaign: seed {seed}, {seconds} s of traffic{}",
        if services {
            ", RabbitMQ and Redis restarted"
        } else {
            ""
        }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let clean = runtime.block_on(campaign(seed, seconds, services));
    if !clean {
        println!("FAILED — replay: {}", replay(seed, seconds, services));
        std::process::exit(1);
    }
}

fn replay(seed: u64, seconds: u64, services: bool) -> String {
    let keep = if services { "" } else { " SERVICES=keep" };
    if seconds.is_multiple_of(60) {
        format!("make chaos SEED={seed} MINUTES={}{keep}", seconds / 60)
    } else {
        let restart = if services {
            "CHAOS_SERVICES=restart "
        } else {
            ""
        };
        format!("{restart}CHAOS_SEED={seed} CHAOS_SECONDS={seconds} cargo test --test chaos")
    }
}

/// The whole campaign; `true` when no invariant was violated. The cluster
/// is cleaned up whatever happened, a panic included.
async fn campaign(seed: u64, seconds: u64, services: bool) -> bool {
    let schedule = Schedule::draw(seed, seconds, services);
    schedule.print();
    let relay_port = free_port();
    let serve_ports = [free_port(), free_port()];
    let serve_urls: Vec<String> = serve_ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let relay = Relay::start(relay_port, serve_urls).await;
    let receiver = Receiver::start().await;
    let cluster = Arc::new(Cluster::start(relay_port, &serve_ports).await);
    let targets = Targets {
        cluster: cluster.clone(),
        relay,
        receiver,
        http: reqwest::Client::new(),
        services,
    };
    let outcome = AssertUnwindSafe(storm_and_check(&targets, &schedule, seed, seconds))
        .catch_unwind()
        .await;
    drop(targets);
    let clean = matches!(outcome, Ok(true));
    // CHAOS_KEEP=1 keeps a failed run's database for diagnosis.
    let keep_db = !clean && std::env::var_os("CHAOS_KEEP").is_some();
    cluster.clean_up(!clean, keep_db).await;
    match outcome {
        Ok(clean) => clean,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn storm_and_check(targets: &Targets, schedule: &Schedule, seed: u64, seconds: u64) -> bool {
    let cluster = &targets.cluster;
    let api = Api {
        http: reqwest::Client::new(),
        serve_urls: cluster.serve_urls.clone(),
        key: cluster.api_key.clone(),
        sandbox_url: cluster.sandbox_url.clone(),
    };
    register_endpoints(&api, &targets.receiver).await;

    println!("storm: {MERCHANTS} merchants, faults as scheduled");
    let tally = Tally::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let merchants: Vec<_> = (0..MERCHANTS)
        .map(|i| {
            tokio::spawn(workload::merchant(
                api.clone(),
                seed,
                i,
                stopped.clone(),
                tally.clone(),
            ))
        })
        .collect();
    let storm = async {
        targets.play(schedule).await;
        tokio::time::sleep_until(
            tokio::time::Instant::now()
                + Duration::from_secs(seconds)
                    .saturating_sub(schedule.faults.last().map_or(Duration::ZERO, |(at, _)| *at)),
        )
        .await;
    };
    storm.await;
    stop.send(true).unwrap();
    for merchant in merchants {
        merchant.await.unwrap();
    }
    tally.print();

    println!("calm: faults cleared, reconciling, draining");
    targets.clear().await;
    settle(targets).await;

    let evidence = gather(targets).await;
    let rows = evidence.check(schedule);
    report(
        &rows,
        schedule,
        (seed, seconds, targets.services),
        &evidence,
    );
    rows.iter().all(|r| r.violations.is_empty())
}

/// The merchant's endpoints, registered through the events API.
async fn register_endpoints(api: &Api, receiver: &Receiver) {
    for (name, types) in receiver::ENDPOINTS {
        let created = api
            .http
            .post(format!("{}/v1/webhook-endpoints", api.serve_urls[0]))
            .bearer_auth(&api.key)
            .json(&json!({"url": format!("{}/{name}", receiver.base),
                          "description": name, "event_types": types}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201, "registering {name}");
    }
}

/// After the storm: wait for the provider's webhooks to be answered, run
/// the sweep over everything (rows backdated past its threshold) and the
/// settlement pass, then wait until the queues are empty, the outbox is
/// relayed and every event reached its endpoints (or a deadline passes;
/// the checker then says what is missing).
async fn settle(targets: &Targets) {
    let cluster = &targets.cluster;
    wait_for(
        "the sandbox's webhooks answered",
        Duration::from_secs(60),
        || async { targets.relay.in_flight() == 0 },
    )
    .await;
    wait_for(
        "the webhook queues empty",
        Duration::from_secs(60),
        || async { queues_empty(cluster).await },
    )
    .await;
    for pass in 0..2 {
        payorch_backdate(cluster).await;
        // Everything is past the sweep's threshold, and a refund the
        // provider still cannot find past the review's (the storm is over:
        // a look-up that misses now misses for good).
        let out = cluster.run(
            &["reconcile"],
            &[
                ("PAYORCH_RECONCILE_AFTER_S", "60"),
                ("PAYORCH_REFUND_REVIEW_AFTER_S", "600"),
            ],
        );
        println!(
            "reconcile pass {pass}: {}",
            out.lines().last().unwrap_or("")
        );
        // Refunds the sweep sent settle at the sandbox a second later.
        wait_for(
            "the sandbox's webhooks answered",
            Duration::from_secs(60),
            || async { targets.relay.in_flight() == 0 },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let out = cluster.run(&["reconcile", "--settlement"], &[]);
    for line in out.lines() {
        println!("  {line}");
    }
    wait_for(
        "queues drained, outbox relayed, events delivered",
        Duration::from_secs(90),
        || async {
            queues_empty(cluster).await
                && targets.relay.in_flight() == 0
                && unpublished_events(cluster).await == 0
                && gather(targets).await.undelivered_events().is_empty()
        },
    )
    .await;
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        if Instant::now() > deadline {
            println!("  gave up waiting for {what} after {limit:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn queues_empty(cluster: &Cluster) -> bool {
    processes::queue_depths(&cluster.env)
        .await
        .iter()
        .all(|(_, depth)| *depth == 0)
}

async fn unpublished_events(cluster: &Cluster) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let row = cluster
        .db
        .query_one_raw(Statement::from_string(
            cluster.db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM events WHERE published_at IS NULL",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

/// Moves every payment's and refund's clock an hour back, as if the sweep
/// threshold had long passed (tests/api/helpers.rs does the same).
async fn payorch_backdate(cluster: &Cluster) {
    use sea_orm::ConnectionTrait;
    for sql in [
        "UPDATE payments SET created_at = created_at - interval '1 hour', \
         updated_at = updated_at - interval '1 hour', \
         checked_at = checked_at - interval '1 hour'",
        "UPDATE refunds SET created_at = created_at - interval '1 hour', \
         updated_at = updated_at - interval '1 hour'",
    ] {
        cluster.db.execute_unprepared(sql).await.unwrap();
    }
}

async fn gather(targets: &Targets) -> Evidence {
    let ledger: Vec<Value> = targets
        .http
        .get(format!("{}/_control/ledger", targets.cluster.sandbox_url))
        .bearer_auth(SANDBOX_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let received: HashMap<&'static str, _> = receiver::ENDPOINTS
        .iter()
        .map(|(name, _)| (*name, targets.receiver.received(name)))
        .collect();
    Evidence::gather(
        &targets.cluster.db,
        ledger,
        targets.relay.answers(),
        received,
    )
    .await
}

/// The report; `run`: the seed, the seconds and whether services were
/// restarted, for the replay command.
fn report(rows: &[Row], schedule: &Schedule, run: (u64, u64, bool), evidence: &Evidence) {
    let (seed, seconds, services) = run;
    println!();
    println!("{:<58} {:>8} {:>11}", "invariant", "checked", "violations");
    for row in rows {
        println!(
            "{:<58} {:>8} {:>11}",
            row.name,
            row.checked,
            row.violations.len()
        );
    }
    for row in rows.iter().filter(|r| !r.violations.is_empty()) {
        println!("\n{}:", row.name);
        for violation in row.violations.iter().take(20) {
            println!("  {violation}");
        }
        if row.violations.len() > 20 {
            println!("  … and {} more", row.violations.len() - 20);
        }
    }
    println!();
    let counts: Vec<String> = schedule
        .counts()
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    println!("faults: {}", counts.join(", "));
    let acknowledged = evidence
        .answers
        .iter()
        .filter(|a| (200..300).contains(&a.status))
        .count();
    println!(
        "provider transactions {}, webhooks relayed {} ({} answered 2xx)",
        evidence.ledger.len(),
        evidence.answers.len(),
        acknowledged
    );
    println!("seed {seed}; replay: {}", replay(seed, seconds, services));
}
