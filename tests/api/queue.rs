//! The in-process queue (a table in payorch's database) on PostgreSQL and
//! SQLite: order, retries, parking, replay, draining on shutdown — and that
//! `serve` without RabbitMQ loses no acknowledged webhook when it is
//! stopped, or killed, before applying them.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use payorch::{
    config::SANDBOX_SECRET_KEY,
    domain::webhook as event,
    provider::paystack,
    queue::{Disposition, Envelope, QueueMessage, RetryPolicy, table::TableQueue},
    store,
};
use serde_json::json;
use tokio::sync::oneshot;

use crate::helpers::{TestDb, payorch_command, random_name};

async fn queue_on(db: &TestDb, delays_ms: &[u64]) -> TableQueue {
    crate::helpers::init_logs();
    let conn = db.connect().await;
    store::migrate(&conn, &db.url.parse().unwrap())
        .await
        .unwrap();
    let retry = RetryPolicy {
        delays: delays_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect(),
    };
    TableQueue::new(conn, &random_name("q"), retry)
}

/// A webhook's queue message for the payment `key`.
pub fn envelope(key: &str) -> Envelope {
    let body = json!({"event": "charge.failed", "data": {"reference": key}});
    let text = body.to_string();
    let event = paystack::parse_event(text.as_bytes()).unwrap();
    Envelope {
        message: QueueMessage::WebhookV2(event::ReceivedWebhook {
            provider: "sandbox".into(),
            event,
            payload: event::RawJson::new(text),
            received_at: chrono::Utc::now(),
            request_id: None,
        }),
        attempt: 0,
        reason: None,
    }
}

/// What a consumer saw: (dedup key, attempt, reason).
type Seen = Arc<Mutex<Vec<(String, u32, Option<String>)>>>;

/// Consumes until `until` messages were handled, deciding each with `decide`.
async fn consume_until(
    queue: &TableQueue,
    until: usize,
    decide: impl Fn(&Envelope) -> Disposition + Clone + Send + Sync + 'static,
) -> Vec<(String, u32, Option<String>)> {
    let seen: Seen = Arc::default();
    let (done, finished) = oneshot::channel::<()>();
    let done = Arc::new(Mutex::new(Some(done)));
    let handler_seen = seen.clone();
    let consuming = queue.consume(
        8,
        async {
            let _ = finished.await;
        },
        move |envelope| {
            let (seen, done, decide) = (handler_seen.clone(), done.clone(), decide.clone());
            async move {
                let disposition = decide(&envelope);
                let mut seen = seen.lock().unwrap();
                seen.push((
                    envelope.message.dedup_key().to_owned(),
                    envelope.attempt,
                    envelope.reason.clone(),
                ));
                if seen.len() == until
                    && let Some(done) = done.lock().unwrap().take()
                {
                    let _ = done.send(());
                }
                disposition
            }
        },
    );
    tokio::time::timeout(Duration::from_secs(20), consuming)
        .await
        .expect("the consumer handled what it was given and stopped");
    seen.lock().unwrap().clone()
}

async fn order_and_ack(db: TestDb) {
    let queue = queue_on(&db, &[]).await;
    for i in 0..20 {
        queue.publish(&envelope(&format!("r{i:02}"))).await.unwrap();
    }
    let seen = consume_until(&queue, 20, |_| Disposition::Ack).await;
    let mut keys: Vec<_> = seen.iter().map(|(key, ..)| key.clone()).collect();
    keys.sort();
    let expected: Vec<_> = (0..20).map(|i| format!("charge.failed:r{i:02}")).collect();
    assert_eq!(keys, expected, "each message exactly once");
    assert_eq!(queue.depths().await.unwrap(), (0, 0), "acked rows are gone");
}

#[tokio::test]
async fn every_published_message_is_consumed_once_and_acked_on_postgres() {
    order_and_ack(TestDb::postgres().await).await;
}

#[tokio::test]
async fn every_published_message_is_consumed_once_and_acked_on_sqlite() {
    order_and_ack(TestDb::sqlite()).await;
}

async fn retry_park_replay(db: TestDb) {
    let queue = queue_on(&db, &[20, 20]).await;
    queue.publish(&envelope("late")).await.unwrap();
    let seen = consume_until(&queue, 3, |e| {
        Disposition::Retry(format!("try {}", e.attempt))
    })
    .await;
    let attempts: Vec<_> = seen.iter().map(|(_, a, r)| (*a, r.clone())).collect();
    assert_eq!(
        attempts,
        vec![
            (0, None),
            (1, Some("try 0".into())),
            (2, Some("try 1".into()))
        ]
    );
    // After the last tier it is parked with its reason, not dropped.
    assert_eq!(queue.depths().await.unwrap(), (0, 1));
    let parked = queue.dead_letters(10).await.unwrap();
    assert_eq!(parked[0].reason.as_deref(), Some("try 2"));
    assert_eq!(parked[0].attempt, 2);
    // An operator replays it: fresh attempts, consumed again.
    assert_eq!(queue.replay(Some("charge.failed:late")).await.unwrap(), 1);
    let seen = consume_until(&queue, 1, |_| Disposition::Ack).await;
    assert_eq!(seen[0].1, 0);
    assert_eq!(queue.depths().await.unwrap(), (0, 0));
}

