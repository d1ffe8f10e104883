//! The one apply pipeline: every change the state machine decides — an
//! answer to initialize, a verify, a reconciliation, a refund's effect, a
//! provider webhook, a whole batch of webhooks — goes through it. A single
//! change is a batch of one. (Two writes are not the state machine's and
//! stay beside it: a failover moving a `created` payment to another
//! connector, and the audit row of a partial refund.)
//!
//! 1. **Read** the payments the changes name ([`PaymentService::hold`]). On
//!    PostgreSQL they are locked in one statement, in `id` order, so two
//!    transactions over overlapping payments queue on the locks instead of
//!    deadlocking; holding the lock is what serializes a payment's changes
//!    across processes, as its actor does inside one. SQLite has no row
//!    locks: there the rows are read first and the version check alone
//!    decides, retried on conflict.
//! 2. **Decide** each change, in order, with the pure state machine
//!    ([`super::decide`]) against its payment as the changes before it left
//!    it, in memory ([`plan`]).
//! 3. **Write** set-based, in the caller's transaction ([`write`]): one
//!    statement for the webhooks' dedup rows, which counts the new ones —
//!    fewer than planned means a redelivery, and everything is decided again
//!    with the recorded events read first; one versioned update for the
//!    payments that changed (a row that moved on since it was read is a
//!    conflict: decided again); one for the audit rows; one for the merchant
//!    events (the transactional outbox) — on PostgreSQL these four are the
//!    sub-statements of one data-modifying `WITH` ([`store::changes`]), one
//!    round trip; and the reviews the changes ask for — money at a
//!    connector that does not hold the payment, paid after final, another
//!    amount — each with its merchant event ([`super::reviews`]).
//!
//! One commit, so a change's effects exist together or not at all: a crash
//! before it leaves a webhook to be redelivered, after it its dedup row makes
//! the redelivery a duplicate. A request's own change to a payment it has
//! just read (no webhook, no review; its Idempotency-Key's answer may go
//! with it) is tried first as that one `WITH` on its own, outside a
//! transaction: its inserts and the answer's update are conditional on
//! the versioned update, so it too is all or nothing, and a payment that
//! moved on is read again, locked, as below.

use std::collections::{BTreeSet, HashMap, HashSet};

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend};
use uuid::Uuid;

use super::{
    Completion, PaymentError, WebhookApplied,
    decide::{
        CONFLICT_RETRIES, Change, OTHER_CONNECTOR, ReviewAsked, Verdict, decide, outcome_label,
        review_of,
    },
    service::PaymentService,
};
use crate::{
    domain::{Outcome, PaymentEvent},
    store::{
        self,
        changes::{self, ChangeSet, Written},
        payments::{self, Payment},
        webhooks::{self, WebhookRecord},
    },
};

/// A provider webhook's event, ready to apply.
#[derive(Debug, Clone)]
pub struct WebhookEvent {
    pub record: WebhookRecord,
    pub event: PaymentEvent,
}

/// One change to apply to the payment `reference`.
pub(super) struct Item<'a> {
    reference: &'a str,
    change: Change,
    /// A provider's event (a webhook, or a refund's effect): every one gets
    /// an audit row, even one that changes nothing, so it can be traced.
    delivered: bool,
    /// The provider event's id, for the audit row.
    event_id: Option<&'a str>,
    /// The webhook it came in: its dedup row is recorded with the change,
    /// once per event identity.
    webhook: Option<&'a WebhookRecord>,
}

impl<'a> Item<'a> {
    /// A change asked by a request or a sweep.
    fn asked(reference: &'a str, change: Change) -> Item<'a> {
        Item {
            reference,
            change,
            delivered: false,
            event_id: None,
            webhook: None,
        }
    }

    fn webhook(event: &'a WebhookEvent) -> Item<'a> {
        Item {
            reference: &event.record.reference,
            change: Change::delivered(event.event, &event.record.provider),
            delivered: true,
            event_id: Some(&event.record.event_id),
            webhook: Some(&event.record),
        }
    }
}

/// One payment while its changes are decided: as read, and as the changes
/// so far leave it.
pub(super) struct Held {
    read: Payment,
    now: Payment,
}

/// The payments a set of changes is about, by reference, and whether their
/// rows are locked until the transaction ends.
pub(super) struct Holding {
    payments: HashMap<String, Held>,
    locked: bool,
}

impl Holding {
    /// `payment`, read outside the transaction (no lock).
    pub(super) fn read(payment: Payment) -> Holding {
        Holding::of(vec![payment], false)
    }

    /// The one payment held (a holding of one reference).
    pub(super) fn only(&self) -> Option<&Payment> {
        self.payments.values().next().map(|held| &held.now)
    }

    fn of(payments: Vec<Payment>, locked: bool) -> Holding {
        let payments = payments
            .into_iter()
            .map(|p| {
                let held = Held {
                    read: p.clone(),
                    now: p,
                };
                (held.read.reference.clone(), held)
            })
            .collect();
        Holding { payments, locked }
    }
}

/// Whether the webhooks' dedup rows are read before deciding, or assumed
/// absent (the insert counts what was new; a shortfall means a
/// redelivery, and the changes are decided again with the rows read).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dedup {
    Assume,
    Read,
}

/// What a set of changes does, decided in memory: the result of each, and
/// the rows to write.
#[derive(Default)]
struct Plan<'a> {
    results: Vec<Result<WebhookApplied, PaymentError>>,
    writes: Writes<'a>,
}

