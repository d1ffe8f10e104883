//! Provider webhooks applied many at a time (`Payments::apply_webhooks`, the
//! workers' path): on PostgreSQL in one transaction, each event exactly
//! once and each payment's in queue order; on SQLite one by one, with the
//! same results.
//!
//! The batches are applied by a core of their own (`Fixture::worker`), as a
//! worker process has. Its actors serve only the one-by-one path, so on
//! PostgreSQL "it has none" proves a batch went through in one transaction
//! rather than through the fallback.

use std::{sync::Arc, time::Duration};

use payorch::{
    domain::{Amount, Currency, IgnoreReason, Outcome, PaymentEvent, PaymentStatus, Reference},
    payments::{Answer, PaymentError, Payments, Rendered, WebhookApplied, WebhookEvent},
    provider::paystack::PaystackClient,
    store::{
        self,
        entities::{event, payment, payment_transition, webhook_event},
        payments::{Payment, Transition},
        webhooks::WebhookRecord,
    },
};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use uuid::Uuid;

use crate::helpers::{SandboxServer, TestDb, payment_request, start_payments};

/// The connector that holds the test payments, as its webhooks name it
/// (the sandbox speaks Paystack's dialect; the payments store `paystack`).
const PROVIDER: &str = "sandbox";
/// What every test payment asks for, in NGN.
const AMOUNT: i64 = 5_000;

type Applied = Result<WebhookApplied, PaymentError>;

struct Fixture {
    /// Creates the payments (initialize, through the sandbox).
    creator: Payments,
    /// Applies the batches: its own core and pool, like a worker process.
    worker: Payments,
    db: DatabaseConnection,
    client_id: Uuid,
    provider: Arc<PaystackClient>,
    _sandbox: SandboxServer,
    test_db: TestDb,
}

async fn fixture(test_db: TestDb) -> Fixture {
    crate::helpers::init_logs();
    let db = test_db.connect().await;
    store::migrate(&db, &test_db.url.parse().unwrap())
        .await
        .unwrap();
    let sandbox = SandboxServer::start().await;
    let provider = sandbox.client(PROVIDER);
    let creator = core(db.clone(), provider.clone());
    let worker = core(test_db.connect().await, provider.clone());
    let (client, _) = store::api_clients::create(&db, "batch").await.unwrap();
    Fixture {
        creator,
        worker,
        db,
        client_id: client.id,
        provider,
        _sandbox: sandbox,
        test_db,
    }
}

/// One process's payment core on `db`; actors idle long enough to still
/// be there when a test counts them.
fn core(db: DatabaseConnection, provider: Arc<PaystackClient>) -> Payments {
    start_payments(db, provider, Duration::from_secs(600))
}

impl Fixture {
    /// The worker's events went through the batch: no payment actor was
    /// started for them.
    fn assert_batched(&self) {
        assert_eq!(self.worker.live_actors(), 0, "applied in one transaction");
    }

    /// Another worker process's core: its own actors and pool, same database.
    async fn another_worker(&self) -> Payments {
        core(self.test_db.connect().await, self.provider.clone())
    }

    /// A new payment, pending at the sandbox.
    async fn pending_payment(&self) -> Payment {
        self.pending_payment_as(Reference::generate()).await
    }

    /// A new payment under the client's `reference`, pending at the sandbox
    /// (and held there under that same reference).
    async fn pending_payment_as(&self, reference: Reference) -> Payment {
        let request = payment_request(reference.clone(), AMOUNT);
        let answer = self
            .creator
            .initialize(self.client_id, None, Ok(request), |result| match result {
                Ok(payment) => Rendered {
                    status: 201,
                    body: payment.reference,
                },
                Err(err) => Rendered {
                    status: 500,
                    body: err.to_string(),
                },
            })
            .await
            .unwrap();
        let Answer::Fresh(Rendered { status: 201, body }) = answer else {
            panic!("not initialized: {answer:?}");
        };
        assert_eq!(
            body,
            reference.as_str(),
            "held under the client's reference"
        );
        let payment = self.payment(&body).await;
        assert_eq!(payment.status, "pending");
        payment
    }

    /// The payment as stored now.
    async fn payment(&self, reference: &str) -> Payment {
        store::payments::find_by_reference(&self.db, reference)
            .await
            .unwrap()
            .expect("the payment exists")
    }