#[tokio::test]
async fn retries_come_back_then_park_and_replay_restarts_them_on_postgres() {
    retry_park_replay(TestDb::postgres().await).await;
}

#[tokio::test]
async fn retries_come_back_then_park_and_replay_restarts_them_on_sqlite() {
    retry_park_replay(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_stopping_consumer_drains_what_is_ready() {
    let db = TestDb::sqlite();
    let queue = queue_on(&db, &[]).await;
    for i in 0..50 {
        queue.publish(&envelope(&format!("d{i}"))).await.unwrap();
    }
    let handled = Arc::new(Mutex::new(0));
    let counter = handled.clone();
    // Shutdown is asked for before the first message is taken.
    let consuming = queue.consume(4, async {}, move |_| {
        let counter = counter.clone();
        async move {
            *counter.lock().unwrap() += 1;
            Disposition::Ack
        }
    });
    tokio::time::timeout(Duration::from_secs(20), consuming)
        .await
        .unwrap();
    assert_eq!(*handled.lock().unwrap(), 50);
    assert_eq!(queue.depths().await.unwrap(), (0, 0));
}

/// `payorch serve` in embedded mode in `dir`, once it answers.
struct Embedded {
    child: Child,
    addr: String,
}

/// Sixty quick retries: the events keep coming back long after the restart.
fn quick_retries() -> String {
    vec!["250"; 60].join(",")
}

impl Embedded {
    fn start(dir: &std::path::Path, addr: &str) -> (Embedded, Option<String>) {
        let mut child = payorch_command()
            .arg("serve")
            .current_dir(dir)
            .env("PAYORCH_HTTP_ADDR", addr)
            .env("PAYORCH_RATE_LIMITS", crate::helpers::GENEROUS_LIMITS)
            .env("PAYORCH_WEBHOOK_RETRY_DELAYS_MS", quick_retries())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut key = None;
        loop {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "serve exited");
            if let Some((_, printed)) = line.split_once("dev API key (shown once, stored hashed): ")
            {
                key = Some(printed.trim().to_owned());
            }
            if line.contains("API clients exist") || key.is_some() {
                break;
            }
        }
        // Logs go to stdout too: keep reading so the pipe never fills.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        (
            Embedded {
                child,
                addr: addr.to_owned(),
            },
            key,
        )
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn signal(&mut self, signal: &str) {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "serve did not exit on {signal}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Webhooks acknowledged while their payments cannot be applied (their
/// rows unreadable, as after a bad hand edit) wait in the queue,
/// retrying; `serve` is stopped with `signal` meanwhile. After a restart
/// the rows are mended and every webhook is applied.
async fn acknowledged_webhooks_survive(signal: &str) {
    payorch::install_crypto_provider();
    let dir = std::env::temp_dir().join(random_name("payorch_restart"));
    std::fs::create_dir_all(&dir).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    // No pooled connection may outlive the first process.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    const EVENTS: usize = 20;
    let reference = |i: usize| format!("restart{}{i}", signal.trim_start_matches('-'));
    let set_status = |status: &'static str| {
        let url = format!("sqlite://{}?mode=rw", dir.join("payorch.db").display());
        async move {
            use sea_orm::ConnectionTrait;
            let db = sea_orm::Database::connect(url).await.unwrap();
            db.execute_unprepared(&format!("UPDATE payments SET status = '{status}'"))
                .await
                .unwrap();
            db.close().await.unwrap();
        }
    };

    let (mut first, key) = Embedded::start(&dir, &addr);
    let key = key.expect("a first start prints a dev key");
    for i in 0..EVENTS {
        let response = http
            .post(first.url("/v1/payments/initialize"))
            .bearer_auth(&key)
            .json(&json!({"amount": 1_500, "currency": "NGN",
                "email": "ada@example.com", "reference": reference(i)}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    set_status("unreadable").await;
    for i in 0..EVENTS {
        let body = json!({"event": "charge.success", "data": {
            "id": 9_000 + i, "reference": reference(i), "amount": 1_500,
            "currency": "NGN", "status": "success"}})
        .to_string();
        let response = http
            .post(first.url("/v1/webhooks/sandbox"))
            .header(
                "x-paystack-signature",
                paystack::sign_webhook(SANDBOX_SECRET_KEY.as_bytes(), body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "acknowledged");
    }
    first.signal(signal);

    let (second, _) = Embedded::start(&dir, &addr);
    set_status("pending").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..EVENTS {
        loop {
            let payment: serde_json::Value = http
                .get(second.url(&format!("/v1/payments/{}", reference(i))))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if payment["status"] == "succeeded" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "webhook {i} was acknowledged but never applied: {payment}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn embedded_serve_stopped_with_sigterm_loses_no_acknowledged_webhook() {
    acknowledged_webhooks_survive("-TERM").await;
}

#[tokio::test]
async fn embedded_serve_killed_loses_no_acknowledged_webhook() {
    acknowledged_webhooks_survive("-KILL").await;
}

#[tokio::test]
async fn a_handler_that_panics_sends_its_message_to_the_retry_tier() {
    let db = TestDb::sqlite();
    let queue = queue_on(&db, &[10]).await;
    let facade = payorch::queue::WebhookQueue::Table(queue.clone());
    facade.publish(&envelope("boom")).await.unwrap();
    let seen: Seen = Arc::default();
    let (done, finished) = oneshot::channel::<()>();
    let done = Arc::new(Mutex::new(Some(done)));
    let handler_seen = seen.clone();
    let consuming = facade.consume(
        4,
        async {
            let _ = finished.await;
        },
        move |envelope| {
            let (seen, done) = (handler_seen.clone(), done.clone());
            async move {
                let attempt = envelope.attempt;
                seen.lock().unwrap().push((
                    envelope.message.dedup_key().to_owned(),
                    attempt,
                    envelope.reason.clone(),
                ));
                if attempt == 0 {
                    panic!("a bug in the handler");
                }
                if let Some(done) = done.lock().unwrap().take() {
                    let _ = done.send(());
                }
                Disposition::Ack
            }
        },
    );
    tokio::time::timeout(Duration::from_secs(20), consuming)
        .await
        .expect("the panicked message came back and was handled");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].1, 1, "a second attempt");
    assert_eq!(seen[1].2.as_deref(), Some("handling panicked"));
    assert_eq!(queue.depths().await.unwrap(), (0, 0));
}

/// A consumer that outlives its lease (a stalled process): another takes
/// the message over and asks for a retry; the stalled one's late
/// acknowledgement changes nothing, and the retry comes back.
#[tokio::test]
async fn a_consumer_that_outlived_its_lease_cannot_settle_the_message_another_took_over() {
    crate::helpers::init_logs();
    let db = TestDb::postgres().await;
    let conn = db.connect().await;
    store::migrate(&conn, &db.url.parse().unwrap())
        .await
        .unwrap();
    let prefix = random_name("q");
    let retry = RetryPolicy {
        delays: vec![Duration::from_millis(500)],
    };
    let stalled = TableQueue::new(conn.clone(), &prefix, retry.clone())
        .leased_for(Duration::from_millis(200));
    let other = TableQueue::new(db.connect().await, &prefix, retry);
    stalled.publish(&envelope("r1")).await.unwrap();

    let seen: Seen = Arc::default();
    let record = |seen: &Seen, who: &str, envelope: &Envelope| {
        seen.lock().unwrap().push((
            envelope.message.dedup_key().to_owned(),
            envelope.attempt,
            Some(who.to_owned()),
        ));
    };
    // The stalled consumer holds its first message until released.
    let (taken, taken_rx) = oneshot::channel::<()>();
    let (release, released) = oneshot::channel::<()>();
    let gate = Arc::new(Mutex::new((Some(taken), Some(released))));
    let (stop_stalled, stalled_stop) = oneshot::channel::<()>();
    let stalled_seen = seen.clone();
    let stalled_run = tokio::spawn(async move {
        stalled
            .consume(
                1,
                async {
                    let _ = stalled_stop.await;
                },
                move |envelope| {
                    record(&stalled_seen, "stalled", &envelope);
                    let (taken, released) = {
                        let mut gate = gate.lock().unwrap();
                        (gate.0.take(), gate.1.take())
                    };
                    async move {
                        if let (Some(taken), Some(released)) = (taken, released) {
                            let _ = taken.send(());
                            let _ = released.await;
                        }
                        Disposition::Ack
                    }
                },
            )
            .await
    });
    taken_rx.await.unwrap();

    // Its lease runs out; the other consumer takes the message and asks
    // for a retry.
    let (stop_other, other_stop) = oneshot::channel::<()>();
    let other_seen = seen.clone();
    let other_run = tokio::spawn(async move {
        other
            .consume(
                1,
                async {
                    let _ = other_stop.await;
                },
                move |envelope| {
                    record(&other_seen, "other", &envelope);
                    let attempt = envelope.attempt;
                    async move {
                        if attempt == 0 {
                            Disposition::Retry("taken over".into())
                        } else {
                            Disposition::Ack
                        }
                    }
                },
            )
            .await
    });
    use sea_orm::ConnectionTrait;
    let attempt_of = || async {
        conn.query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT attempt FROM queued_messages WHERE queue = '{prefix}.webhooks'"),
        ))
        .await
        .unwrap()
        .map(|row| row.try_get_by_index::<i32>(0).unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while attempt_of().await != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the other consumer never retried it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The stalled consumer wakes and acknowledges: nothing changes.
    let _ = release.send(());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let retried = seen
            .lock()
            .unwrap()
            .iter()
            .any(|(_, attempt, _)| *attempt == 1);
        if retried {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the retry never came back: {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_stalled.send(());
    let _ = stop_other.send(());
    stalled_run.await.unwrap();
    other_run.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].2.as_deref(), Some("stalled"), "{seen:?}");
    assert!(
        seen.iter()
            .any(|(_, attempt, who)| *attempt == 0 && who.as_deref() == Some("other")),
        "{seen:?}"
    );
    drop(conn);
    drop(db);
}