#[derive(Default)]
struct Writes<'a> {
    recorded: Vec<(&'a WebhookRecord, String)>,
    transitions: Vec<store::entities::payment_transition::ActiveModel>,
    merchant_events: Vec<store::events::Event>,
    reviews: Vec<Asked<'a>>,
}

/// A review a change asks for, with the payment as the change left it.
struct Asked<'a> {
    asked: ReviewAsked,
    payment: Payment,
    change: &'a Change,
    event_id: Option<&'a str>,
}

impl Writes<'_> {
    /// Nothing to write (every change found nothing new).
    fn is_empty(&self) -> bool {
        self.recorded.is_empty() && self.transitions.is_empty() && self.reviews.is_empty()
    }
}

/// Decides each change, in order, against its payment as the changes
/// before it left it; `seen` are the webhook identities recorded before.
fn plan<'a>(
    holding: &mut Holding,
    items: &'a [Item<'a>],
    mut seen: HashSet<(String, String)>,
) -> Plan<'a> {
    let at = chrono::Utc::now();
    let mut plan = Plan::default();
    for item in items {
        let Some(payment) = holding.payments.get_mut(item.reference) else {
            plan.results.push(Err(PaymentError::NotFound));
            continue;
        };
        let identity = item
            .webhook
            .map(|record| (record.provider.clone(), record.event_id.clone()));
        if identity.as_ref().is_some_and(|id| seen.contains(id)) {
            plan.results.push(Ok(WebhookApplied::Duplicate));
            continue;
        }
        let verdict = decide(&payment.now, &item.change, holding.locked, item.delivered);
        let decision = match verdict {
            Err(err) => {
                plan.results.push(Err(err));
                continue;
            }
            Ok(Verdict::Unchanged(outcome)) => {
                plan.results.push(Ok(WebhookApplied::Applied(
                    Box::new(payment.now.clone()),
                    outcome,
                )));
                continue;
            }
            Ok(Verdict::OtherConnector) => {
                if let (Some(record), Some(identity)) = (item.webhook, identity) {
                    seen.insert(identity);
                    plan.writes
                        .recorded
                        .push((record, OTHER_CONNECTOR.to_owned()));
                }
                if let Some(asked) = review_of(&payment.now, &item.change, None) {
                    plan.writes.reviews.push(Asked {
                        asked,
                        payment: payment.now.clone(),
                        change: &item.change,
                        event_id: item.event_id,
                    });
                }
                plan.results
                    .push(Ok(WebhookApplied::Ignored(OTHER_CONNECTOR)));
                continue;
            }
            Ok(Verdict::Write(decision)) => decision,
        };
        if let (Some(record), Some(identity)) = (item.webhook, identity) {
            seen.insert(identity);
            plan.writes
                .recorded
                .push((record, outcome_label(&decision.outcome)));
        }
        let after = match decision.update.as_ref() {
            Some(changes) => payments::advance(&payment.now, changes, at),
            None => payment.now.clone(),
        };
        plan.writes.transitions.push(payments::transition(
            after.id,
            &payment.now.status,
            decision.to.as_str(),
            &decision.cause,
            item.event_id,
        ));
        if let Some(kind) = crate::events::payment_event_type(&decision.outcome) {
            plan.writes
                .merchant_events
                .push(crate::events::payment_event(&after, kind));
        }
        if let Some(asked) = review_of(&payment.now, &item.change, Some(&decision.outcome)) {
            plan.writes.reviews.push(Asked {
                asked,
                payment: after.clone(),
                change: &item.change,
                event_id: item.event_id,
            });
        }
        payment.now = after.clone();
        plan.results.push(Ok(WebhookApplied::Applied(
            Box::new(after),
            decision.outcome,
        )));
    }
    plan
}