    /// The payment's audit rows written for the webhook `event_id`.
    async fn transitions_of(&self, payment: &Payment, event_id: &str) -> Vec<Transition> {
        store::payments::transitions(&self.db, payment.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.event_id.as_deref() == Some(event_id))
            .collect()
    }

    /// The dedup rows of (`PROVIDER`, `event_id`).
    async fn dedup_rows(&self, event_id: &str) -> Vec<webhook_event::Model> {
        webhook_event::Entity::find()
            .filter(webhook_event::Column::Provider.eq(PROVIDER))
            .filter(webhook_event::Column::EventId.eq(event_id))
            .all(&self.db)
            .await
            .unwrap()
    }

    /// The merchant events (outbox rows) of type `kind` about `payment`.
    async fn merchant_events(&self, payment: &Payment, kind: &str) -> u64 {
        event::Entity::find()
            .filter(event::Column::PaymentId.eq(payment.id))
            .filter(event::Column::Kind.eq(kind))
            .count(&self.db)
            .await
            .unwrap()
    }

    /// Rows in each table a webhook writes to, and every payment's version.
    async fn snapshot(&self) -> Snapshot {
        let mut versions: Vec<(String, i32)> = payment::Entity::find()
            .all(&self.db)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.reference, p.version))
            .collect();
        versions.sort();
        Snapshot {
            webhook_events: webhook_event::Entity::find().count(&self.db).await.unwrap(),
            transitions: payment_transition::Entity::find()
                .count(&self.db)
                .await
                .unwrap(),
            merchant_events: event::Entity::find().count(&self.db).await.unwrap(),
            versions,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    webhook_events: u64,
    transitions: u64,
    merchant_events: u64,
    versions: Vec<(String, i32)>,
}

/// A charge for exactly what the test payments ask.
fn succeeded() -> PaymentEvent {
    PaymentEvent::ChargeSucceeded {
        amount: Amount::new(AMOUNT).unwrap(),
        currency: Currency::NGN,
    }
}

/// The webhook `event_id` from `PROVIDER` about `reference`, carrying `event`.
fn webhook(event_id: &str, reference: &str, event: PaymentEvent) -> WebhookEvent {
    let event_type = match event {
        PaymentEvent::ChargeSucceeded { .. } => "charge.success",
        PaymentEvent::ChargeFailed => "charge.failed",
        _ => "charge.other",
    };
    WebhookEvent {
        record: WebhookRecord {
            provider: PROVIDER.into(),
            event_id: event_id.into(),
            event_type: event_type.into(),
            reference: reference.into(),
            payload: serde_json::json!({"event": event_type, "id": event_id}),
            received_at: chrono::Utc::now(),
        },
        event,
    }
}

/// The payment an applied event left and the state machine's verdict.
fn applied(result: &Applied) -> (&Payment, Outcome) {
    match result {
        Ok(WebhookApplied::Applied(payment, outcome)) => (&**payment, *outcome),
        other => panic!("not applied: {other:?}"),
    }
}

fn to(status: PaymentStatus) -> Outcome {
    Outcome::Applied { to: status }
}

