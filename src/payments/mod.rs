//! The payment core: the one entry point for every operation on a payment.
//!
//! [`Payments`] has one method per operation — [`Payments::initialize`]
//! (create, with its Idempotency-Key, and open the provider transaction),
//! [`Payments::verify`], [`Payments::get`], [`Payments::apply_webhook`] —
//! and owns what each needs: its database transactions and its per-payment
//! serialization. HTTP handlers and the webhook worker each make one call
//! and map a [`PaymentError`] at their edge (problem+json, or retry/park).
//!
//! Inside, a request follows one path:
//!
//! ```text
//! Payments::initialize ─▶ idempotency::reserve + insert payment (one txn)
//!        │                                   (a replay returns here)
//!        ├─▶ actors: the payment's PaymentActor ─▶ service: provider call
//!        │     (failing over between connectors), then the apply pipeline
//!        │     (state machine + version-checked update + audit row + outbox
//!        │     event, and the response stored under the key: one txn)
//!        └─▶ idempotency::complete, for any other outcome (or release)
//! Payments::verify / apply_webhook ─▶ actors ─▶ service ─▶ pipeline
//! Payments::apply_webhooks (a worker's batch, PostgreSQL) ─▶ pipeline
//! ```
//!
//! Files: [`initialize`], [`refunds`], [`reconcile`] — the operations;
//! [`answer`] — a request's answer and its Idempotency-Key around them
//! ([`idempotency`] stores the keys); [`service`] — what a payment's actor
//! does (provider calls, failover); [`decide`] and [`pipeline`] — the one
//! way any change is decided and written; [`error`] — [`PaymentError`].
//!
//! [`actors`] serializes the state changes of one payment inside this
//! process; across processes the database does (row locks and the version
//! check, see [`pipeline`]).

mod actors;
mod answer;
mod decide;
mod error;
pub mod idempotency;
mod initialize;
mod pipeline;
pub mod reconcile;
mod refunds;
pub mod reviews;
mod service;
pub mod settlement;

use std::{sync::Arc, time::Duration};

use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use self::{
    actors::{ActorSystem, Command, PaymentRegistry},
    service::PaymentService,
};
use crate::{
    domain::{LateSuccess, Outcome, PaymentEvent},
    provider::Connectors,
    store::{
        payments::{self as store, Payment, Transition},
        webhooks::{self, WebhookRecord},
    },
};

pub use self::{
    answer::{Answer, Idempotent},
    decide::outcome_label,
    error::{PaymentError, is_unique_violation},
    idempotency::Rendered,
    initialize::NewPaymentRequest,
    pipeline::WebhookEvent,
    reconcile::{Sweep, SweepReport},
    refunds::NewRefundRequest,
    reviews::ReviewError,
    settlement::{ConnectorSettlement, SettlementReport},
};
pub(crate) use answer::Completion;

/// Commits `txn`, then wakes this process's event relay: the transaction
/// may have written merchant events, which are now visible.
pub(crate) async fn commit(txn: sea_orm::DatabaseTransaction) -> Result<(), DbErr> {
    txn.commit().await?;
    crate::events::relay::wake();
    Ok(())
}

