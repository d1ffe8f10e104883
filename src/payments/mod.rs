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
//!        │     (failing over between connectors), then apply::… (state
//!        │     machine + version-checked update + audit row + outbox
//!        │     event, and the response stored under the key: one txn)
//!        └─▶ idempotency::complete, for any other outcome (or release)
//! Payments::verify / apply_webhook ─▶ actors ─▶ service ─▶ apply
//! ```
//!
//! [`actors`] serializes the state changes of one payment inside this
//! process; across processes the database does (row locks and the version
//! check, see [`apply`]).

mod actors;
mod decide;
pub mod idempotency;
mod pipeline;
pub mod reconcile;
mod refunds;
mod service;

use std::{sync::Arc, time::Duration};

use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use self::{
    actors::{ActorSystem, Command, PaymentRegistry},
    idempotency::Reservation,
    service::{Opening, PaymentService},
};
use crate::{
    domain::{
        Amount, Currency, Email, FieldError, IdempotencyKey, Outcome, PaymentEvent, Reference,
        RefundReport,
    },
    provider::{Connectors, ProviderError, routing::ConnectorName},
    store::{
        payments::{self as store, Payment, Transition},
        refunds::Refund,
        webhooks::{self, WebhookRecord},
    },
    webhook::event::RefundNotice,
};

pub use self::{
    decide::outcome_label,
    pipeline::WebhookEvent,
    reconcile::{Sweep, SweepReport},
    refunds::NewRefundRequest,
};

/// A validated request to take a payment.
#[derive(Debug, Clone)]
pub struct NewPaymentRequest {
    pub reference: Reference,
    pub amount: Amount,
    pub currency: Currency,
    pub email: Email,
    pub callback_url: Option<String>,
    pub metadata: Option<serde_json::Value>,
    /// A connector pinned by the client: that one alone is tried.
    pub provider: Option<ConnectorName>,
}

/// Why an operation on a payment did not succeed. The HTTP layer maps it to
/// problem+json; the worker to retry or park.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("no such payment")]
    NotFound,
    #[error("this reference is already in use")]
    ReferenceTaken,
    /// Only a succeeded payment can be refunded.
    #[error("only a succeeded payment can be refunded")]
    NotRefundable,
    #[error("{}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    IdempotencyInFlight,
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// This payment's mailbox is full.
    #[error("this payment is handling too many requests at once")]
    Busy,
    /// A dependency or this process cannot serve it now; a retry may.
    #[error("{0} is temporarily unavailable")]
    Unavailable(&'static str),
    /// A bug or a broken invariant; the detail is for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl PaymentError {
    /// Whether the same request would fail the same way again, so its answer
    /// may be stored under an Idempotency-Key and replayed.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            PaymentError::Invalid(_)
                | PaymentError::ReferenceTaken
                | PaymentError::NotRefundable
                | PaymentError::Provider(ProviderError::Rejected(_))
        )
    }
}

impl From<DbErr> for PaymentError {
    /// Connection trouble (and SQLite's single writer being busy) is
    /// transient; anything else is a bug or a broken invariant.
    fn from(err: DbErr) -> Self {
        match err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
                tracing::warn!(error = %err, "database unavailable");
                PaymentError::Unavailable("the database")
            }
            other if other.to_string().contains("database is locked") => {
                tracing::warn!(error = %other, "database busy");
                PaymentError::Unavailable("the database")
            }
            other => PaymentError::Internal(format!("database: {other}")),
        }
    }
}

/// Commits `txn`, then wakes this process's event relay: the transaction
/// may have written merchant events, which are now visible.
pub(crate) async fn commit(txn: sea_orm::DatabaseTransaction) -> Result<(), DbErr> {
    txn.commit().await?;
    crate::events::relay::wake();
    Ok(())
}

/// A response as it is sent and, under an Idempotency-Key, stored: the
/// caller renders an outcome (its `render` argument) and the core stores
/// exactly these bytes, so a replay is byte for byte the first answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub status: u16,
    pub body: String,
}

/// An initialize's answer and the key it is stored under. When the
/// provider's checkout is applied, the answer is rendered from the payment
/// as written and stored with the key in that same transaction, so a
/// successful initialize commits twice (key + payment; checkout + answer)
/// rather than three times. Any other outcome is stored afterwards, as for
/// every request ([`Payments::store_outcome`]).
#[derive(Clone)]
pub(crate) struct Completion {
    claim: idempotency::Claim,
    render: Arc<dyn Fn(Result<Payment, PaymentError>) -> Rendered + Send + Sync>,
    /// Set once the transaction that stored the answer committed.
    stored: Arc<std::sync::OnceLock<Rendered>>,
}