/// Writes `writes` and the changed payments of `holding` in `txn`,
/// set-based. `None`: a conflict — a dedup row was there already, or a
/// payment moved on since it was read — and the caller rolls back and
/// decides again. Otherwise the refunds the reviews created, to send once
/// committed.
async fn write(
    service: &PaymentService,
    txn: &DatabaseTransaction,
    holding: &Holding,
    writes: Writes<'_>,
) -> Result<Option<Vec<Uuid>>, PaymentError> {
    let changed = changed(holding);
    let recorded: Vec<(&WebhookRecord, &str)> = writes
        .recorded
        .iter()
        .map(|(r, o)| (*r, o.as_str()))
        .collect();
    if txn.get_database_backend() == DbBackend::Postgres {
        let expected = Written {
            recorded: recorded.len() as u64,
            updated: changed.len() as u64,
        };
        let set = ChangeSet {
            recorded,
            changed,
            transitions: writes.transitions,
            merchant_events: writes.merchant_events,
        };
        if store::changes::write(txn, set).await? != expected {
            return Ok(None);
        }
    } else {
        let expected = recorded.len() as u64;
        if !recorded.is_empty() && webhooks::insert_many(txn, recorded).await? != expected {
            return Ok(None);
        }
        if !payments::write_versioned_many(txn, &changed).await? {
            return Ok(None);
        }
        if !writes.transitions.is_empty() {
            payments::record_transitions(txn, writes.transitions).await?;
        }
        if !writes.merchant_events.is_empty() {
            store::events::insert_many(txn, writes.merchant_events).await?;
        }
    }
    let mut sends = Vec::new();
    for Asked {
        asked,
        payment,
        change,
        event_id,
    } in writes.reviews
    {
        let opened = service
            .open_payment_review(txn, &payment, &asked, change.source, event_id)
            .await?;
        sends.extend(opened.and_then(|(_, refund)| refund).map(|r| r.id));
    }
    Ok(Some(sends))
}

/// The results of a written plan, whether it wrote anything, and the
/// refunds to send once it is committed.
pub(super) struct Applied {
    pub(super) results: Vec<Result<WebhookApplied, PaymentError>>,
    pub(super) wrote: bool,
    pub(super) sends: Vec<Uuid>,
}

impl PaymentService {
    /// Applies `change` to `payment`, which the caller has just read:
    /// version-checked, retried on conflict with the row re-read (locked
    /// where the database has row locks). Returns the payment after the
    /// change and what the state machine decided.
    pub(super) async fn apply(
        &self,
        payment: Payment,
        change: Change,
    ) -> Result<(Payment, Outcome), PaymentError> {
        self.apply_answering(payment, change, None).await
    }

    /// [`Self::apply`], and when the change is applied and `answer` is
    /// given, the request's answer stored under its Idempotency-Key in the
    /// same write (one commit fewer for initialize; see [`Completion`]).
    /// The plan of the first try is written as it is, never decided again
    /// (so a flagged payment is logged once).
    pub(super) async fn apply_answering(
        &self,
        payment: Payment,
        change: Change,
        answer: Option<&Completion>,
    ) -> Result<(Payment, Outcome), PaymentError> {
        let reference = payment.reference.clone();
        let items = [Item::asked(&reference, change)];
        // First as the caller read it, unlocked; on a conflict, locked.
        let mut holding = Holding::read(payment);
        let first = plan(&mut holding, &items, HashSet::new());
        if let Some(done) = self.write_first(&holding, first, answer).await? {
            return Ok(done);
        }
        for _ in 1..CONFLICT_RETRIES {
            let (txn, mut holding) = self.hold([reference.clone()]).await?;
            let Some(applied) = self
                .apply_held(&txn, &mut holding, &items, Dedup::Assume)
                .await?
            else {
                txn.rollback().await?;
                continue;
            };
            if !applied.wrote {
                txn.rollback().await?;
                return applied_once(applied.results);
            }
            return self
                .settle(txn, applied.results, applied.sends, answer)
                .await;
        }
        Err(too_contended())
    }

