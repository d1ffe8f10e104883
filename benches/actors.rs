//! `make bench-actors`: start 100,000 payment actors, let them go idle and
//! leave, and watch this process's resident memory come back.

mod common;

use std::time::{Duration, Instant};

use common::*;
use payorch::payments::{ActorSettings, PaymentError, Payments};

const ACTORS: usize = 100_000;

fn own_rss() -> f64 {
    rss_mib(std::process::id())
}

#[tokio::main]
async fn main() {
    payorch::install_crypto_provider();
    let db = BenchDb::create().await;
    let url: payorch::config::DatabaseUrl = db.url.parse().unwrap();
    let conn = payorch::store::connect_url(&url, 20, Duration::from_secs(5))
        .await
        .unwrap();
    payorch::store::migrate(&conn, &url).await.unwrap();
    let cfg = payorch::Config::from_lookup(|_| None).unwrap();
    let idle = Duration::from_secs(2);
    let actors = ActorSettings {
        idle,
        mailbox: 64,
        arbiters: 2,
    };
    let payments = Payments::start(
        conn,
        payorch::provider::from_config(
            &cfg,
            payorch::config::Secret::new(payorch::config::SANDBOX_SECRET_KEY),
            None,
        ),
        actors,
        Duration::from_secs(30),
    )
    .unwrap();
    let nobody = uuid::Uuid::nil();

    let before = own_rss();
    let started = Instant::now();
    // Each message goes to a payment of its own; no such payment exists, so
    // every actor does one indexed lookup and answers 404.
    let payments_for_load = payments.clone();
    let report = load(
        "verify → new actor each",
        200,
        Duration::from_secs(3600),
        Some(ACTORS),
        move |i| {
            let payments = payments_for_load.clone();
            async move {
                matches!(
                    payments.verify(nobody, &format!("bench-{i}")).await,
                    Err(PaymentError::NotFound)
                )
            }
        },
    )
    .await;
    let created_in = started.elapsed();
    let peak_actors = payments.live_actors();
    let peak = own_rss();
    let deadline = Instant::now() + Duration::from_secs(120);
    while payments.live_actors() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give the arbiters a moment to drop stopped actors' contexts.
    tokio::time::sleep(idle).await;
    let after = own_rss();
    println!("payorch bench-actors: {ACTORS} actors, idle timeout {idle:?}\n");
    println!("| measure | value |\n|---|---|");
    println!(
        "| messages answered | {} ({} failures) |",
        report.latencies_us.len(),
        report.failures
    );
    println!(
        "| time to create and serve them | {:.1} s |",
        created_in.as_secs_f64()
    );
    println!("| live actors right after | {peak_actors} |");
    println!(
        "| live actors after the idle timeout | {} |",
        payments.live_actors()
    );
    println!("| resident memory before | {before:.0} MiB |");
    println!("| resident memory at the peak | {peak:.0} MiB |");
    println!(
        "| resident memory after eviction | {after:.0} MiB ({:+.0}% vs before) |",
        100.0 * (after - before) / before
    );
    payments.stop();
}
