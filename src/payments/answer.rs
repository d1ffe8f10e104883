//! A request's answer and its Idempotency-Key: what is rendered, stored
//! and replayed byte for byte ([`Rendered`], [`Answer`]), and the key's
//! steps around an operation — claimed before it, its outcome stored (or
//! the key released for a retry) after it. Initialize and refund both go
//! through these.

use std::sync::Arc;

use uuid::Uuid;

use super::{
    PaymentError, Payments, commit,
    idempotency::{self, Rendered, Reservation},
};
use crate::{domain::IdempotencyKey, store::payments::Payment};

/// An initialize's answer and the key it is stored under. When the
/// provider's checkout is applied, the answer is rendered from the payment
/// as written and stored with the key in that same write — on PostgreSQL
/// a sub-statement of the checkout's one statement, else in its
/// transaction — so a successful initialize commits twice (key + payment;
/// checkout + answer) rather than three times. Any other outcome is stored
/// afterwards, as for every request ([`Payments::store_outcome`]).
#[derive(Clone)]
pub(crate) struct Completion {
    claim: idempotency::Claim,
    render: Arc<dyn Fn(Result<Payment, PaymentError>) -> Rendered + Send + Sync>,
    /// Set once the transaction that stored the answer committed.
    stored: Arc<std::sync::OnceLock<Rendered>>,
}

impl Completion {
    pub(super) fn new(
        claim: idempotency::Claim,
        render: impl Fn(Result<Payment, PaymentError>) -> Rendered + Send + Sync + 'static,
    ) -> Completion {
        Completion {
            claim,
            render: Arc::new(render),
            stored: Arc::default(),
        }
    }

    pub(super) fn render(&self, result: Result<Payment, PaymentError>) -> Rendered {
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

    /// The answer for `payment`, and the statement that stores it under
    /// the key (PostgreSQL), to write with the change itself.
    pub(super) fn storing(&self, payment: &Payment) -> (Rendered, sea_orm::Statement) {
        let rendered = self.render(Ok(payment.clone()));
        let statement = idempotency::completion(&self.claim, &rendered);
        (rendered, statement)
    }

    /// Whether the statement of [`Self::storing`] stored the answer: the
    /// rows it wrote (none when a retry took the key over).
    pub(super) fn stored_rows(&self, rows: u64) -> bool {
        idempotency::completed(rows, &self.claim)
    }

    /// Its transaction committed.
    pub(crate) fn stored(&self, rendered: Rendered) {
        let _ = self.stored.set(rendered);
    }

    pub(super) fn answered(&self) -> Option<Rendered> {
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

impl Payments {
    /// A final refusal before anything was created, stored under the key
    /// for replays. The refused statement may have aborted `txn`, so the
    /// answer is stored in a fresh transaction.
    pub(super) async fn refuse<T>(
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
    pub(super) async fn claim_key(
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
    pub(super) async fn store_outcome<T>(
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

    /// Stores a final answer under a key whose reserving transaction was lost.
    pub(super) async fn settle_key(
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

fn count_idempotency(result: &'static str) {
    metrics::counter!("payorch_idempotency_total", "result" => result).increment(1);
}