    /// Writes the first try of an asked change, planned against the
    /// payment as read outside any transaction. `None`: the payment moved
    /// on since (nothing was written).
    ///
    /// On PostgreSQL, when the plan writes only the payment, its audit row,
    /// its merchant event and the request's answer under its
    /// Idempotency-Key, they are one statement on its own
    /// ([`changes::write_alone`]), atomic without `BEGIN` and `COMMIT`
    /// (three round trips of four saved with a key, two of three without).
    /// A plan that opens a review is written in a transaction, and so is
    /// every plan on SQLite. A plan that writes nothing needs no round trip.
    async fn write_first(
        &self,
        holding: &Holding,
        Plan { results, writes }: Plan<'_>,
        answer: Option<&Completion>,
    ) -> Result<Option<(Payment, Outcome)>, PaymentError> {
        if writes.is_empty() {
            return applied_once(results).map(Some);
        }
        let changed = changed(holding);
        let alone = self.db.get_database_backend() == DbBackend::Postgres
            && writes.reviews.is_empty()
            && writes.recorded.is_empty()
            && !changed.is_empty();
        if !alone {
            let txn = crate::store::begin_write(&self.db).await?;
            return match write(self, &txn, holding, writes).await? {
                Some(sends) => self.settle(txn, results, sends, answer).await.map(Some),
                None => {
                    txn.rollback().await?;
                    Ok(None)
                }
            };
        }
        let (updated, outcome) = applied_once(results)?;
        let (answered, beside) = match stored_with(answer, &outcome) {
            Some(answer) => {
                let (rendered, statement) = answer.storing(&updated);
                (Some((answer, rendered)), Some(statement))
            }
            None => (None, None),
        };
        let expected = changed.len() as u64;
        let set = ChangeSet {
            recorded: Vec::new(),
            changed,
            transitions: writes.transitions,
            merchant_events: writes.merchant_events,
        };
        let (written, stored) = changes::write_alone(&self.db, set, beside).await?;
        if written.updated != expected {
            return Ok(None);
        }
        // Written as a commit is: the relay sends its merchant events now.
        crate::events::relay::wake();
        if let Some((answer, rendered)) = answered {
            // A retry that took the key over stores its own answer; this
            // request still answers its caller (logged and counted).
            answer.stored_rows(stored);
            answer.stored(rendered);
        }
        Ok(Some((updated, outcome)))
    }

    /// Finishes a written change in `txn`: the answer stored under its key
    /// when the change applied, the commit, then the refunds it created.
    async fn settle(
        &self,
        txn: DatabaseTransaction,
        results: Vec<Result<WebhookApplied, PaymentError>>,
        sends: Vec<Uuid>,
        answer: Option<&Completion>,
    ) -> Result<(Payment, Outcome), PaymentError> {
        let (updated, outcome) = applied_once(results)?;
        let answered = match stored_with(answer, &outcome) {
            Some(answer) => Some((answer, answer.store(&txn, &updated).await?)),
            None => None,
        };
        super::commit(txn).await?;
        if let Some((answer, rendered)) = answered {
            answer.stored(rendered);
        }
        self.send_refunds(sends).await;
        Ok((updated, outcome))
    }

    /// Applies a provider webhook, exactly once per event identity: a
    /// batch of one. `NotFound`: no such payment (yet).
    pub(super) async fn apply_webhook(
        &self,
        record: &WebhookRecord,
        event: PaymentEvent,
    ) -> Result<WebhookApplied, PaymentError> {
        let events = [WebhookEvent {
            record: record.clone(),
            event,
        }];
        self.apply_webhooks(&events)
            .await?
            .into_iter()
            .next()
            .unwrap_or(Err(PaymentError::NotFound))
    }

    /// Applies `events` in one transaction, each payment's in the order
    /// given; the result of each, in order. An event that cannot be decided
    /// (its payment is missing, or its row does not parse) is left out with
    /// its error; the rest still commit. `Err`: nothing was written.
    pub(super) async fn apply_webhooks(
        &self,
        events: &[WebhookEvent],
    ) -> Result<Vec<Result<WebhookApplied, PaymentError>>, PaymentError> {
        let items: Vec<Item> = events.iter().map(Item::webhook).collect();
        let references: BTreeSet<String> =
            events.iter().map(|e| e.record.reference.clone()).collect();
        // Most events arrive once: deciding them without reading their
        // dedup rows saves a statement whose plan depends on the table's size.
        let mut dedup = Dedup::Assume;
        for _ in 0..CONFLICT_RETRIES {
            let (txn, mut holding) = self.hold(references.iter().cloned()).await?;
            match self.apply_held(&txn, &mut holding, &items, dedup).await? {
                Some(applied) => {
                    if applied.wrote {
                        super::commit(txn).await?;
                    } else {
                        txn.rollback().await?;
                    }
                    self.send_refunds(applied.sends).await;
                    return Ok(applied.results);
                }
                None => {
                    txn.rollback().await?;
                    dedup = Dedup::Read;
                }
            }
        }
        Err(too_contended())
    }

