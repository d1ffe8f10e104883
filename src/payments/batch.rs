//! Many provider webhooks applied in one transaction: the workers' path on
//! PostgreSQL.
//!
//! The payments the batch names are locked in one statement, in `id`
//! order, so two workers whose batches share payments queue on the locks
//! instead of deadlocking; holding the locks is what serializes a
//! payment's changes here, as its actor does for the API. Each event, in
//! queue order, is decided by the pure state machine ([`decide`]) against
//! the payment as the events before it left it, in memory, as if none had
//! been processed before. The writes are set-based: one statement for the
//! dedup rows, which counts the new ones — fewer than planned means a
//! redelivery, and the batch is rolled back and decided again with the
//! recorded events read first — one update for the payments that changed (each
//! version-checked, advanced once per change), one for the audit rows, one for the
//! merchant events. One commit, so the batch's effects exist together or
//! not at all: a crash before the commit leaves the events to be
//! redelivered, after it their dedup rows make the redelivery a duplicate.
//!
//! An event that cannot be decided (its payment is missing, or its row does
//! not parse) is left out and reported alone; the rest still commit. If a
//! statement fails, the whole transaction is rolled back and the caller
//! applies the events one at a time ([`super::Payments::apply_webhooks`]).

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{
    PaymentError, WebhookApplied,
    apply::{Change, OTHER_CONNECTOR, Source, decide, outcome_label},
    service::{PaymentService, held_by},
};
use crate::{
    domain::PaymentEvent,
    store::{
        self,
        payments::{self, Payment},
        webhooks::{self, WebhookRecord},
    },
};

/// A webhook's event, ready to apply.
#[derive(Debug, Clone)]
pub struct WebhookEvent {
    pub record: WebhookRecord,
    pub event: PaymentEvent,
}

/// One payment during a batch: as locked, and as the batch's events so far
/// leave it.
struct Held {
    read: Payment,
    now: Payment,
}

/// What a batch writes, decided in memory against the locked payments.
#[derive(Default)]
struct Plan<'a> {
    results: Vec<Result<WebhookApplied, PaymentError>>,
    recorded: Vec<(&'a WebhookRecord, String)>,
    transitions: Vec<store::entities::payment_transition::ActiveModel>,
    merchant_events: Vec<store::events::Event>,
}

/// Whether the events' dedup rows are read before deciding, or assumed
/// absent (the insert counts what was new, and a shortfall means a
/// redelivery: the batch is decided again with the rows read).
#[derive(Clone, Copy)]
enum Dedup {
    Assume,
    Read,
}

impl PaymentService {
    /// Applies `events` in one transaction; the result of each, in order.
    /// `Err`: nothing was written (the caller may apply them one by one).
    pub(super) async fn apply_webhook_batch(
        &self,
        events: &[WebhookEvent],
    ) -> Result<Vec<Result<WebhookApplied, PaymentError>>, PaymentError> {
        // Most events arrive once: deciding them without reading their dedup
        // rows saves a statement whose plan depends on the table's size.
        match self.try_batch(events, Dedup::Assume).await? {
            Some(results) => Ok(results),
            None => self
                .try_batch(events, Dedup::Read)
                .await?
                .ok_or(PaymentError::Unavailable(
                    "a webhook batch (an event was recorded meanwhile)",
                )),
        }
    }

    /// One attempt; `None` (rolled back) if fewer dedup rows were new than
    /// the plan expected.
    async fn try_batch(
        &self,
        events: &[WebhookEvent],
        dedup: Dedup,
    ) -> Result<Option<Vec<Result<WebhookApplied, PaymentError>>>, PaymentError> {
        let txn = store::begin_write(&self.db).await?;
        let references: BTreeSet<String> =
            events.iter().map(|e| e.record.reference.clone()).collect();
        let mut held: HashMap<String, Held> = payments::lock_many_by_reference(&txn, references)
            .await?
            .into_iter()
            .map(|p| {
                let held = Held {
                    read: p.clone(),
                    now: p,
                };
                (held.read.reference.clone(), held)
            })
            .collect();
        let seen = match dedup {
            Dedup::Assume => HashSet::new(),
            Dedup::Read => webhooks::recorded(&txn, events.iter().map(|e| &e.record)).await?,
        };
        let plan = decide_all(&mut held, events, seen);
        let expected = plan.recorded.len() as u64;
        let fresh =
            webhooks::insert_many(&txn, plan.recorded.iter().map(|(r, o)| (*r, o.as_str())))
                .await?;
        if fresh != expected {
            // Assumed: a redelivery. Read: recorded by someone not holding
            // the payment's lock, only an event naming another payment than
            // its first delivery did.
            txn.rollback().await?;
            return Ok(None);
        }
        let changed: Vec<(&Payment, &Payment)> = held
            .values()
            .filter(|p| p.now.version != p.read.version)
            .map(|p| (&p.read, &p.now))
            .collect();
        if !payments::write_versioned_many(&txn, &changed).await? {
            txn.rollback().await?;
            return Err(super::apply::too_contended());
        }
        payments::record_transitions(&txn, plan.transitions).await?;
        store::events::insert_many(&txn, plan.merchant_events).await?;
        super::commit(txn).await?;
        Ok(Some(plan.results))
    }
}

/// Decides each event, in queue order, against its payment as the events
/// before it left it; `seen` are the event identities recorded before.
fn decide_all<'a>(
    held: &mut HashMap<String, Held>,
    events: &'a [WebhookEvent],
    mut seen: HashSet<(String, String)>,
) -> Plan<'a> {
    let at = chrono::Utc::now();
    let mut plan = Plan::default();
    for WebhookEvent { record, event } in events {
        let Some(payment) = held.get_mut(&record.reference) else {
            plan.results.push(Err(PaymentError::NotFound));
            continue;
        };
        let identity = (record.provider.clone(), record.event_id.clone());
        if seen.contains(&identity) {
            plan.results.push(Ok(WebhookApplied::Duplicate));
            continue;
        }
        if !held_by(&payment.now, &record.provider) {
            tracing::warn!(
                reference = record.reference,
                holder = payment.now.provider,
                from = record.provider,
                "webhook from a connector that does not hold the payment; ignored"
            );
            seen.insert(identity);
            plan.recorded.push((record, OTHER_CONNECTOR.to_owned()));
            plan.results
                .push(Ok(WebhookApplied::Ignored(OTHER_CONNECTOR)));
            continue;
        }
        let change = Change::new(*event, Source::Webhook);
        let decision = match decide(&payment.now, &change, true, true) {
            Ok(decision) => decision,
            Err(err) => {
                plan.results.push(Err(err));
                continue;
            }
        };
        seen.insert(identity);
        plan.recorded
            .push((record, outcome_label(&decision.outcome)));
        let after = match decision.update.as_ref() {
            Some(changes) => payments::advance(&payment.now, changes, at),
            None => payment.now.clone(),
        };
        plan.transitions.push(payments::transition(
            after.id,
            &payment.now.status,
            decision.to.as_str(),
            &decision.cause,
            Some(&record.event_id),
        ));
        if let Some(kind) = crate::events::payment_event_type(&decision.outcome) {
            plan.merchant_events
                .push(crate::events::payment_event(&after, kind));
        }
        payment.now = after.clone();
        plan.results.push(Ok(WebhookApplied::Applied(
            Box::new(after),
            decision.outcome,
        )));
    }
    plan
}