/// The batch of tests 1 and 5: for A a success, then that same event
/// again (same provider and event id, a redelivery), then a second,
/// distinct success; for B a failure. Applied by `fixture.worker`; checks
/// every result and row. `a_writes`: how often A's row is written — once
/// under the batch's lock; on SQLite, read without a lock, each event
/// bumps the version (the proof its audit row was current).
async fn apply_the_mixed_batch(fixture: &Fixture, a_writes: i32) {
    let a = fixture.pending_payment().await;
    let b = fixture.pending_payment().await;
    let before = fixture.snapshot().await;
    let batch = vec![
        webhook("evt-a-1", &a.reference, succeeded()),
        webhook("evt-b-1", &b.reference, PaymentEvent::ChargeFailed),
        webhook("evt-a-1", &a.reference, succeeded()),
        webhook("evt-a-2", &a.reference, succeeded()),
    ];

    let results = fixture.worker.apply_webhooks(batch).await;

    assert_eq!(results.len(), 4, "{results:?}");
    let (after_a1, outcome) = applied(&results[0]);
    assert_eq!(outcome, to(PaymentStatus::Succeeded));
    assert_eq!(after_a1.status, "succeeded");
    assert_eq!(after_a1.version, a.version + 1);
    let (after_b1, outcome) = applied(&results[1]);
    assert_eq!(outcome, to(PaymentStatus::Failed));
    assert_eq!(after_b1.status, "failed");
    assert!(
        matches!(results[2], Ok(WebhookApplied::Duplicate)),
        "the repeated event is a duplicate: {:?}",
        results[2]
    );
    let (after_a2, outcome) = applied(&results[3]);
    assert_eq!(
        outcome,
        Outcome::Ignored(IgnoreReason::Duplicate),
        "a second success is never credited"
    );
    assert_eq!(after_a2.status, "succeeded");

    let (a_now, b_now) = (
        fixture.payment(&a.reference).await,
        fixture.payment(&b.reference).await,
    );
    assert_eq!(a_now.status, "succeeded");
    assert_eq!(b_now.status, "failed");
    assert_eq!(a_now.version, a.version + a_writes);
    assert_eq!(b_now.version, b.version + 1);

    // One dedup row per distinct event, carrying its outcome.
    for (event_id, outcome) in [
        ("evt-a-1", "applied:succeeded"),
        ("evt-a-2", "ignored:duplicate"),
        ("evt-b-1", "applied:failed"),
    ] {
        let rows = fixture.dedup_rows(event_id).await;
        assert_eq!(rows.len(), 1, "{event_id}: {rows:?}");
        assert_eq!(rows[0].outcome.as_deref(), Some(outcome), "{event_id}");
    }

    // One audit row per event that was not a duplicate, in queue order:
    // A's first event is the one that moved it.
    for (payment, event_id, from, into) in [
        (&a, "evt-a-1", "pending", "succeeded"),
        (&a, "evt-a-2", "succeeded", "succeeded"),
        (&b, "evt-b-1", "pending", "failed"),
    ] {
        let rows = fixture.transitions_of(payment, event_id).await;
        assert_eq!(rows.len(), 1, "{event_id}: {rows:?}");
        assert_eq!(
            (rows[0].from_status.as_str(), rows[0].to_status.as_str()),
            (from, into),
            "{event_id}"
        );
    }

    // The merchant hears of each change once, and of nothing else.
    assert_eq!(fixture.merchant_events(&a, "payment.succeeded").await, 1);
    assert_eq!(fixture.merchant_events(&b, "payment.failed").await, 1);
    let after = fixture.snapshot().await;
    assert_eq!(after.webhook_events - before.webhook_events, 3);
    assert_eq!(after.transitions - before.transitions, 3);
    assert_eq!(after.merchant_events - before.merchant_events, 2);
}

#[tokio::test]
async fn a_batch_applies_each_event_once_in_queue_order() {
    let fixture = fixture(TestDb::postgres().await).await;
    apply_the_mixed_batch(&fixture, 1).await;
    fixture.assert_batched();
}

#[tokio::test]
async fn a_batch_replayed_whole_changes_nothing() {
    let fixture = fixture(TestDb::postgres().await).await;
    let (a, b) = (
        fixture.pending_payment().await,
        fixture.pending_payment().await,
    );
    let batch = vec![
        webhook("evt-a-1", &a.reference, succeeded()),
        webhook("evt-b-1", &b.reference, PaymentEvent::ChargeFailed),
        webhook("evt-a-2", &a.reference, succeeded()),
    ];
    let first = fixture.worker.apply_webhooks(batch.clone()).await;
    assert!(
        first
            .iter()
            .all(|r| matches!(r, Ok(WebhookApplied::Applied(..)))),
        "{first:?}"
    );
    let committed = fixture.snapshot().await;

    // Redelivered whole, as after a crash between the commit and the acks.
    let replayed = fixture.worker.apply_webhooks(batch).await;

    assert_eq!(replayed.len(), 3);
    for result in &replayed {
        assert!(
            matches!(result, Ok(WebhookApplied::Duplicate)),
            "{replayed:?}"
        );
    }
    assert_eq!(fixture.snapshot().await, committed);
    fixture.assert_batched();
}