    /// Decides `items` against `holding` and writes them in `txn`. `None`:
    /// a conflict (see [`write`]); the caller rolls back and tries again.
    async fn apply_held(
        &self,
        txn: &DatabaseTransaction,
        holding: &mut Holding,
        items: &[Item<'_>],
        dedup: Dedup,
    ) -> Result<Option<Applied>, PaymentError> {
        let seen = match dedup {
            Dedup::Assume => HashSet::new(),
            Dedup::Read => webhooks::recorded(txn, items.iter().filter_map(|i| i.webhook)).await?,
        };
        let Plan { results, writes } = plan(holding, items, seen);
        let wrote = !writes.is_empty();
        let sends = if wrote {
            match write(self, txn, holding, writes).await? {
                Some(sends) => sends,
                None => return Ok(None),
            }
        } else {
            Vec::new()
        };
        Ok(Some(Applied {
            results,
            wrote,
            sends,
        }))
    }

    /// Sends the refunds a committed change created (a late success
    /// refunded by policy). One that fails here is unsent or pending, and
    /// the reconciliation sweep finishes it.
    async fn send_refunds(&self, refunds: Vec<Uuid>) {
        for refund_id in refunds {
            if let Err(err) = self.send_refund(refund_id).await {
                tracing::warn!(%refund_id, error = %err, "refund at connector not sent; the sweep retries");
            }
        }
    }

    /// A provider's event applied to `payment`, already held in `txn`
    /// (a refund's effect, written beside the refund's own rows). `false`:
    /// the payment moved on since it was read (the caller rolls back and
    /// tries again).
    pub(super) async fn apply_in(
        &self,
        txn: &DatabaseTransaction,
        holding: &mut Holding,
        change: Change,
        event_id: Option<&str>,
    ) -> Result<bool, PaymentError> {
        let Some(reference) = holding.payments.keys().next().cloned() else {
            return Err(PaymentError::NotFound);
        };
        let items = [Item {
            delivered: true,
            event_id,
            ..Item::asked(&reference, change)
        }];
        let applied = self.apply_held(txn, holding, &items, Dedup::Assume).await?;
        match applied.map(|a| a.results.into_iter().next()) {
            Some(Some(result)) => result.map(|_| true),
            Some(None) => Err(PaymentError::Internal("a change without a result".into())),
            None => Ok(false),
        }
    }

    /// A write transaction and the payments `references` as they stand in
    /// it: on PostgreSQL locked until it ends, in `id` order; on SQLite
    /// read first, unlocked (see the module docs).
    pub(super) async fn hold(
        &self,
        references: impl IntoIterator<Item = String>,
    ) -> Result<(DatabaseTransaction, Holding), PaymentError> {
        if self.db.get_database_backend() == DbBackend::Postgres {
            let txn = crate::store::begin_write(&self.db).await?;
            let payments = payments::lock_many_by_reference(&txn, references).await?;
            Ok((txn, Holding::of(payments, true)))
        } else {
            let payments = payments::find_many_by_reference(&self.db, references).await?;
            Ok((
                crate::store::begin_write(&self.db).await?,
                Holding::of(payments, false),
            ))
        }
    }

    pub(super) async fn load(&self, reference: &str) -> Result<Payment, PaymentError> {
        payments::find_by_reference(&self.db, reference)
            .await?
            .ok_or(PaymentError::NotFound)
    }
}

/// The answer to store with a change: only with one that applied (any
/// other outcome is stored afterwards, see [`Completion`]).
fn stored_with<'c>(answer: Option<&'c Completion>, outcome: &Outcome) -> Option<&'c Completion> {
    answer.filter(|_| matches!(outcome, Outcome::Applied { .. }))
}

/// The payment and outcome of the one asked change of a batch of one.
fn applied_once(
    results: Vec<Result<WebhookApplied, PaymentError>>,
) -> Result<(Payment, Outcome), PaymentError> {
    let Some(result) = results.into_iter().next() else {
        return Err(PaymentError::Internal("a change without a result".into()));
    };
    match result? {
        WebhookApplied::Applied(payment, outcome) => Ok((*payment, outcome)),
        other => Err(PaymentError::Internal(format!(
            "a change without a webhook ended as {other:?}"
        ))),
    }
}

/// The payments of `holding` the plan changed: as read, and as written.
fn changed(holding: &Holding) -> Vec<(&Payment, &Payment)> {
    holding
        .payments
        .values()
        .filter(|p| p.now.version != p.read.version)
        .map(|p| (&p.read, &p.now))
        .collect()
}

pub(super) fn too_contended() -> PaymentError {
    PaymentError::Unavailable("this payment (too many concurrent changes)")
}
