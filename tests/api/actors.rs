//! The actor registry: actors leave when idle, and a message that races an
//! eviction is still processed, exactly once.

use std::{sync::Arc, time::Duration};

use payorch::{
    actors::{ActorSystem, Command, PaymentRegistry},
    config::{SANDBOX_SECRET_KEY, Secret},
    domain::{Amount, Currency, Email, Reference},
    payments::{NewPaymentRequest, PaymentService},
    provider::paystack::PaystackClient,
    store,
};
use tokio::sync::oneshot;

use crate::helpers::{SendJson, TestDb};

struct Fixture {
    registry: PaymentRegistry,
    sandbox: String,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
    _db: TestDb,
}

async fn fixture(idle: Duration) -> Fixture {
    crate::helpers::init_logs();
    let test_db = TestDb::postgres().await;
    let db = test_db.connect().await;
    store::migrate(&db, &test_db.url.parse().unwrap())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let cfg = Arc::new(payorch::Config::from_lookup(|_| None).unwrap());
    tokio::spawn(payorch::serve_sandbox(cfg, listener, async {
        let _ = stopped.await;
    }));
    let provider = Arc::new(PaystackClient::new(
        "sandbox",
        sandbox.parse().unwrap(),
        Secret::new(SANDBOX_SECRET_KEY),
        Duration::from_secs(5),
    ));
    let service = Arc::new(PaymentService { db, provider });
    let registry = PaymentRegistry::new(service, ActorSystem::start(2).unwrap(), idle, 64);
    Fixture {
        registry,
        sandbox,
        http: reqwest::Client::new(),
        _stop: stop,
        _db: test_db,
    }
}

impl Fixture {
    async fn pending_payment(&self) -> String {
        let service = self.registry.service();
        let (client, _) = store::api_clients::create(&service.db, "c").await.unwrap();
        let request = NewPaymentRequest {
            reference: Reference::generate(),
            amount: Amount::new(100).unwrap(),
            currency: Currency::NGN,
            email: Email::parse("a@b.co").unwrap(),
            callback_url: None,
            metadata: None,
        };
        let payment = service
            .create(&service.db, client.id, &request)
            .await
            .unwrap();
        let payment = self
            .registry
            .call(
                &payment.reference,
                Command::Initialize {
                    callback_url: None,
                    resumed: false,
                },
            )
            .await
            .unwrap();
        assert_eq!(payment.status, "pending");
        payment.reference
    }

    async fn verify_calls(&self) -> u64 {
        let stats: serde_json::Value = self
            .http
            .get(format!("{}/_control/stats", self.sandbox))
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
    assert_eq!(fixture.registry.len(), 5);
    eventually("the registry is empty", || fixture.registry.is_empty()).await;
    // A payment whose actor left gets a new one on the next message.
    let payment = fixture
        .registry
        .call(&references[0], Command::Verify)
        .await
        .unwrap();
    assert_eq!(payment.status, "pending");
    assert_eq!(fixture.registry.len(), 1);
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
            .registry
            .call(&reference, Command::Verify)
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
    let calls = (0..40).map(|_| fixture.registry.call(&reference, Command::Verify));
    for result in futures_util::future::join_all(calls).await {
        assert_eq!(result.unwrap().status, "pending");
    }
    assert_eq!(fixture.registry.len(), 1);
}