#[tokio::test]
async fn an_event_for_a_reference_payorch_never_made_is_recorded_without_sinking_its_batch() {
    let fixture = fixture(TestDb::postgres().await).await;
    let (a, b) = (
        fixture.pending_payment().await,
        fixture.pending_payment().await,
    );
    // A reference no payment has: payorch writes its payment before it asks
    // any provider, so no webhook can outrun it.
    let late = Reference::generate();
    let batch = vec![
        webhook("evt-a", &a.reference, succeeded()),
        webhook("evt-late", late.as_str(), succeeded()),
        webhook("evt-b", &b.reference, PaymentEvent::ChargeFailed),
    ];

    let results = fixture.worker.apply_webhooks(batch.clone()).await;

    assert_eq!(results.len(), 3);
    assert!(
        matches!(
            results[1],
            Ok(WebhookApplied::Ignored("ignored:unknown_reference"))
        ),
        "{:?}",
        results[1]
    );
    assert_eq!(applied(&results[0]).1, to(PaymentStatus::Succeeded));
    assert_eq!(applied(&results[2]).1, to(PaymentStatus::Failed));
    assert_eq!(fixture.payment(&a.reference).await.status, "succeeded");
    assert_eq!(fixture.payment(&b.reference).await.status, "failed");
    assert_eq!(fixture.dedup_rows("evt-a").await.len(), 1);
    assert_eq!(fixture.dedup_rows("evt-b").await.len(), 1);
    let recorded = fixture.dedup_rows("evt-late").await;
    assert_eq!(recorded.len(), 1, "recorded once, not retried");
    assert_eq!(
        recorded[0].outcome.as_deref(),
        Some("ignored:unknown_reference")
    );
    fixture.assert_batched();

    // Its redelivery is a duplicate.
    let again = fixture.worker.apply_webhooks(vec![batch[1].clone()]).await;
    assert!(
        matches!(again[0], Ok(WebhookApplied::Duplicate)),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_batches_over_the_same_payments_in_opposite_orders_neither_deadlock_nor_double_apply() {
    const PAYMENTS: usize = 50;
    const ROUNDS: usize = 3;
    let fixture = fixture(TestDb::postgres().await).await;
    let other = fixture.another_worker().await;
    for round in 0..ROUNDS {
        let mut payments = Vec::with_capacity(PAYMENTS);
        for _ in 0..PAYMENTS {
            payments.push(fixture.pending_payment().await);
        }
        // Distinct events (two deliveries of a success, with their own
        // ids), one batch naming the payments forwards, one backwards.
        let forward: Vec<_> = payments
            .iter()
            .map(|p| webhook(&format!("fwd-{}", p.reference), &p.reference, succeeded()))
            .collect();
        let backward: Vec<_> = payments
            .iter()
            .rev()
            .map(|p| webhook(&format!("bwd-{}", p.reference), &p.reference, succeeded()))
            .collect();

        let (first, second) = tokio::join!(
            tokio::spawn({
                let worker = fixture.worker.clone();
                async move { worker.apply_webhooks(forward).await }
            }),
            tokio::spawn({
                let worker = other.clone();
                async move { worker.apply_webhooks(backward).await }
            }),
        );
        let results: Vec<Applied> = first.unwrap().into_iter().chain(second.unwrap()).collect();

        let outcomes: Vec<Outcome> = results.iter().map(|r| applied(r).1).collect();
        let credited = outcomes
            .iter()
            .filter(|o| **o == to(PaymentStatus::Succeeded))
            .count();
        let ignored = outcomes
            .iter()
            .filter(|o| **o == Outcome::Ignored(IgnoreReason::Duplicate))
            .count();
        assert_eq!((credited, ignored), (PAYMENTS, PAYMENTS), "round {round}");
        for payment in &payments {
            let now = fixture.payment(&payment.reference).await;
            assert_eq!(now.status, "succeeded");
            assert_eq!(now.version, payment.version + 1, "{}", payment.reference);
            let into_succeeded = store::payments::transitions(&fixture.db, payment.id)
                .await
                .unwrap()
                .into_iter()
                .filter(|t| t.to_status == "succeeded" && t.from_status != "succeeded")
                .count();
            assert_eq!(into_succeeded, 1, "{} succeeded once", payment.reference);
        }
    }
    // A deadlock (or any failed transaction) would have sent the batch
    // one by one through these cores' actors.
    assert_eq!(fixture.worker.live_actors(), 0, "no batch fell back");
    assert_eq!(other.live_actors(), 0, "no batch fell back");
}

#[tokio::test]
async fn on_sqlite_the_events_are_applied_one_by_one_with_the_same_results() {
    let fixture = fixture(TestDb::sqlite()).await;
    apply_the_mixed_batch(&fixture, 2).await;
    assert_eq!(
        fixture.worker.live_actors(),
        2,
        "each payment's events went through its actor"
    );
}

#[tokio::test]
async fn the_set_based_versioned_write_changes_nothing_when_one_row_moved_on() {
    let fixture = fixture(TestDb::postgres().await).await;
    let a = fixture.pending_payment().await;
    let b = fixture.pending_payment().await;
    let now = chrono::Utc::now();
    let advanced = |p: &Payment| {
        let mut next = p.clone();
        next.version += 1;
        next.status = "success".into();
        next.paid_at = Some(now);
        next
    };
    let (a_next, b_next) = (advanced(&a), advanced(&b));
    // `b` as read one version ago: someone wrote it since.
    let mut b_stale = b.clone();
    b_stale.version -= 1;
    let txn = store::begin_write(&fixture.db).await.unwrap();
    let written =
        store::payments::write_versioned_many(&txn, &[(&a, &a_next), (&b_stale, &b_next)])
            .await
            .unwrap();
    txn.rollback().await.unwrap();
    assert!(!written, "a stale version must be reported");

    let txn = store::begin_write(&fixture.db).await.unwrap();
    let written = store::payments::write_versioned_many(&txn, &[(&a, &a_next), (&b, &b_next)])
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert!(written);
    for (before, expected) in [(&a, &a_next), (&b, &b_next)] {
        let row = fixture.payment(&before.reference).await;
        assert_eq!(
            (row.version, row.status.as_str(), row.paid_at.is_some()),
            (expected.version, "success", true)
        );
        assert_eq!(row.amount, before.amount, "only the changeable fields move");
    }
}

/// `payment` succeeded and paid, as a change would write it.
fn paid(payment: &Payment) -> Payment {
    let changes = store::payments::Changes {
        status: Some(PaymentStatus::Succeeded),
        paid: true,
        ..Default::default()
    };
    store::payments::advance(payment, &changes, chrono::Utc::now())
}

/// The change set that makes `read` into `next` (see [`paid`]): by
/// `event`, recorded with it, or asked (a verify) without one.
fn paid_set<'a>(
    read: &'a Payment,
    next: &'a Payment,
    event: Option<&'a WebhookEvent>,
) -> store::changes::ChangeSet<'a> {
    let cause = match event {
        Some(_) => "webhook:charge.success",
        None => "verify:succeeded",
    };
    store::changes::ChangeSet {
        recorded: event
            .map(|e| vec![(&e.record, "applied:succeeded")])
            .unwrap_or_default(),
        changed: vec![(read, next)],
        transitions: vec![store::payments::transition(
            read.id,
            "pending",
            "succeeded",
            cause,
            event.map(|e| e.record.event_id.as_str()),
        )],
        merchant_events: vec![payorch::events::payment_event(next, "payment.succeeded")],
    }
}