impl Completion {
    fn new(
        claim: idempotency::Claim,
        render: impl Fn(Result<Payment, PaymentError>) -> Rendered + Send + Sync + 'static,
    ) -> Completion {
        Completion {
            claim,
            render: Arc::new(render),
            stored: Arc::default(),
        }
    }

    fn render(&self, result: Result<Payment, PaymentError>) -> Rendered {
        (self.render)(result)
    }

    /// Stores the answer for `payment` under the key in `txn`. A request
    /// that no longer owns the key stores nothing (counted as
    /// `stale_owner`) and still answers its caller with it.
    pub(crate) async fn store(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        payment: &Payment,
    ) -> Result<Rendered, PaymentError> {
        let rendered = self.render(Ok(payment.clone()));
        idempotency::complete(txn, &self.claim, &rendered).await?;
        Ok(rendered)
    }

    /// Its transaction committed.
    pub(crate) fn stored(&self, rendered: Rendered) {
        let _ = self.stored.set(rendered);
    }

    fn answered(&self) -> Option<Rendered> {
        self.stored.get().cloned()
    }
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion")
            .field("claim", &self.claim)
            .finish_non_exhaustive()
    }
}

/// The answer to a request that may carry an Idempotency-Key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Produced by this request.
    Fresh(Rendered),
    /// Stored by an earlier request with the same Idempotency-Key.
    Replayed(Rendered),
}

