//! `make bench-webhooks`: 10,000 signed webhooks at 100 concurrent senders
//! (ack rate and latency) beside RabbitMQ's own confirmed-publish rate
//! measured the same way (the ceiling), payorch's HTTP floor (`/healthz`)
//! and its ingest called without HTTP; then the drain with 1, 2 and 4
//! worker processes beside pgbench running the equivalent transaction
//! (dedup insert + versioned update + audit insert) on the same server.

mod common;

use std::{
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use common::*;
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::json;

const EVENTS: usize = 10_000;
const SENDERS: usize = 100;
const PAYMENTS: usize = 1_000;
const SECRET: &str = payorch::config::SANDBOX_SECRET_KEY;

/// Messages ready in the webhook queue (not counting those a worker holds):
/// a broker call, so polling it does not load the database being measured.
async fn ready(channel: &lapin::Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("the webhook queue exists once serve is up")
        .message_count()
}

async fn processed(db: &sea_orm::DatabaseConnection) -> i64 {
    scalar(
        db,
        "SELECT COUNT(*) FROM webhook_events WHERE processed_at IS NOT NULL",
    )
    .await
}

/// The one `bigint` `sql` reads.
async fn scalar(db: &sea_orm::DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// Transactions committed in the bench database so far.
async fn commits(db: &sea_orm::DatabaseConnection) -> i64 {
    scalar(
        db,
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .await
}

/// `EVENTS` confirmed publishes shaped as payorch's (through a direct
/// exchange, `mandatory`, its headers and message id, an envelope-sized
/// body) by `SENDERS` tasks: on one channel, pipelined, or on `channels`
/// channels holding one publish each from publish to confirm, as payorch's
/// publisher does.
async fn shaped_publishes(prefix: &str, channels: usize) -> Report {
    use lapin::{
        BasicProperties, Connection, ConnectionProperties, ExchangeKind,
        options::{
            BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
            ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
        },
        types::{AMQPValue, FieldTable},
    };
    let conn = Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .unwrap();
    let setup = conn.create_channel().await.unwrap();
    let (queue, exchange) = (format!("{prefix}.shaped"), format!("{prefix}.shaped"));
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    setup
        .queue_declare(queue.as_str().into(), durable, args)
        .await
        .unwrap();
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    setup
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await
        .unwrap();
    setup
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "webhook".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut headers = FieldTable::default();
    headers.insert("x-attempt".into(), AMQPValue::LongLongInt(0));
    headers.insert("x-provider".into(), AMQPValue::LongString("sandbox".into()));
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id("paystack:1000001:po-0123456789abcdef0123456789abcdef".into())
        .with_content_type("application/json".into())
        .with_headers(headers);
    let mut pool = Vec::with_capacity(channels);
    for _ in 0..channels {
        let channel = conn.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        pool.push(tokio::sync::Mutex::new(channel));
    }
    let pool = Arc::new(pool);
    let body = Arc::new(vec![b'x'; 900]);
    let label = match channels {
        1 => "RabbitMQ: publish shaped as payorch's, one channel, pipelined".to_owned(),
        n => format!("RabbitMQ: publish shaped as payorch's, {n} channels, one publish each"),
    };
    let exchange_name = Arc::new(exchange.clone());
    let report = load(
        &label,
        SENDERS,
        Duration::from_secs(600),
        Some(EVENTS),
        move |i| {
            let (pool, body, exchange, properties) = (
                pool.clone(),
                body.clone(),
                exchange_name.clone(),
                properties.clone(),
            );
            async move {
                let channel = pool[i % pool.len()].lock().await;
                let published = channel
                    .basic_publish(
                        exchange.as_str().into(),
                        "webhook".into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &body,
                        properties,
                    )
                    .await;
                let Ok(confirm) = published else {
                    return false;
                };
                // One channel: the next publish goes out before this confirm.
                let channel = (pool.len() > 1).then_some(channel);
                let confirmed = confirm.await.is_ok_and(|c| c.is_ack());
                drop(channel);
                confirmed
            }
        },
    )
    .await;
    setup
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    setup
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    let _ = conn.close(200, "measured".into()).await;
    report
}

/// payorch's ingest of `EVENTS` signed copies of `sample`, called directly
/// by `SENDERS` tasks: the signature check, the parse and the confirmed
/// publish through payorch's own publisher, onto a queue of its own (the
/// caller deletes it).
async fn ingest_alone(prefix: &str, sample: &str) -> (Report, payorch::queue::amqp::AmqpQueue) {
    use payorch::{
        config::Secret,
        provider::{Connectors, paystack::PaystackClient},
        queue::{RetryPolicy, WebhookQueue, amqp::AmqpQueue},
        webhook::ingest::WebhookIngest,
    };
    let client = PaystackClient::new(
        "paystack",
        "http://127.0.0.1:9/".parse().unwrap(),
        Secret::new(SECRET),
        Duration::from_secs(5),
    );
    let queue = AmqpQueue::new(
        AMQP,
        &format!("{prefix}-ingest"),
        RetryPolicy {
            delays: vec![Duration::from_secs(1)],
        },
    );
    let ingest = Arc::new(WebhookIngest {
        connectors: Connectors::single(Arc::new(client)),
        queue: WebhookQueue::Amqp(queue.clone()),
    });
    let signature = payorch::provider::paystack::sign_webhook(SECRET.as_bytes(), sample.as_bytes());
    let body = Arc::new((sample.to_owned(), signature));
    let report = load(
        "ingest without HTTP (signature, parse, confirmed publish)",
        SENDERS,
        Duration::from_secs(600),
        Some(EVENTS),
        move |_| {
            let (ingest, body) = (ingest.clone(), body.clone());
            async move {
                let (text, signature) = &*body;
                ingest
                    .receive(
                        "sandbox",
                        |_| Some(signature.clone()),
                        text.as_bytes(),
                        None,
                    )
                    .await
                    .is_ok()
            }
        },
    )
    .await;
    (report, queue)
}

fn pgbench(db: &BenchDb) -> f64 {
    let setup = "CREATE TABLE bench_events (id bigserial primary key, key text unique);\
        CREATE TABLE bench_payments (id int primary key, version int not null default 0);\
        CREATE TABLE bench_transitions (id bigserial primary key, payment_id int, cause text);\
        INSERT INTO bench_payments (id) SELECT generate_series(1, 1000);";
    let ok = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-q",
            "-d",
            &db.name,
            "-c",
            setup,
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    pgbench_tps(
        &db.name,
        "\\set id random(1, 1000)\nBEGIN;\n\
         INSERT INTO bench_events (key) VALUES (md5(random()::text)) ON CONFLICT DO NOTHING;\n\
         UPDATE bench_payments SET version = version + 1 WHERE id = :id;\n\
         INSERT INTO bench_transitions (payment_id, cause) VALUES (:id, 'webhook');\n\
         END;\n",
        8,
        10,
        &[],
    )
}

#[tokio::main]
async fn main() {
    payorch::install_crypto_provider();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "payorch bench-webhooks: {EVENTS} webhooks per round, {SENDERS} senders, {cores} cores, everything on this machine\n"
    );
    let db = BenchDb::create().await;
    let prefix = name("bench");
    let port = free_port();
    let env = bench_env(&db.url, &prefix, port, &[]);
    let keys = api_keys(1, &env);
    let server = Payorch::spawn(&["serve"], &env);
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(SENDERS)
        .build()
        .unwrap();
    let observer = Database::connect(&db.url).await.unwrap();
    let broker_conn = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let queue = broker_conn.create_channel().await.unwrap();
    let work_queue = format!("{prefix}.webhooks");

    let sample = json!({"event": "charge.success", "data": {"id": 1_000_000, "reference": "po-0123456789abcdef0123456789abcdef", "amount": 10000, "currency": "NGN", "status": "success", "paid_at": "2026-11-28T00:00:00Z", "gateway_response": "Approved"}}).to_string();
    let broker = pids_named("beam.smp");
    let me = std::process::id();
    let before = CpuSample::take(&[("sender", vec![me]), ("RabbitMQ", broker.clone())]);
    let ceiling = broker_ceiling(&prefix, sample.len(), EVENTS, SENDERS).await;
    let ceiling_cpu = before.per_unit_since(EVENTS);
    // What an ack is made of, each measured alone: payorch's HTTP stack
    // answering the cheapest route, and its ingest (signature, parse, the
    // confirmed publish of its envelope) called in this process, no HTTP.
    let http_floor = {
        let (http, base) = (http.clone(), base.clone());
        load(
            "GET /healthz (HTTP floor)",
            SENDERS,
            Duration::from_secs(600),
            Some(EVENTS),
            move |_| {
                let request = http.get(format!("{base}/healthz"));
                async move { request.send().await.is_ok_and(|r| r.status() == 200) }
            },
        )
        .await
    };
    // The broker's cost of payorch's message (direct exchange, mandatory,
    // headers, envelope size) apart from that of its channel pattern.
    let mut shaped = Vec::new();
    for channels in [1, 64] {
        let before = CpuSample::take(&[("RabbitMQ", broker.clone())]);
        let report = shaped_publishes(&prefix, channels).await;
        shaped.push((report, before.per_unit_since(EVENTS)));
    }
    let before = CpuSample::take(&[("ingest", vec![me]), ("RabbitMQ", broker.clone())]);
    let (ingest, ingest_queue) = ingest_alone(&prefix, &sample).await;
    let ingest_cpu = before.per_unit_since(EVENTS);
    ingest_queue.delete_topology().await.unwrap();
    let mut ack_cpu = Vec::new();

    let mut acks = Vec::new();
    let mut drain_cpu = Vec::new();
    let mut drains = Vec::new();
    let mut done = 0i64;
    let mut next_id = 1_000_000i64;
    // Clustered: a payment's ten events back to back, the worst case for
    // spreading work over workers (they queue on the same rows). Shuffled:
    // events of many payments interleaved, as real traffic arrives.
    let rounds = [1usize, 2, 4]
        .into_iter()
        .map(|w| (w, false))
        .chain([1usize, 2, 4].into_iter().map(|w| (w, true)));
    for (workers, shuffled) in rounds {
        let order = if shuffled { "shuffled" } else { "clustered" };
        // Fresh payments, ten events each: the first applies, the rest are
        // distinct events that land as recorded no-ops — all 10,000 are work.
        let mut bodies = Vec::with_capacity(EVENTS);
        for _ in 0..PAYMENTS {
            let payment: serde_json::Value = http
                .post(format!("{base}/v1/payments/initialize"))
                .bearer_auth(&keys[0])
                .json(&json!({"amount": 10_000, "currency": "NGN", "email": "b@example.com"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for _ in 0..EVENTS / PAYMENTS {
                next_id += 1;
                let body = json!({"event": "charge.success", "data": {"id": next_id, "reference": payment["reference"], "amount": 10000, "currency": "NGN", "status": "success", "paid_at": "2026-11-28T00:00:00Z", "gateway_response": "Approved"}}).to_string();
                let signature =
                    payorch::provider::paystack::sign_webhook(SECRET.as_bytes(), body.as_bytes());
                bodies.push((body, signature));
            }
        }
        if shuffled {
            use rand::{SeedableRng, seq::SliceRandom};
            bodies.shuffle(&mut rand::rngs::StdRng::seed_from_u64(workers as u64));
        }
        let bodies = Arc::new(bodies);
        let before = CpuSample::take(&[
            ("payorch", vec![server.pid()]),
            ("RabbitMQ", broker.clone()),
            ("sender", vec![me]),
        ]);
        let ack = {
            let (http, base, bodies) = (http.clone(), base.clone(), bodies.clone());
            load(
                &format!("POST webhook → 200 (before {workers} workers, {order})"),
                SENDERS,
                Duration::from_secs(600),
                Some(EVENTS),
                move |i| {
                    let (body, signature) = &bodies[i];
                    let request = http
                        .post(format!("{base}/v1/webhooks/sandbox"))
                        .header("x-paystack-signature", signature)
                        .body(body.clone());
                    async move { request.send().await.is_ok_and(|r| r.status() == 200) }
                },
            )
            .await
        };
        ack_cpu.push(before.per_unit_since(EVENTS));
        acks.push(ack);
        done += EVENTS as i64;
        let started = Instant::now();
        let statements = statements_reset(&observer).await;
        let commits_before = commits(&observer).await;
        let postgres_before = cpu_by_pid("postgres");
        let broker_before = cpu_by_pid("beam.smp");
        let running: Vec<Payorch> = (0..workers)
            .map(|_| Payorch::spawn(&["worker"], &env))
            .collect();
        // The queue is watched until it is empty; only then is the
        // database asked (a count scans the table, and the CPU it takes
        // would be charged to the drain).
        // Rates count from the first delivery, so a worker process's
        // start (connect, migrations check) is reported apart.
        // CPU is also read at the first delivery: what each process spent
        // starting (its own start, its first database connections) is then
        // told apart from what the drain itself costs per event.
        let mut first_delivery = None;
        let mut at_first_delivery = None;
        loop {
            let waiting = ready(&queue, &work_queue).await;
            if first_delivery.is_none() && waiting < EVENTS as u32 {
                first_delivery = Some(Instant::now());
                let workers: Duration = running.iter().map(|w| cpu_time(w.pid())).sum();
                at_first_delivery = Some((workers, cpu_by_pid("postgres")));
            }
            if waiting == 0 && processed(&observer).await >= done {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(900),
                "drain stalled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = started.elapsed();
        let per_event = |used: Duration| used.as_micros() as f64 / EVENTS as f64;
        let worker_cpu: Duration = running.iter().map(|w| cpu_time(w.pid())).sum();
        drain_cpu.push(format!(
            "CPU per event, {workers} worker(s), {order}: workers {:.0} µs, PostgreSQL {:.0} µs, RabbitMQ {:.0} µs",
            per_event(worker_cpu),
            per_event(cpu_since("postgres", &postgres_before)),
            per_event(cpu_since("beam.smp", &broker_before)),
        ));
        // As the rates, this counts every event as drained after the first
        // delivery (a 20 ms poll may see a first batch already applied).
        if let Some((workers_then, postgres_then)) = at_first_delivery {
            drain_cpu.push(format!(
                "  after the first delivery: workers {:.0} µs, PostgreSQL {:.0} µs",
                per_event(worker_cpu.saturating_sub(workers_then)),
                per_event(cpu_since("postgres", &postgres_then)),
            ));
        }
        // The bench's own reads (the count above) are among the commits:
        // one per poll once the queue is empty, a handful per drain.
        drain_cpu.push(format!(
            "  transactions committed per event: {:.3}",
            (commits(&observer).await - commits_before) as f64 / EVENTS as f64
        ));
        if statements {
            drain_cpu.push("  pg_stat_statements, per event (calls, rows, execution):".into());
            drain_cpu.extend(statements_per_unit(&observer, EVENTS).await);
        }
        let startup = first_delivery.map_or(Duration::ZERO, |at| at - started);
        drains.push((
            workers,
            order,
            took,
            startup,
            EVENTS as f64 / (took - startup).as_secs_f64(),
        ));
        for worker in running {
            worker.terminate();
        }
    }
    server.terminate();
    let pg_tps = pgbench(&db);

    println!("{HEADER}");
    println!("{}", ceiling.row(None));
    for (report, _) in &shaped {
        println!("{}", report.row(None));
    }
    println!("{}", http_floor.row(None));
    println!("{}", ingest.row(None));
    for ack in &acks {
        println!("{}", ack.row(None));
    }
    println!();
    println!(
        "ack rate vs the broker's own confirmed-publish rate: {:.0}% (first round), {:.0}% (best round)",
        100.0 * acks[0].rate() / ceiling.rate(),
        100.0 * acks.iter().map(Report::rate).fold(0.0, f64::max) / ceiling.rate()
    );
    println!("CPU per confirmed publish, broker alone: {ceiling_cpu}");
    for (report, cpu) in &shaped {
        println!("CPU per publish, {}: {cpu}", report.name);
    }
    println!("CPU per ingest without HTTP: {ingest_cpu}");
    let floor = 1.0 / (1.0 / http_floor.rate() + 1.0 / ceiling.rate());
    let floor_ingest = 1.0 / (1.0 / http_floor.rate() + 1.0 / ingest.rate());
    let best_ack = acks.iter().map(Report::rate).fold(0.0, f64::max);
    println!(
        "ack rate vs 1/(1/HTTP floor + 1/broker) = {floor:.0}/s: {:.0}% (first round), {:.0}% (best round)",
        100.0 * acks[0].rate() / floor,
        100.0 * best_ack / floor
    );
    println!(
        "ack rate vs 1/(1/HTTP floor + 1/ingest without HTTP) = {floor_ingest:.0}/s: {:.0}% (first round), {:.0}% (best round)",
        100.0 * acks[0].rate() / floor_ingest,
        100.0 * best_ack / floor_ingest
    );
    for (ack, cpu) in acks.iter().zip(&ack_cpu) {
        println!("CPU per ack, {}: {cpu}", ack.name);
    }
    println!(
        "\n| workers | event order | drain of {EVENTS} | of which worker start | events/s from first delivery | vs pgbench ({pg_tps:.0} tps) |\n|---|---|---|---|---|---|"
    );
    for (workers, order, took, startup, rate) in &drains {
        println!(
            "| {workers} | {order} | {:.2} s | {:.2} s | {rate:.0} | {:.0}% |",
            took.as_secs_f64(),
            startup.as_secs_f64(),
            100.0 * rate / pg_tps
        );
    }
    let rate_of = |w: usize, o: &str| {
        drains
            .iter()
            .find(|d| d.0 == w && d.1 == o)
            .map_or(f64::NAN, |d| d.4)
    };
    println!(
        "4 workers vs 1 (shuffled): {:.2}x; 2 vs 1: {:.2}x",
        rate_of(4, "shuffled") / rate_of(1, "shuffled"),
        rate_of(2, "shuffled") / rate_of(1, "shuffled")
    );
    for line in &drain_cpu {
        println!("{line}");
    }
    // Leave no bench queues behind.
    delete_payorch_queues(&env).await;
}
