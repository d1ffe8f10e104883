//! The webhook pipeline against the real RabbitMQ and PostgreSQL: ingest,
//! workers (in-process and as separate processes), retries, dead letters.

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use payorch::{config::SANDBOX_SECRET_KEY, provider::paystack, queue::amqp::AmqpQueue};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::helpers::{TestApp, TestDb, assert_problem, test_env};

pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Retry quickly in tests: three attempts, then the dead-letter queue.
const FAST_RETRIES: &str = "100,200";

pub struct Pipeline {
    pub app: TestApp,
    pub env: HashMap<String, String>,
    pub queue: AmqpQueue,
    workers: Vec<(oneshot::Sender<()>, WorkerTask)>,
}

/// An in-process worker's task.
type WorkerTask = tokio::task::JoinHandle<Result<(), payorch::StartupError>>;

impl Pipeline {
    /// An API on RabbitMQ with `workers` in-process workers.
    pub async fn start(workers: usize, extra: &[(&str, &str)]) -> Pipeline {
        let db = Arc::new(TestDb::postgres().await);
        let mut env = test_env(&db);
        env.insert("AMQP_URL".into(), AMQP.into());
        env.insert(
            "PAYORCH_WEBHOOK_RETRY_DELAYS_MS".into(),
            FAST_RETRIES.into(),
        );
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let app = TestApp::spawn_with(db, env.clone()).await;
        let cfg = crate::helpers::config_from(&env);
        let queue = AmqpQueue::new(AMQP, &cfg.queue_prefix, cfg.retry_policy.clone());
        let mut pipeline = Pipeline {
            app,
            env,
            queue,
            workers: Vec::new(),
        };
        for _ in 0..workers {
            pipeline.add_worker();
        }
        pipeline
    }

    pub fn add_worker(&mut self) {
        let (stop, stopped) = oneshot::channel::<()>();
        let cfg = Arc::new(crate::helpers::config_from(&self.env));
        let worker = tokio::spawn(payorch::run_worker(cfg, async {
            let _ = stopped.await;
        }));
        self.workers.push((stop, worker));
    }

    /// Posts a signed webhook body.
    pub async fn post(&self, body: &[u8]) -> reqwest::Response {
        self.post_signed(
            body,
            &paystack::sign_webhook(SANDBOX_SECRET_KEY.as_bytes(), body),
        )
        .await
    }