/// What became of a provider webhook.
#[derive(Debug, Clone)]
pub enum WebhookApplied {
    /// Processed now: the payment after it and what the state machine decided.
    Applied(Box<Payment>, Outcome),
    /// Processed before; nothing changed.
    Duplicate,
    /// Recorded, not applied, for the reason given (the outcome stored with
    /// it): another connector holds the payment, or the connector did not
    /// confirm the event.
    Ignored(&'static str),
    /// The connector does not report the charge settled yet; nothing was
    /// written, so the event may be tried again.
    Unconfirmed,
}

/// What a provider webhook asks of its payment.
#[derive(Debug, Clone)]
pub enum WebhookChange {
    /// Apply this event (its proof signs its figures).
    Event(PaymentEvent),
    /// Ask the payment's connector (about `transaction_id`, the attempt the
    /// event names, when it names one) and apply what it reports; on the
    /// `last_try`, record an unconfirmed event instead of leaving it.
    Confirm {
        transaction_id: Option<i64>,
        last_try: bool,
    },
}

/// How the per-payment actors are run.
#[derive(Debug, Clone, Copy)]
pub struct ActorSettings {
    /// An actor idle this long leaves the registry.
    pub idle: Duration,
    /// Messages one payment may have waiting before callers get `Busy`.
    pub mailbox: usize,
    /// Event loops the actors are spread over.
    pub arbiters: usize,
}

/// The payment core. Cheap to clone.
#[derive(Clone)]
pub struct Payments {
    db: DatabaseConnection,
    connectors: Arc<Connectors>,
    registry: PaymentRegistry,
    service: Arc<PaymentService>,
    /// How long a started Idempotency-Key is held before a retry may take it over.
    idempotency_lock: Duration,
}

impl Payments {
    /// Starts the actor system. Call inside the tokio runtime that should
    /// do the work.
    pub fn start(
        db: DatabaseConnection,
        connectors: Arc<Connectors>,
        actors: ActorSettings,
        idempotency_lock: Duration,
    ) -> std::io::Result<Payments> {
        Payments::start_with(
            db,
            connectors,
            actors,
            idempotency_lock,
            LateSuccess::default(),
        )
    }

    /// [`Payments::start`], with what to do about a payment paid after it
    /// was final (`PAYORCH_LATE_SUCCESS`).
    pub fn start_with(
        db: DatabaseConnection,
        connectors: Arc<Connectors>,
        actors: ActorSettings,
        idempotency_lock: Duration,
        late_success: LateSuccess,
    ) -> std::io::Result<Payments> {
        let service = Arc::new(PaymentService {
            db: db.clone(),
            connectors: connectors.clone(),
            late_success,
        });
        let system = ActorSystem::start(actors.arbiters)?;
        Ok(Payments {
            db,
            connectors,
            registry: PaymentRegistry::new(service.clone(), system, actors.idle, actors.mailbox),
            service,
            idempotency_lock,
        })
    }

    /// Asks the provider about `client_id`'s payment `reference` (its own
    /// reference) and applies what it reports. A payment in a final state
    /// is returned without asking.
    pub async fn verify(&self, client_id: Uuid, reference: &str) -> Result<Payment, PaymentError> {
        let verify = || Command::Verify {
            client_id,
            client_reference: reference.to_owned(),
        };
        // Usually the provider knows the payment by the client's reference,
        // and its actor is found without a lookup.
        match self.registry.call(reference, verify()).await {
            Err(PaymentError::NotFound) => {}
            answer => return answer,
        }
        match store::find_owned(&self.db, client_id, reference).await? {
            Some(payment) if payment.reference != reference => {
                self.registry.call(&payment.reference, verify()).await
            }
            _ => Err(PaymentError::NotFound),
        }
    }

    /// `client_id`'s payment with its audit trail, oldest first.
    pub async fn get(
        &self,
        client_id: Uuid,
        reference: &str,
    ) -> Result<(Payment, Vec<Transition>), PaymentError> {
        let payment = self.owned(client_id, reference).await?;
        let transitions = store::transitions(&self.db, payment.id).await?;
        Ok((payment, transitions))
    }

    /// The client's payment under `reference` with its audit trail and its
    /// open payment-level review, if any: what `GET /v1/payments/{reference}`
    /// shows. On PostgreSQL the payment, its trail and whether a review is
    /// open are one statement, and the review is read only when one is;
    /// elsewhere the trail and the review are read at once.
    pub async fn get_with_review(
        &self,
        client_id: Uuid,
        reference: &str,
    ) -> Result<
        (
            Payment,
            Vec<Transition>,
            Option<crate::store::reviews::Review>,
        ),
        PaymentError,
    > {
        if self.db.get_database_backend() == sea_orm::DbBackend::Postgres {
            let (payment, transitions, review_open) =
                store::find_owned_with_trail(&self.db, client_id, reference)
                    .await?
                    .ok_or(PaymentError::NotFound)?;
            let review = if review_open {
                crate::store::reviews::open_for_payment(&self.db, payment.id).await?
            } else {
                None
            };
            return Ok((payment, transitions, review));
        }
        let payment = self.owned(client_id, reference).await?;
        let (transitions, review) = tokio::try_join!(
            store::transitions(&self.db, payment.id),
            crate::store::reviews::open_for_payment(&self.db, payment.id),
        )?;
        Ok((payment, transitions, review))
    }