/// The set-based write as one statement (PostgreSQL): a payment that moved
/// on since it was read, or a dedup row recorded before, shows in the
/// counts while the other sub-statements still ran — so the caller's
/// rollback is what leaves nothing behind; with both as read, every row
/// is written.
#[tokio::test]
async fn a_change_set_in_one_statement_counts_what_it_wrote_and_a_rollback_leaves_nothing() {
    use store::changes::Written;
    let fixture = fixture(TestDb::postgres().await).await;
    let a = fixture.pending_payment().await;
    let a_next = paid(&a);
    let event = webhook("evt-set-1", &a.reference, succeeded());
    let set = |read, next, event| paid_set(read, next, Some(event));
    let before = fixture.snapshot().await;

    let mut stale = a.clone();
    stale.version -= 1;
    let txn = store::begin_write(&fixture.db).await.unwrap();
    let stale_set = set(&stale, &a_next, &event);
    let written = store::changes::write(&txn, stale_set).await.unwrap();
    assert_eq!(
        written,
        Written {
            recorded: 1,
            updated: 0
        },
        "the payment moved on; the dedup row was new"
    );
    txn.rollback().await.unwrap();
    assert_eq!(
        fixture.snapshot().await,
        before,
        "the rollback left nothing"
    );

    let txn = store::begin_write(&fixture.db).await.unwrap();
    let written = store::changes::write(&txn, set(&a, &a_next, &event))
        .await
        .unwrap();
    assert_eq!(
        written,
        Written {
            recorded: 1,
            updated: 1
        }
    );
    txn.commit().await.unwrap();
    let row = fixture.payment(&a.reference).await;
    assert_eq!(
        (row.version, row.status.as_str()),
        (a.version + 1, "succeeded")
    );
    assert_eq!(fixture.transitions_of(&a, "evt-set-1").await.len(), 1);
    assert_eq!(fixture.dedup_rows("evt-set-1").await.len(), 1);
    assert_eq!(fixture.merchant_events(&a, "payment.succeeded").await, 1);

    // The same event again: its dedup row is there, so none is new.
    let txn = store::begin_write(&fixture.db).await.unwrap();
    let again = store::changes::write(&txn, set(&row, &a_next, &event))
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(again.recorded, 0, "a redelivery is counted out");
}