    pub async fn post_signed(&self, body: &[u8], signature: &str) -> reqwest::Response {
        self.app
            .http
            .post(self.app.url("/v1/webhooks/sandbox"))
            .header("content-type", "application/json")
            .header("x-paystack-signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// Waits until `count` events have been processed (or fails).
    pub async fn processed(&self, count: i64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let done = scalar(
                &self.app.db,
                "SELECT COUNT(*) FROM webhook_events WHERE processed_at IS NOT NULL",
            )
            .await;
            if done >= count {
                assert_eq!(done, count, "more events processed than sent");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {done} of {count} events processed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn depth(&self, which: &str) -> u32 {
        self.queue
            .depths()
            .await
            .unwrap()
            .into_iter()
            .filter(|(name, _)| name.ends_with(which))
            .map(|(_, n)| n)
            .sum()
    }

    pub async fn queues_empty(&self) -> bool {
        self.queue
            .depths()
            .await
            .unwrap()
            .iter()
            .all(|(_, n)| *n == 0)
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // Stop the in-process workers before the app deletes the topology.
        let mut running = Vec::new();
        for (stop, worker) in self.workers.drain(..) {
            let _ = stop.send(());
            running.push(worker);
        }
        crate::helpers::finish_before_cleanup(running);
    }
}

pub async fn scalar(db: &sea_orm::DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

fn charge(event: &str, id: i64, reference: &str, amount: i64) -> Vec<u8> {
    json!({
        "event": event,
        "data": {"id": id, "reference": reference, "amount": amount, "currency": "NGN",
                 "status": if event == "charge.success" { "success" } else { "failed" },
                 "paid_at": null, "gateway_response": "Approved"}
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn one_event_delivered_ten_times_is_applied_once() {
    let pipeline = Pipeline::start(1, &[]).await;
    let payment = pipeline.app.new_payment(5_000).await;
    let reference = payment["reference"].as_str().unwrap();
    let body = charge("charge.success", 77, reference, 5_000);
    for _ in 0..10 {
        let response = pipeline.post(&body).await;
        assert_eq!(response.status(), 200);
    }
    pipeline.processed(1, Duration::from_secs(30)).await;
    let read = pipeline.app.payment(reference).await;
    assert_eq!(read["status"], "succeeded");
    let from_webhooks = read["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["event_id"] == "charge.success:77")
        .count();
    assert_eq!(from_webhooks, 1, "one transition for the one real event");
    // Let the nine duplicates drain, then nothing is left anywhere.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pipeline.queues_empty().await {
        assert!(Instant::now() < deadline, "queues never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        scalar(&pipeline.app.db, "SELECT COUNT(*) FROM webhook_events").await,
        1
    );
}

#[tokio::test]
async fn embedded_mode_processes_webhooks_in_process() {
    let app = TestApp::spawn().await;
    let payment = app.new_payment(2_000).await;
    let reference = payment["reference"].as_str().unwrap();
    let body = charge("charge.success", 5, reference, 2_000);
    for _ in 0..3 {
        let response = app
            .http
            .post(app.url("/v1/webhooks/sandbox"))
            .header(
                "x-paystack-signature",
                paystack::sign_webhook(SANDBOX_SECRET_KEY.as_bytes(), &body),
            )
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while scalar(
        &app.db,
        "SELECT COUNT(*) FROM webhook_events WHERE processed_at IS NOT NULL",
    )
    .await
        < 1
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let read = app.payment(reference).await;
    assert_eq!(read["status"], "succeeded");
}

#[tokio::test]
async fn the_checkout_announces_itself_by_webhook() {
    let pipeline = Pipeline::start(1, &[]).await;
    let payment = pipeline.app.new_payment(8_000).await;
    pipeline
        .app
        .http
        .post(payment["authorization_url"].as_str().unwrap())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("outcome=failed")
        .send()
        .await
        .unwrap();
    pipeline.processed(1, Duration::from_secs(30)).await;
    let read = pipeline
        .app
        .payment(payment["reference"].as_str().unwrap())
        .await;
    assert_eq!(read["status"], "failed");
}

#[tokio::test]
async fn forged_empty_truncated_and_oversized_webhooks_are_refused_and_not_queued() {
    let pipeline = Pipeline::start(0, &[]).await;
    let body = charge("charge.success", 1, "ref-x", 100);
    let good = paystack::sign_webhook(SANDBOX_SECRET_KEY.as_bytes(), &body);
    let forged = paystack::sign_webhook(b"not the secret", &body);
    for signature in [forged.as_str(), "", &good[..good.len() - 2]] {
        let response = pipeline.post_signed(&body, signature).await;
        assert_problem(response, 401, "invalid_signature").await;
    }
    let missing = pipeline
        .app
        .http
        .post(pipeline.app.url("/v1/webhooks/sandbox"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_problem(missing, 401, "invalid_signature").await;
    let big = vec![b' '; 300 * 1024];
    let response = pipeline.post(&big).await;
    assert_eq!(response.status(), 413);
    let unknown = pipeline
        .app
        .http
        .post(pipeline.app.url("/v1/webhooks/stripe"))
        .header("x-paystack-signature", &good)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_problem(unknown, 404, "unknown_provider").await;
    assert!(pipeline.queues_empty().await, "nothing was queued");
}

#[tokio::test]
async fn a_signed_but_unreadable_body_is_acknowledged_and_parked() {
    let pipeline = Pipeline::start(0, &[]).await;
    let response = pipeline.post(b"{\"hello\": \"world\"}").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "parked");
    let parked = pipeline.queue.dead_letters(10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert!(
        parked[0]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("unparsable")
    );
}

#[tokio::test]
async fn an_event_that_keeps_failing_is_parked_and_replay_brings_it_back() {
    let pipeline = Pipeline::start(1, &[]).await;
    // Its payment's row cannot be read (a hand edit gone wrong): every
    // attempt fails.
    unreadable_payment(&pipeline, "late-ref-1").await;
    let body = charge("charge.success", 4242, "late-ref-1", 900);
    assert_eq!(pipeline.post(&body).await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while pipeline.depth(".dead").await == 0 {
        assert!(Instant::now() < deadline, "never parked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let parked = pipeline.queue.dead_letters(10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].attempt, 2, "three attempts: 0, 1, 2");
    assert!(
        parked[0].reason.as_deref().unwrap().contains("bogus"),
        "{:?}",
        parked[0].reason
    );

    // The row is mended; an operator replays the parked event.
    set_status(&pipeline, "late-ref-1", "pending").await;
    let output = crate::helpers::payorch_command()
        .args(["dlq", "replay", "charge.success:4242"])
        .envs(&pipeline.env)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 message(s) replayed"));
    pipeline.processed(1, Duration::from_secs(30)).await;
    let read = pipeline.app.payment("late-ref-1").await;
    assert_eq!(read["status"], "succeeded");
    assert_eq!(pipeline.depth(".dead").await, 0);
}

/// A payment under `reference` whose stored status does not parse, so
/// every event for it fails (and is retried, then parked).
async fn unreadable_payment(pipeline: &Pipeline, reference: &str) {
    let request =
        json!({"amount": 900, "currency": "NGN", "email": "a@b.co", "reference": reference});
    assert_eq!(pipeline.app.initialize(&request, None).await.status(), 201);
    set_status(pipeline, reference, "bogus").await;
}

async fn set_status(pipeline: &Pipeline, reference: &str, status: &str) {
    pipeline
        .app
        .db
        .execute_raw(Statement::from_string(
            pipeline.app.db.get_database_backend(),
            format!("UPDATE payments SET status = '{status}' WHERE reference = '{reference}'"),
        ))
        .await
        .unwrap();
}

/// A worker as its own OS process, as `make workers` runs them.
pub struct WorkerProcess(Child);

impl WorkerProcess {
    pub fn spawn(env: &HashMap<String, String>) -> WorkerProcess {
        let child = crate::helpers::payorch_command()
            .arg("worker")
            .envs(env)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        WorkerProcess(child)
    }

    pub fn signal(&self, signal: &str) {
        Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .unwrap();
    }

    pub fn wait(&mut self) -> Option<i32> {
        self.0.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn burst_with_three_worker_processes(kill_one: bool) {
    let pipeline = Pipeline::start(0, &[("PAYORCH_WORKER_PREFETCH", "16")]).await;
    let mut workers: Vec<WorkerProcess> = (0..3)
        .map(|_| WorkerProcess::spawn(&pipeline.env))
        .collect();
    for _ in 0..500 {
        pipeline.app.new_payment(1_000).await;
    }
    let burst = pipeline
        .app
        .burst(json!({"outcome": "mixed", "extra_events": 1100,
        "duplicates": 400, "bad_signatures": 20, "concurrency": 64}));
    if kill_one {
        // Mid-burst: some events processed, many still coming.
        let deadline = Instant::now() + Duration::from_secs(120);
        while scalar(&pipeline.app.db, "SELECT COUNT(*) FROM webhook_events").await < 300 {
            assert!(Instant::now() < deadline, "the burst never got going");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        workers[0].signal("-KILL");
        workers[0].wait();
    }
    let report = burst.await.unwrap();
    assert_eq!(report["payments"], 500);
    assert_eq!(report["unique_events"], 1600);
    assert_eq!(report["sent"], 2020);
    assert_eq!(report["accepted"], 2000, "{report}");
    assert_eq!(report["refused"]["401"], 20);

    pipeline.processed(1600, Duration::from_secs(180)).await;
    let db = &pipeline.app.db;
    for (reference, expected) in report["expected"].as_object().unwrap() {
        let status = scalar(
            db,
            &format!(
                "SELECT CASE status WHEN '{}' THEN 1 ELSE 0 END::bigint FROM payments WHERE reference = '{reference}'",
                expected.as_str().unwrap()
            ),
        )
        .await;
        assert_eq!(status, 1, "{reference} should be {expected}");
    }
    // Every real event left exactly one audit row, and none was applied twice.
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM payment_transitions WHERE event_id IS NOT NULL"
        )
        .await,
        1600
    );
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM (SELECT event_id FROM payment_transitions WHERE event_id IS NOT NULL \
             GROUP BY event_id HAVING COUNT(*) > 1) twice"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM (SELECT payment_id FROM payment_transitions \
             WHERE to_status IN ('succeeded', 'failed') AND from_status <> to_status \
             GROUP BY payment_id HAVING COUNT(*) > 1) twice"
        )
        .await,
        0,
        "no payment settled twice"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pipeline.queues_empty().await {
        assert!(Instant::now() < deadline, "queues never drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SIGTERM: the survivors drain and exit cleanly.
    for worker in workers.iter_mut().skip(usize::from(kill_one)) {
        worker.signal("-TERM");
        assert_eq!(worker.wait(), Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_500_payments_with_three_workers_ends_right() {
    burst_with_three_worker_processes(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_worker_mid_burst_loses_nothing_and_doubles_nothing() {
    burst_with_three_worker_processes(true).await;
}

// Multi-threaded: the proxy must keep serving while the app's drop cleans
// up the broker through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_is_503_and_every_acknowledged_event_is_processed() {
    let proxy = crate::helpers::TcpProxy::start("127.0.0.1:5672").await;
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
    let mut pipeline = Pipeline::start(0, &[("AMQP_URL", url.as_str())]).await;
    pipeline.add_worker();
    let mut references = Vec::new();
    for _ in 0..6 {
        let payment = pipeline.app.new_payment(700).await;
        references.push(payment["reference"].as_str().unwrap().to_owned());
    }
    let mut acknowledged = 0;
    let body = |i: usize| charge("charge.success", 9_000 + i as i64, &references[i], 700);

    assert_eq!(pipeline.post(&body(0)).await.status(), 200);
    acknowledged += 1;

    proxy.cut();
    for i in 1..3 {
        let response = pipeline.post(&body(i)).await;
        assert_eq!(response.status(), 503, "no broker, no 200");
        assert!(response.headers().contains_key("retry-after"));
        assert_problem(response, 503, "service_unavailable").await;
    }

    proxy.restore().await;
    for i in 3..6 {
        // The publisher reconnects on first use after the outage.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = pipeline.post(&body(i)).await.status();
            if status == 200 {
                break;
            }
            assert_eq!(status, 503);
            assert!(Instant::now() < deadline, "the broker never came back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        acknowledged += 1;
    }
    pipeline
        .processed(acknowledged, Duration::from_secs(60))
        .await;
    for (i, reference) in references.iter().enumerate() {
        let status = scalar(
            &pipeline.app.db,
            &format!("SELECT CASE status WHEN 'succeeded' THEN 1 ELSE 0 END::bigint FROM payments WHERE reference = '{reference}'"),
        )
        .await;
        let was_acknowledged = i == 0 || i >= 3;
        assert_eq!(status == 1, was_acknowledged, "payment {i}");
    }
}

/// Deletes one of the pipeline's queues behind payorch's back, as an
/// operator might.
async fn delete_queue(name: &str) {
    let conn = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .queue_delete(name.into(), lapin::options::QueueDeleteOptions::default())
        .await
        .unwrap();
    let _ = conn.close(200, "deleted".into()).await;
}

#[tokio::test]
async fn a_publish_nothing_can_route_is_a_503_never_an_acknowledgement() {
    let pipeline = Pipeline::start(0, &[]).await;
    // A first event declares the topology; then the main queue goes.
    let first = charge("charge.success", 71, "unroutable-1", 1_000);
    assert_eq!(pipeline.post(&first).await.status(), 200);
    delete_queue(&pipeline.queue.names().main).await;

    let lost = charge("charge.success", 72, "unroutable-2", 1_000);
    let refused = pipeline.post(&lost).await;
    assert_eq!(refused.status(), 503, "the broker had no queue for it");
    assert!(refused.headers().contains_key("retry-after"));
    // The refusal declared the topology again: the provider's retry lands.
    let retried = pipeline.post(&lost).await;
    assert_eq!(retried.status(), 200);
    assert_eq!(
        pipeline.depth(".webhooks").await,
        1,
        "only the retried event"
    );
}

#[tokio::test]
async fn parking_into_a_deleted_dead_letter_queue_is_a_503_too() {
    let pipeline = Pipeline::start(0, &[]).await;
    assert_eq!(
        pipeline
            .post(&charge("charge.success", 81, "dead-1", 1_000))
            .await
            .status(),
        200
    );
    delete_queue(&pipeline.queue.names().dead).await;
    let unreadable = b"{\"not\": \"an event\"}";
    assert_eq!(pipeline.post(unreadable).await.status(), 503);
    let retried = pipeline.post(unreadable).await;
    assert_eq!(retried.status(), 200);
    assert_eq!(retried.json::<Value>().await.unwrap()["status"], "parked");
    assert_eq!(pipeline.depth(".webhooks.dead").await, 1);
}

/// Every queue as the broker sees it: `(name, type, arguments)`.
fn broker_queues(prefix: &str) -> Vec<(String, String, String)> {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "type", "arguments"])
        .output()
        .expect("rabbitmqctl runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with(&format!("{prefix}.")))
        .map(|line| {
            let mut fields = line.splitn(3, '\t');
            let mut next = || fields.next().unwrap_or_default().to_owned();
            (next(), next(), next())
        })
        .collect()
}

#[tokio::test]
async fn every_queue_is_quorum_and_the_main_one_parks_what_it_cannot_deliver() {
    let pipeline = Pipeline::start(0, &[]).await;
    let names = pipeline.queue.names().clone();
    pipeline.queue.check().await.unwrap();
    let prefix = names.main.trim_end_matches(".webhooks").to_owned();
    let queues = tokio::task::spawn_blocking(move || broker_queues(&prefix))
        .await
        .unwrap();
    assert_eq!(
        queues.len(),
        4,
        "main, dead and two retry tiers: {queues:?}"
    );
    for (name, kind, arguments) in &queues {
        assert_eq!(kind, "quorum", "{name}");
        if name.contains(".retry.") {
            assert!(arguments.contains("at-least-once"), "{name}: {arguments}");
        }
    }
    let (_, _, main) = queues.iter().find(|(n, _, _)| *n == names.main).unwrap();
    assert!(main.contains("x-delivery-limit"), "{main}");
    assert!(
        main.contains(&names.dead),
        "dead-letters to the parking queue: {main}"
    );

    // A message that keeps coming back (a consumer that crashes on it every
    // time) is parked after the limit, not dropped.
    let conn = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .basic_publish(
            "".into(),
            names.main.as_str().into(),
            lapin::options::BasicPublishOptions::default(),
            b"poison",
            lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap();
    let mut consumer = channel
        .basic_consume(
            names.main.as_str().into(),
            "crashing".into(),
            lapin::options::BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    use futures_util::StreamExt;
    let mut deliveries = 0;
    while pipeline.depth(".webhooks.dead").await == 0 {
        let next = tokio::time::timeout(Duration::from_secs(10), consumer.next()).await;
        let Ok(Some(Ok(delivery))) = next else {
            panic!("after {deliveries} deliveries: neither redelivered nor parked");
        };
        deliveries += 1;
        assert!(
            deliveries <= payorch::queue::amqp::DELIVERY_LIMIT + 1,
            "delivered past the limit"
        );
        delivery
            .nack(lapin::options::BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    assert_eq!(deliveries, payorch::queue::amqp::DELIVERY_LIMIT + 1);
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test]
async fn a_queue_left_by_an_older_version_is_kept_and_used() {
    let prefix = crate::helpers::random_name("old");
    let policy = payorch::queue::RetryPolicy {
        delays: vec![Duration::from_millis(100)],
    };
    let queue = AmqpQueue::new(AMQP, &prefix, policy);
    // Declared as the first version did: a classic retry queue.
    let conn = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let mut classic = lapin::types::FieldTable::default();
    classic.insert(
        "x-message-ttl".into(),
        lapin::types::AMQPValue::LongLongInt(100),
    );
    channel
        .queue_declare(
            queue
                .names()
                .retry(Duration::from_millis(100))
                .as_str()
                .into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            classic,
        )
        .await
        .unwrap();
    let _ = conn.close(200, "declared".into()).await;

    assert!(queue.check().await.is_ok(), "starts on the old queue");
    let envelope = payorch::queue::Envelope {
        message: payorch::queue::QueueMessage::WebhookV1 {
            provider: "sandbox".into(),
            dedup_key: "old-1".into(),
            body: "{}".into(),
            received_at: chrono::Utc::now(),
            request_id: None,
        },
        attempt: 0,
        reason: None,
    };
    queue.publish(&envelope).await.unwrap();
    queue.retry(&envelope, "test").await.unwrap();
    queue.delete_topology().await.unwrap();
}

#[tokio::test]
async fn a_retry_into_a_deleted_retry_queue_is_not_lost() {
    let mut pipeline = Pipeline::start(0, &[]).await;
    unreadable_payment(&pipeline, "unreadable-1").await;
    let first = charge("charge.success", 91, "unreadable-1", 1_000);
    assert_eq!(pipeline.post(&first).await.status(), 200);
    // Every retry tier goes, behind payorch's back; then a worker fails the
    // event (no such payment) and must put it somewhere that holds it.
    for delay in ["100ms", "200ms"] {
        delete_queue(&format!("{}.retry.{delay}", pipeline.queue.names().main)).await;
    }
    pipeline.add_worker();
    let deadline = Instant::now() + Duration::from_secs(30);
    while pipeline.depth(".webhooks.dead").await == 0 {
        assert!(
            Instant::now() < deadline,
            "the event never reached the parking queue: {:?}",
            pipeline.queue.depths().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let parked = pipeline.queue.dead_letters(10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].attempt, 2, "every attempt was made");
}

/// While the main queue is gone, concurrent publishes share the publishing
/// connection: every event answered 200 must be in the queue, none lost to
/// a return read as another publish's. (A guard: on this broker the window
/// is one publish wide, since the first return redeclares the topology, so
/// it did not catch the shared-channel misattribution the channel pool
/// fixes; that was found by reading lapin.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_while_unroutable_acknowledge_only_what_was_queued() {
    let pipeline = Pipeline::start(0, &[]).await;
    let first = charge("charge.success", 100, "concurrent-0", 1_000);
    assert_eq!(pipeline.post(&first).await.status(), 200);
    delete_queue(&pipeline.queue.names().main).await;

    let (http, base) = pipeline.app.clone_http();
    let posts = (1..=1_000).map(|i| {
        let (http, url) = (http.clone(), format!("{base}/v1/webhooks/sandbox"));
        let body = charge("charge.success", 100 + i, &format!("concurrent-{i}"), 1_000);
        async move {
            http.post(url)
                .header("content-type", "application/json")
                .header(
                    "x-paystack-signature",
                    paystack::sign_webhook(SANDBOX_SECRET_KEY.as_bytes(), &body),
                )
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(posts).await;
    let acknowledged = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(acknowledged < 1_000, "some publishes met the missing queue");
    assert_eq!(
        pipeline.depth(".webhooks").await as usize,
        acknowledged,
        "every acknowledged event is queued"
    );
}

/// Publishes sharing the publishing lanes, some routable and some not (the
/// parking queue deleted behind payorch's back), answered in the same
/// rounds: each is answered for itself. Every publish to the main queue is
/// confirmed (none takes another's return), and every park answered `Ok`
/// is in the parking queue (no return is lost to another's confirm).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routable_and_unroutable_publishes_sharing_a_round_are_each_answered_for_themselves() {
    let prefix = crate::helpers::random_name("mixed");
    let policy = payorch::queue::RetryPolicy {
        delays: vec![Duration::from_millis(100)],
    };
    let own = crate::helpers::OwnTopology(AmqpQueue::new(AMQP, &prefix, policy));
    let queue = &own.0;
    queue.check().await.unwrap();
    let envelope = |i: usize| crate::queue::envelope(&format!("mixed-{i}"));
    // The first return makes the next publish declare the topology again
    // (the parking queue with it), so the window is the rounds in flight
    // then: opened ten times, each time on a pool already made.
    const SENDS: usize = 400;
    for attempt in 0..10 {
        queue
            .publish(&envelope(usize::MAX - attempt))
            .await
            .unwrap();
        delete_queue(&queue.names().dead).await;
        let sends = (attempt * SENDS..(attempt + 1) * SENDS).map(|i| {
            let envelope = envelope(i);
            async move {
                if i % 2 == 0 {
                    queue.publish(&envelope).await
                } else {
                    queue.park(&envelope).await
                }
            }
        });
        let results = futures_util::future::join_all(sends).await;
        let published: Vec<_> = results.iter().step_by(2).collect();
        let parked: Vec<_> = results.iter().skip(1).step_by(2).collect();
        assert!(
            published.iter().all(|r| r.is_ok()),
            "a routed publish was refused: {published:?}"
        );
        assert!(
            parked
                .iter()
                .any(|r| matches!(r, Err(payorch::queue::QueueError::Unroutable))),
            "no park met the missing queue"
        );
        let parked_ok = parked.iter().filter(|r| r.is_ok()).count();
        let depths: HashMap<String, u32> = queue.depths().await.unwrap().into_iter().collect();
        assert_eq!(
            depths[&queue.names().main] as usize,
            (attempt + 1) * (SENDS / 2 + 1),
            "every publish is in the main queue"
        );
        assert_eq!(
            depths.get(&queue.names().dead).copied().unwrap_or(0) as usize,
            parked_ok,
            "every park answered Ok is parked"
        );
    }
}

/// Consumers on the main queue, as the broker counts them.
async fn consumers(pipeline: &Pipeline) -> u32 {
    let (conn, channel) = pipeline.queue.consumer_channel(1).await.unwrap();
    let queue = channel
        .queue_declare(
            pipeline.queue.names().main.as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = conn.close(200, "counted".into()).await;
    queue.consumer_count()
}

/// The worst moment to die: the batch's transaction has committed and its
/// acknowledgement has not reached the broker. The worker's connection
/// runs through a proxy that passes the broker's deliveries on but holds
/// everything the worker sends, so its ack never arrives; it is killed
/// with SIGKILL once the database holds the batch. The broker redelivers
/// every event to the next worker, which finds each one recorded: nothing
/// is applied twice, nothing is left in any queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_commit_and_ack_applies_nothing_twice() {
    const EVENTS: i64 = 24;
    let pipeline = Pipeline::start(0, &[]).await;
    let proxy = crate::helpers::TcpProxy::start("127.0.0.1:5672").await;
    let mut through_proxy = pipeline.env.clone();
    through_proxy.insert(
        "AMQP_URL".into(),
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port),
    );
    let mut references = Vec::new();
    for _ in 0..EVENTS {
        let payment = pipeline.app.new_payment(3_000).await;
        references.push(payment["reference"].as_str().unwrap().to_owned());
    }
    let mut doomed = WorkerProcess::spawn(&through_proxy);
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumers(&pipeline).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the worker never started consuming"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let versions = "SELECT SUM(version)::bigint FROM payments";
    let versions_before = scalar(&pipeline.app.db, versions).await;
    proxy.hold_upstream(true);
    for (id, reference) in references.iter().enumerate() {
        let body = charge("charge.success", 9_000 + id as i64, reference, 3_000);
        assert_eq!(pipeline.post(&body).await.status(), 200);
    }
    // Committed: every event is recorded and every payment succeeded.
    pipeline.processed(EVENTS, Duration::from_secs(60)).await;
    doomed.signal("-KILL");
    doomed.wait();
    proxy.cut();
    // Unacknowledged, so the broker has every event back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pipeline.depth(".webhooks").await < EVENTS as u32 {
        assert!(
            Instant::now() < deadline,
            "the broker never got the events back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut next = WorkerProcess::spawn(&pipeline.env);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pipeline.queues_empty().await {
        assert!(
            Instant::now() < deadline,
            "the redeliveries were never taken"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A clean stop settles what it holds; then nothing is left unacknowledged.
    next.signal("-TERM");
    assert_eq!(next.wait(), Some(0));
    assert!(
        pipeline.queues_empty().await,
        "every redelivery acknowledged"
    );
    let db = &pipeline.app.db;
    assert_eq!(
        scalar(db, "SELECT COUNT(*) FROM webhook_events").await,
        EVENTS
    );
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM payment_transitions WHERE event_id IS NOT NULL"
        )
        .await,
        EVENTS,
        "one audit row per event"
    );
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM payments WHERE status = 'succeeded'"
        )
        .await,
        EVENTS,
        "every payment succeeded"
    );
    assert_eq!(
        scalar(db, versions).await,
        versions_before + EVENTS,
        "each by one change"
    );
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM events WHERE type = 'payment.succeeded'"
        )
        .await,
        EVENTS,
        "one merchant event per payment"
    );
}
