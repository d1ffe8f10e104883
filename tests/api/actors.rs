//! The payment core's actors: they leave when idle, and a message that races an
//! eviction is still processed, exactly once. Two registries on one
//! database (two processes) apply one payment's events one at a time.

use std::{sync::Arc, time::Duration};

use payorch::{
    config::SANDBOX_SECRET_KEY,
    domain::{Amount, Currency, Reference},
    payments::{Answer, PaymentError, Payments, Rendered, WebhookApplied},
    provider::paystack::PaystackClient,
    store::{self, payments::Payment},
};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::helpers::{SandboxServer, SendJson, TestDb, payment_request, start_payments};

struct Fixture {
    payments: Payments,
    db: DatabaseConnection,
    client_id: Uuid,
    provider: Arc<PaystackClient>,
    sandbox: SandboxServer,
    http: reqwest::Client,
    _db: TestDb,
}

async fn fixture(idle: Duration) -> Fixture {
    crate::helpers::init_logs();
    let test_db = TestDb::postgres().await;
    let db = test_db.connect().await;
    store::migrate(&db, &test_db.url.parse().unwrap())
        .await
        .unwrap();
    let sandbox = SandboxServer::start().await;
    let provider = sandbox.client("sandbox");
    let payments = start_payments(db.clone(), provider.clone(), idle);
    let (client, _) = store::api_clients::create(&db, "c").await.unwrap();
    Fixture {
        payments,
        db,
        client_id: client.id,
        provider,
        sandbox,
        http: reqwest::Client::new(),
        _db: test_db,
    }
}

/// The created payment's reference, or the error's words.
fn reference_or_error(result: Result<Payment, PaymentError>) -> Rendered {
    match result {
        Ok(payment) => Rendered {
            status: 201,
            body: payment.reference,
        },
        Err(err) => Rendered {
            status: 500,
            body: err.to_string(),
        },
    }
}

impl Fixture {
    async fn pending_payment(&self) -> String {
        let request = payment_request(Reference::generate(), 100);
        let answer = self
            .payments
            .initialize(self.client_id, None, Ok(request), reference_or_error)
            .await
            .unwrap();
        let Answer::Fresh(Rendered {
            status: 201,
            body: reference,
        }) = answer
        else {
            panic!("not initialized: {answer:?}");
        };
        let (payment, _) = self.payments.get(self.client_id, &reference).await.unwrap();
        assert_eq!(payment.status, "pending");
        reference
    }

    async fn verify(&self, reference: &str) -> Result<Payment, PaymentError> {
        self.payments.verify(self.client_id, reference).await
    }

    /// Another process's payment core: its own actors and its own pool, same database.
    async fn second_process(&self) -> Payments {
        start_payments(
            self._db.connect().await,
            self.provider.clone(),
            Duration::from_secs(60),
        )
    }

    async fn verify_calls(&self) -> u64 {
        let stats: serde_json::Value = self
            .http
            .get(format!("{}/_control/stats", self.sandbox.url))
            .bearer_auth(SANDBOX_SECRET_KEY)
            .json_body()
            .await;
        stats["verify_calls"].as_u64().unwrap()
    }
}

/// Polls a cheap in-memory condition until it holds (or fails the test).
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn idle_actors_leave_the_registry() {
    let fixture = fixture(Duration::from_millis(500)).await;
    let mut references = Vec::new();
    for _ in 0..5 {
        references.push(fixture.pending_payment().await);
    }
    assert_eq!(fixture.payments.live_actors(), 5);
    eventually("the registry is empty", || {
        fixture.payments.live_actors() == 0
    })
    .await;
    // A payment whose actor left gets a new one on the next message.
    let payment = fixture.verify(&references[0]).await.unwrap();
    assert_eq!(payment.status, "pending");
    assert_eq!(fixture.payments.live_actors(), 1);
}

#[tokio::test]
async fn messages_racing_evictions_are_each_processed_exactly_once() {
    // An idle time so short that evictions run constantly between messages.
    let fixture = fixture(Duration::from_millis(1)).await;
    let reference = fixture.pending_payment().await;
    let before = fixture.verify_calls().await;
    let rounds = 200;
    for round in 0..rounds {
        // Let the actor go idle (or not) by a varying margin.
        if round % 3 == 0 {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_micros((round % 7) * 300)).await;
        }
        let payment = fixture
            .verify(&reference)
            .await
            .expect("every message is served, whatever the eviction timing");
        assert_eq!(payment.status, "pending");
    }
    // The payment stayed pending, so each verify reached the provider once.
    assert_eq!(fixture.verify_calls().await - before, rounds);
}

#[tokio::test]
async fn concurrent_messages_for_one_payment_run_one_at_a_time() {
    let fixture = fixture(Duration::from_secs(60)).await;
    let reference = fixture.pending_payment().await;
    let calls = (0..40).map(|_| fixture.verify(&reference));
    for result in futures_util::future::join_all(calls).await {
        assert_eq!(result.unwrap().status, "pending");
    }
    assert_eq!(fixture.payments.live_actors(), 1);
}

#[tokio::test]
async fn two_processes_apply_conflicting_events_of_one_payment_one_at_a_time() {
    use payorch::{domain::PaymentEvent, store::webhooks::WebhookRecord};
    let fixture = fixture(Duration::from_secs(60)).await;
    let other = fixture.second_process().await;
    let reference = fixture.pending_payment().await;
    // Distinct events delivered at once through both processes: mostly
    // "still pending" (ignored while the payment is open, so they race the
    // rest), a few successes and failures.
    const EVENTS: usize = 60;
    let record = |i: usize| {
        let (event_type, event) = match i % 6 {
            0 => (
                "charge.success",
                PaymentEvent::ChargeSucceeded {
                    amount: Amount::new(100).unwrap(),
                    currency: Currency::NGN,
                },
            ),
            3 => ("charge.failed", PaymentEvent::ChargeFailed),
            _ => ("charge.pending", PaymentEvent::ChargePending),
        };
        let record = WebhookRecord {
            provider: "sandbox".into(),
            event_id: format!("evt-{i}"),
            event_type: event_type.into(),
            reference: reference.clone(),
            payload: serde_json::json!({"i": i}),
            received_at: chrono::Utc::now(),
        };
        (record, event)
    };
    let sends = (0..EVENTS).map(|i| {
        let payments = if i % 4 < 2 { &fixture.payments } else { &other };
        let (record, event) = record(i);
        payments.apply_webhook(record, event)
    });
    for result in futures_util::future::join_all(sends).await {
        assert!(
            matches!(result.unwrap(), WebhookApplied::Applied(..)),
            "every event is new"
        );
    }

    let db = &fixture.db;
    let payment = store::payments::find_by_reference(db, &reference)
        .await
        .unwrap()
        .unwrap();
    assert!(payment.status == "succeeded" || payment.status == "failed");
    let transitions = store::payments::transitions(db, payment.id).await.unwrap();
    let from_webhooks: Vec<_> = transitions
        .iter()
        .filter(|t| t.event_id.is_some())
        .collect();
    assert_eq!(from_webhooks.len(), EVENTS, "one audit row per event");
    let into_final = from_webhooks
        .iter()
        .filter(|t| t.from_status == "pending" && t.to_status != "pending")
        .count();
    assert_eq!(into_final, 1, "exactly one event closed the payment");
    // Serialized: each row starts where the one before it ended.
    for pair in transitions.windows(2) {
        assert_eq!(pair[1].from_status, pair[0].to_status, "{pair:?}");
    }
    assert_eq!(transitions.last().unwrap().to_status, payment.status);
}