/// A request's change written on its own, outside a transaction
/// (`write_alone`), with the request's answer under its Idempotency-Key
/// beside it: when the payment moved on since it was read, its audit row,
/// its merchant event and the answer are not written either, so there is
/// nothing to roll back; at the version read, all of it is written.
#[tokio::test]
async fn a_change_alone_writes_all_of_itself_or_nothing() {
    use payorch::{domain::IdempotencyKey, payments::idempotency};
    let fixture = fixture(TestDb::postgres().await).await;
    let a = fixture.pending_payment().await;
    let a_next = paid(&a);
    let key = IdempotencyKey::parse(&uuid::Uuid::new_v4().to_string()).unwrap();
    let lock = std::time::Duration::from_secs(60);
    let reserved = idempotency::reserve(&fixture.db, fixture.client_id, key, "f", lock, None)
        .await
        .unwrap();
    let idempotency::Reservation::Proceed { claim, .. } = reserved else {
        panic!("a new key proceeds: {reserved:?}");
    };
    let answer = Rendered {
        status: 201,
        body: "the answer".into(),
    };
    // The payments the change found at the version it read, and whether
    // the answer was stored beside it.
    let updated = async |read: &Payment| {
        let set = paid_set(read, &a_next, None);
        let beside = Some(idempotency::completion(&claim, &answer));
        let (written, stored) = store::changes::write_alone(&fixture.db, set, beside)
            .await
            .unwrap();
        assert_eq!(written.recorded, 0);
        (written.updated, stored)
    };
    // What a retry with the key finds.
    let retried =
        async || idempotency::reserve(&fixture.db, fixture.client_id, key, "f", lock, None).await;
    let before = fixture.snapshot().await;

    let mut stale = a.clone();
    stale.version -= 1;
    assert_eq!(updated(&stale).await, (0, 0), "the payment moved on");
    assert_eq!(
        fixture.snapshot().await,
        before,
        "no audit row, no merchant event without the update"
    );
    assert!(
        matches!(
            retried().await,
            Err(payorch::payments::PaymentError::IdempotencyInFlight)
        ),
        "no answer stored without the update: the key is still in flight"
    );

    assert_eq!(updated(&a).await, (1, 1));
    let row = fixture.payment(&a.reference).await;
    assert_eq!(
        (row.version, row.status.as_str()),
        (a.version + 1, "succeeded")
    );
    assert_eq!(fixture.merchant_events(&a, "payment.succeeded").await, 1);
    let audited = store::payments::transitions(&fixture.db, a.id)
        .await
        .unwrap();
    assert_eq!(
        audited
            .iter()
            .filter(|t| t.cause == "verify:succeeded")
            .count(),
        1,
        "the change's audit row"
    );
    assert_eq!(
        retried().await.unwrap(),
        idempotency::Reservation::Replay(answer.clone()),
        "the answer stored with the change"
    );

    // The same change again, from the same read: stale now, nothing more.
    let after = fixture.snapshot().await;
    assert_eq!(updated(&a).await, (0, 0));
    assert_eq!(fixture.snapshot().await, after);
}