    async fn owned(&self, client_id: Uuid, reference: &str) -> Result<Payment, PaymentError> {
        store::find_owned(&self.db, client_id, reference)
            .await?
            .ok_or(PaymentError::NotFound)
    }

    /// Applies a provider webhook through the payment's actor, exactly once
    /// per event identity. `NotFound`: no such payment (yet).
    pub async fn apply_webhook(
        &self,
        record: WebhookRecord,
        event: PaymentEvent,
    ) -> Result<WebhookApplied, PaymentError> {
        match self
            .registry
            .apply_webhook(record.clone(), WebhookChange::Event(event))
            .await
        {
            Err(PaymentError::NotFound) => self.service.record_unknown(&record, Some(event)).await,
            other => other,
        }
    }

    /// Applies provider webhooks, exactly once per event identity, each
    /// payment's in the order given; the result of each, in that order. An
    /// event for a reference payorch never made is recorded
    /// (`ignored:unknown_reference`), with an `unknown_transaction` review
    /// when it says money moved.
    /// On PostgreSQL in one transaction (the apply pipeline, [`pipeline`]), serialized with
    /// every other change of the same payments by their row locks; should
    /// that transaction fail, or on SQLite, one at a time through the
    /// payments' actors.
    pub async fn apply_webhooks(
        &self,
        events: Vec<WebhookEvent>,
    ) -> Vec<Result<WebhookApplied, PaymentError>> {
        if self.db.get_database_backend() == sea_orm::DbBackend::Postgres {
            match self.service.apply_webhooks(&events).await {
                Ok(mut results) => {
                    for (result, event) in results.iter_mut().zip(&events) {
                        if matches!(result, Err(PaymentError::NotFound)) {
                            *result = self
                                .service
                                .record_unknown(&event.record, Some(event.event))
                                .await;
                        }
                    }
                    return results;
                }
                Err(err) => tracing::warn!(
                    error = %err,
                    events = events.len(),
                    "webhook batch not applied; applying its events one by one"
                ),
            }
        }
        let mut results = Vec::with_capacity(events.len());
        for WebhookEvent { record, event } in events {
            results.push(self.apply_webhook(record, event).await);
        }
        results
    }

    /// Applies a provider webhook whose figures are not signed: the
    /// payment's connector is asked about it first, and what it reports is
    /// applied, exactly once per event identity. A charge the connector
    /// does not report settled yet is `Unconfirmed` (nothing written, for a
    /// retry), or on the `last_try` recorded as `ignored:unconfirmed`; a
    /// declined attempt on a checkout that stays payable is recorded as
    /// `ignored:attempt_declined`, and a transaction the connector reports
    /// under another reference as `ignored:other_transaction`.
    pub async fn confirm_webhook(
        &self,
        record: WebhookRecord,
        transaction_id: Option<i64>,
        last_try: bool,
    ) -> Result<WebhookApplied, PaymentError> {
        let change = WebhookChange::Confirm {
            transaction_id,
            last_try,
        };
        self.registry.apply_webhook(record, change).await
    }

    /// The enabled connectors (webhook ingest, `/readyz`).
    pub fn connectors(&self) -> &Arc<Connectors> {
        &self.connectors
    }

    /// Records, once, an authentic event payorch does not act on (so it can
    /// be seen); no payment changes. `false`: recorded before.
    pub async fn record_unhandled(&self, record: &WebhookRecord) -> Result<bool, PaymentError> {
        Ok(webhooks::insert(&self.db, record, "unhandled").await?)
    }

    /// Live payment actors in this process.
    pub fn live_actors(&self) -> usize {
        self.registry.len()
    }

    /// Stops every actor (shutdown).
    pub fn stop(&self) {
        self.registry.stop();
    }
}