/// An Idempotency-Key and the fingerprint of the request that carried it.
#[derive(Debug, Clone)]
pub struct Idempotent {
    pub key: IdempotencyKey,
    pub fingerprint: String,
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
    /// Ask the payment's connector and apply what it reports; on the
    /// `last_try`, record an unconfirmed event instead of leaving it.
    Confirm { last_try: bool },
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
        let service = Arc::new(PaymentService {
            db: db.clone(),
            connectors: connectors.clone(),
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

    /// Creates a payment for `client_id` and opens its provider transaction.
    ///
    /// `request` is the parsed body, or what was wrong with it: with a key,
    /// even a wrong request is stored and replayed. Without a key every
    /// call is a new payment. With one: the key and the payment are created
    /// in one transaction; the provider is called outside it; the answer is
    /// stored unless it is not [final](PaymentError::is_final), in which
    /// case the key is released for the client's retry, which then finishes
    /// the same payment.
    pub async fn initialize(
        &self,
        client_id: Uuid,
        idempotent: Option<Idempotent>,
        request: Result<NewPaymentRequest, Vec<FieldError>>,
        render: impl Fn(Result<Payment, PaymentError>) -> Rendered + Send + Sync + 'static,
    ) -> Result<Answer, PaymentError> {
        let request = request.and_then(|r| self.check_pin(r));
        let Some(idempotent) = idempotent else {
            let request = request.map_err(PaymentError::Invalid)?;
            let route = self.connectors.route(request.currency, request.provider);
            let payment = self.create(client_id, &request, first(&route)?).await?;
            let payment = self
                .open_at_provider(
                    Opening::Created(Box::new(payment)),
                    request.callback_url,
                    route,
                    None,
                )
                .await?;
            return Ok(Answer::Fresh(render(Ok(payment))));
        };
        let planned = Uuid::now_v7();
        let txn = crate::store::begin_write(&self.db).await?;
        let reservation = self
            .claim_key(&txn, client_id, &idempotent, Some(planned))
            .await?;
        let (claim, earlier_payment, attached) = match reservation {
            Reservation::Replay(stored) => return Ok(Answer::Replayed(stored)),
            Reservation::Proceed {
                claim,
                payment_id,
                attached,
                ..
            } => (claim, payment_id, attached),
        };
        let (opening, callback_url, route) = match (earlier_payment, request) {
            // An earlier attempt created the payment and then crashed or
            // failed with a 5xx: finish that payment, never a second one,
            // starting with the connector it was left at.
            (Some(payment_id), request) => {
                let payment = store::find_by_id(&txn, payment_id).await?.ok_or_else(|| {
                    PaymentError::Internal("an idempotency key names a missing payment".into())
                })?;
                let request = request.ok();
                let callback_url = request.as_ref().and_then(|r| r.callback_url.clone());
                // The same body (the key's fingerprint says so), unless it no
                // longer validates (a pinned connector since disabled): then
                // the payment's own currency's route.
                let route = match (request, Currency::parse(&payment.currency)) {
                    (Some(r), _) => self.connectors.route(r.currency, r.provider),
                    (None, Ok(currency)) => self.connectors.route(currency, None),
                    (None, Err(_)) => Vec::new(),
                };
                (Opening::Resumed(payment.reference), callback_url, route)
            }
            (None, request) => {
                let created = match request {
                    Ok(request) => {
                        let route = self.connectors.route(request.currency, request.provider);
                        match first(&route) {
                            Ok(connector) => {
                                insert_payment(&txn, planned, client_id, &request, connector)
                                    .await
                                    .map(|payment| (payment, request.callback_url, route))
                            }
                            Err(err) => Err(err),
                        }
                    }
                    Err(errors) => Err(PaymentError::Invalid(errors)),
                };
                match created {
                    Ok((payment, callback_url, route)) => {
                        if !attached {
                            idempotency::attach_payment(&txn, &claim, payment.id).await?;
                        }
                        (Opening::Created(Box::new(payment)), callback_url, route)
                    }
                    Err(err) if err.is_final() => {
                        return self.refuse(txn, client_id, &idempotent, err, &render).await;
                    }
                    Err(err) => return Err(err),
                }
            }
        };
        commit(txn).await?;

        let answer = Completion::new(claim, render);
        let result = self
            .open_at_provider(opening, callback_url, route, Some(answer.clone()))
            .await;
        if let Some(rendered) = answer.answered() {
            // Stored with the checkout, in its transaction.
            return Ok(Answer::Fresh(rendered));
        }
        self.store_outcome(&claim, result, |result| answer.render(result))
            .await
    }

    /// Refunds `client_id`'s payment `reference` (all that is left, or
    /// `request.amount`): the refund is created pending and its amount
    /// promised in one transaction — with its Idempotency-Key, as for
    /// initialize — then sent to the provider through the payment's actor.
    /// A provider that does not answer leaves it pending for
    /// reconciliation (still a 201); one that refuses fails it.
    pub async fn refund(
        &self,
        client_id: Uuid,
        reference: &str,
        idempotent: Option<Idempotent>,
        request: Result<NewRefundRequest, Vec<FieldError>>,
        render: impl Fn(Result<Refund, PaymentError>) -> Rendered + Send,
    ) -> Result<Answer, PaymentError> {
        let Some(idempotent) = idempotent else {
            let request = request.map_err(PaymentError::Invalid)?;
            let txn = crate::store::begin_write(&self.db).await?;
            let (refund, at_provider) =
                refunds::create(&txn, client_id, reference, &request).await?;
            commit(txn).await?;
            let refund = self.send_refund(&at_provider, refund.id).await?;
            return Ok(Answer::Fresh(render(Ok(refund))));
        };
        let txn = crate::store::begin_write(&self.db).await?;
        let (claim, earlier_refund) =
            match self.claim_key(&txn, client_id, &idempotent, None).await? {
                Reservation::Replay(stored) => return Ok(Answer::Replayed(stored)),
                Reservation::Proceed {
                    claim, refund_id, ..
                } => (claim, refund_id),
            };
        let (refund_id, at_provider) = match (earlier_refund, request) {
            // An earlier attempt created it: finish that one (it is sent at
            // most once whatever happens here).
            (Some(refund_id), _) => {
                let payment = store::find_owned(&txn, client_id, reference)
                    .await?
                    .ok_or(PaymentError::NotFound)?;
                (refund_id, payment.reference)
            }
            (None, request) => {
                let created = match request {
                    Ok(request) => refunds::create(&txn, client_id, reference, &request).await,
                    Err(errors) => Err(PaymentError::Invalid(errors)),
                };
                match created {
                    Ok((refund, at_provider)) => {
                        idempotency::attach_refund(&txn, &claim, refund.id).await?;
                        (refund.id, at_provider)
                    }
                    Err(err) if err.is_final() => {
                        return self.refuse(txn, client_id, &idempotent, err, &render).await;
                    }
                    Err(err) => return Err(err),
                }
            }
        };
        commit(txn).await?;
        let result = self.send_refund(&at_provider, refund_id).await;
        self.store_outcome(&claim, result, render).await
    }

    /// A final refusal before anything was created, stored under the key
    /// for replays. The refused statement may have aborted `txn`, so the
    /// answer is stored in a fresh transaction.
    async fn refuse<T>(
        &self,
        txn: sea_orm::DatabaseTransaction,
        client_id: Uuid,
        idempotent: &Idempotent,
        err: PaymentError,
        render: impl Fn(Result<T, PaymentError>) -> Rendered,
    ) -> Result<Answer, PaymentError> {
        drop(txn);
        let rendered = render(Err(err));
        self.settle_key(client_id, idempotent, &rendered).await?;
        Ok(Answer::Fresh(rendered))
    }

    /// Reserves `idempotent`'s key in `txn` (nothing is written for a
    /// replay, so the caller may drop `txn` then), counting the outcome.
    /// `planned`: see [`idempotency::reserve`].
    async fn claim_key(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        client_id: Uuid,
        idempotent: &Idempotent,
        planned: Option<Uuid>,
    ) -> Result<Reservation, PaymentError> {
        let reservation = idempotency::reserve(
            txn,
            client_id,
            idempotent.key,
            &idempotent.fingerprint,
            self.idempotency_lock,
            planned,
        )
        .await
        .inspect_err(|err| {
            count_idempotency(match err {
                PaymentError::IdempotencyInFlight => "in_flight",
                PaymentError::IdempotencyKeyReused => "reused",
                _ => "error",
            })
        })?;
        if matches!(reservation, Reservation::Replay(_)) {
            count_idempotency("replayed");
        }
        Ok(reservation)
    }

    /// Stores a final outcome under the key, for replays; a transient
    /// failure releases the key instead, so the client's retry goes on.
    /// A request that no longer owns the key (a retry took it over) stores
    /// nothing and still answers its own caller.
    async fn store_outcome<T>(
        &self,
        claim: &idempotency::Claim,
        result: Result<T, PaymentError>,
        render: impl Fn(Result<T, PaymentError>) -> Rendered,
    ) -> Result<Answer, PaymentError> {
        match result {
            Err(err) if !err.is_final() => {
                idempotency::release(&self.db, claim).await?;
                Err(err)
            }
            result => {
                let rendered = render(result);
                idempotency::complete(&self.db, claim, &rendered).await?;
                Ok(Answer::Fresh(rendered))
            }
        }
    }

    /// `client_id`'s refunds of its payment `reference`, oldest first.
    pub async fn refunds(
        &self,
        client_id: Uuid,
        reference: &str,
    ) -> Result<Vec<Refund>, PaymentError> {
        refunds::list(&self.db, client_id, reference).await
    }

    /// Settles the refund a provider's refund webhook names, exactly once
    /// per event. `false`: a duplicate, or a refund payorch did not make.
    pub async fn apply_refund_webhook(
        &self,
        record: WebhookRecord,
        notice: RefundNotice,
        report: RefundReport,
    ) -> Result<bool, PaymentError> {
        self.registry
            .apply_refund_webhook(record, notice, report)
            .await
    }

    async fn send_refund(&self, reference: &str, refund_id: Uuid) -> Result<Refund, PaymentError> {
        self.registry.send_refund(reference, refund_id).await
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
        let payment = store::find_owned(&self.db, client_id, reference)
            .await?
            .ok_or(PaymentError::NotFound)?;
        let transitions = store::transitions(&self.db, payment.id).await?;
        Ok((payment, transitions))
    }

    /// Applies a provider webhook through the payment's actor, exactly once
    /// per event identity. `NotFound`: no such payment (yet).
    pub async fn apply_webhook(
        &self,
        record: WebhookRecord,
        event: PaymentEvent,
    ) -> Result<WebhookApplied, PaymentError> {
        self.registry
            .apply_webhook(record, WebhookChange::Event(event))
            .await
    }

    /// Applies provider webhooks, exactly once per event identity, each
    /// payment's in the order given; the result of each, in that order.
    /// On PostgreSQL in one transaction (see [`batch`]), serialized with
    /// every other change of the same payments by their row locks; should
    /// that transaction fail, or on SQLite, one at a time through the
    /// payments' actors.
    pub async fn apply_webhooks(
        &self,
        events: Vec<WebhookEvent>,
    ) -> Vec<Result<WebhookApplied, PaymentError>> {
        if self.db.get_database_backend() == sea_orm::DbBackend::Postgres {
            match self.service.apply_webhooks(&events).await {
                Ok(results) => return results,
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
    /// retry), or on the `last_try` recorded as `ignored:unconfirmed`.
    pub async fn confirm_webhook(
        &self,
        record: WebhookRecord,
        last_try: bool,
    ) -> Result<WebhookApplied, PaymentError> {
        self.registry
            .apply_webhook(record, WebhookChange::Confirm { last_try })
            .await
    }

    /// The enabled connectors (webhook ingest, `/readyz`).
    pub fn connectors(&self) -> &Arc<Connectors> {
        &self.connectors
    }

    /// A pinned connector must be enabled.
    fn check_pin(&self, request: NewPaymentRequest) -> Result<NewPaymentRequest, Vec<FieldError>> {
        match request.provider {
            Some(pinned) if !self.connectors.is_enabled(pinned) => Err(vec![FieldError::new(
                "provider",
                format!("`{pinned}` is not enabled here (PAYORCH_PROVIDERS)"),
            )]),
            _ => Ok(request),
        }
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

    /// Inserts a `created` payment on its own.
    async fn create(
        &self,
        client_id: Uuid,
        request: &NewPaymentRequest,
        connector: ConnectorName,
    ) -> Result<Payment, PaymentError> {
        let txn = crate::store::begin_write(&self.db).await?;
        let payment = insert_payment(&txn, Uuid::now_v7(), client_id, request, connector).await?;
        commit(txn).await?;
        Ok(payment)
    }

    /// Opens the provider transaction through the payment's actor.
    async fn open_at_provider(
        &self,
        opening: Opening,
        callback_url: Option<String>,
        route: Vec<ConnectorName>,
        answer: Option<Completion>,
    ) -> Result<Payment, PaymentError> {
        let reference = opening.reference().to_owned();
        let command = Command::Initialize {
            opening,
            callback_url,
            route,
            answer,
        };
        self.registry.call(&reference, command).await
    }

    /// Stores a final answer under a key whose reserving transaction was lost.
    async fn settle_key(
        &self,
        client_id: Uuid,
        idempotent: &Idempotent,
        rendered: &Rendered,
    ) -> Result<(), PaymentError> {
        let txn = crate::store::begin_write(&self.db).await?;
        let reserved = idempotency::reserve(
            &txn,
            client_id,
            idempotent.key,
            &idempotent.fingerprint,
            self.idempotency_lock,
            None,
        )
        .await;
        match reserved {
            Ok(Reservation::Proceed { claim, .. }) => {
                idempotency::complete(&txn, &claim, rendered).await?;
            }
            // A concurrent request took the key meanwhile and will store its
            // own answer; this one is still returned to this caller.
            Ok(Reservation::Replay(_))
            | Err(PaymentError::IdempotencyInFlight | PaymentError::IdempotencyKeyReused) => {}
            Err(err) => return Err(err),
        }
        commit(txn).await?;
        Ok(())
    }
}

/// Inserts a `created` payment (and its first audit row) in `txn`. No
/// look-before-insert: the unique indexes decide, one statement each try.
/// It is opened at the provider under the client's own reference, unless
/// another client's payment holds that one: then under a generated one.
async fn insert_payment(
    txn: &impl sea_orm::ConnectionTrait,
    id: Uuid,
    client_id: Uuid,
    request: &NewPaymentRequest,
    connector: ConnectorName,
) -> Result<Payment, PaymentError> {
    let generated = Reference::generate();
    for provider_reference in [&request.reference, &generated] {
        let inserted = store::insert(
            txn,
            store::NewPayment {
                id,
                client_id,
                reference: &request.reference,
                provider_reference,
                provider: connector.as_str(),
                amount: request.amount,
                currency: request.currency,
                email: &request.email,
                metadata: request.metadata.clone(),
            },
        )
        .await
        .map_err(|err| {
            if is_unique_violation(&err) {
                // This client used the reference before (or a concurrent
                // request of its own just did).
                PaymentError::ReferenceTaken
            } else {
                PaymentError::from(err)
            }
        })?;
        if let Some(payment) = inserted {
            return Ok(payment);
        }
    }
    Err(PaymentError::Internal(
        "a generated provider reference is taken".into(),
    ))
}

/// The first choice of a route (routes are never empty: the enabled
/// connectors are, and configuration checks the rules against them).
fn first(route: &[ConnectorName]) -> Result<ConnectorName, PaymentError> {
    route
        .first()
        .copied()
        .ok_or_else(|| PaymentError::Internal("no connector to route to".into()))
}

fn count_idempotency(result: &'static str) {
    metrics::counter!("payorch_idempotency_total", "result" => result).increment(1);
}

pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
