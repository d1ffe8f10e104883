//! Reviews in the payment core: opening one where payorch cannot know,
//! and resolving one on an operator's word. The CLI (`payorch reviews`)
//! calls these, and so will the operator API; settling money goes through
//! the same path as the provider's answers ([`PaymentService::settle_refund_with`]),
//! with the operator's decision recorded on the review in the same
//! transaction.

use std::time::Duration;

use uuid::Uuid;

use sea_orm::DatabaseTransaction;

use super::{
    PaymentError, Payments,
    decide::{ReviewAsked, Source},
    service::PaymentService,
};
use crate::{
    domain::{
        Amount, LateSuccess, RefundReport, RefundStatus, ReviewAction, ReviewKind,
        review::BY_POLICY,
    },
    store::{
        payments::{self, Payment},
        refunds::{self, NewRefund, Refund},
        reviews::{self, NewReview, Resolution, Review},
    },
};

/// Why a review could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no such review")]
    NotFound,
    #[error("review {id} is resolved already ({action} by {by} at {at})")]
    AlreadyResolved {
        id: Uuid,
        action: String,
        by: String,
        at: String,
    },
    #[error("{0}")]
    NotApplicable(String),
    #[error(transparent)]
    Payment(#[from] PaymentError),
}

impl From<sea_orm::DbErr> for ReviewError {
    fn from(err: sea_orm::DbErr) -> Self {
        ReviewError::Payment(err.into())
    }
}

impl PaymentService {
    /// A sent refund the provider has not found for `waited`: in one
    /// transaction it becomes `requires_review` (its amount still
    /// promised), a `refund_outcome_unknown` review opens with what payorch
    /// knew, the merchant event `refund.requires_review` is written and
    /// the payment's audit trail notes it.
    pub(super) async fn refund_outcome_unknown(
        &self,
        payment: &Payment,
        refund: Refund,
        waited: Duration,
    ) -> Result<Refund, PaymentError> {
        let txn = crate::store::begin_write(&self.db).await?;
        if !refunds::require_review(&txn, refund.id).await? {
            // Settled (or sent to review) meanwhile: as it is now.
            txn.rollback().await?;
            return refunds::find(&self.db, refund.id)
                .await?
                .ok_or(PaymentError::NotFound);
        }
        let detail = serde_json::json!({
            "dispatch": refund.dispatch,
            "provider": payment.provider,
            "provider_reference": payment.reference,
            "provider_refund_id": refund.provider_refund_id,
            "amount": refund.amount,
            "currency": refund.currency,
            "waited_s": waited.as_secs(),
            "lookup": "not_found",
        });
        let review = reviews::open(
            &txn,
            NewReview {
                kind: ReviewKind::RefundOutcomeUnknown,
                payment_id: payment.id,
                refund_id: Some(refund.id),
                detail,
                connector: None,
                reference: None,
            },
        )
        .await?;
        let under_review = Refund {
            status: RefundStatus::RequiresReview.as_str().to_owned(),
            updated_at: chrono::Utc::now(),
            ..refund
        };
        crate::events::record_refund(
            &txn,
            &under_review,
            &payment.client_reference,
            review.as_ref(),
        )
        .await?;
        payments::record_transition(
            &txn,
            payment.id,
            &payment.status,
            &payment.status,
            "reconcile:refund_requires_review",
            None,
        )
        .await?;
        super::commit(txn).await?;
        tracing::warn!(refund_id = %under_review.id, "refund outcome unknown; review opened");
        Ok(under_review)
    }
}

impl PaymentService {
    /// Opens the payment-level review `asked` about `payment` (as the
    /// change left it) in `txn`, which holds the payment's row lock: once
    /// per payment, kind and connector, ever — the same money found again
    /// (a redelivered webhook under a new id, the next settlement pass) is
    /// not a new case. With it, the merchant event `payment.requires_review`
    /// and an audit row. A `paid_after_final` review under
    /// `PAYORCH_LATE_SUCCESS=refund` is resolved at once by refunding the
    /// money at its connector: that refund is returned, for the caller to
    /// send once committed. `None`: opened before.
    pub(super) async fn open_payment_review(
        &self,
        txn: &DatabaseTransaction,
        payment: &Payment,
        asked: &ReviewAsked,
        source: Source,
        event_id: Option<&str>,
    ) -> Result<Option<(Review, Option<Refund>)>, PaymentError> {
        let elsewhere = (asked.connector != payment.provider).then_some(asked.connector.as_str());
        if reviews::ever_opened(txn, asked.kind, payment.id, elsewhere).await? {
            return Ok(None);
        }
        let detail = serde_json::json!({
            "connector": asked.connector,
            "amount": asked.amount,
            "currency": asked.currency,
            "payment_status": payment.status,
            "payment_connector": payment.provider,
            "provider_reference": payment.reference,
            "source": source.as_str(),
            "event_id": event_id,
        });
        let new =
            NewReview::of_payment(asked.kind, payment.id, elsewhere.map(str::to_owned), detail);
        let Some(review) = reviews::open(txn, new).await? else {
            return Ok(None);
        };
        tracing::warn!(
            reference = payment.reference,
            kind = asked.kind.as_str(),
            connector = asked.connector,
            amount = asked.amount,
            "money moved where payorch did not expect it; review opened"
        );
        crate::store::events::insert_many(
            txn,
            vec![crate::events::payment_review_event(payment, &review)],
        )
        .await?;
        payments::record_transition(
            txn,
            payment.id,
            &payment.status,
            &payment.status,
            &format!(
                "{}:requires_review:{}",
                source.as_str(),
                asked.kind.as_str()
            ),
            event_id,
        )
        .await?;
        let refund = if asked.kind == ReviewKind::PaidAfterFinal
            && self.late_success == LateSuccess::Refund
        {
            let resolution = Resolution {
                by: BY_POLICY.to_owned(),
                action: ReviewAction::RefundAtConnector,
                note: Some("PAYORCH_LATE_SUCCESS=refund".to_owned()),
            };
            match refund_at_connector_in(txn, &review, payment, &resolution).await? {
                AtConnector::Refunding(refund) => Some(*refund),
                // Given back there before (another review's refund): the
                // review stays open for an operator.
                AtConnector::RefundedBefore | AtConnector::NotOpen => None,
            }
        } else {
            None
        };
        Ok(Some((review, refund)))
    }
}

/// What [`refund_at_connector_in`] did.
enum AtConnector {
    /// The refund, written (unsent) with the review's resolution.
    Refunding(Box<Refund>),
    /// A refund of this payment at that connector exists (not failed):
    /// nothing written.
    RefundedBefore,
    /// The review was not open any more: the caller rolls back.
    NotOpen,
}

/// Resolves `review` (open, about money `payment`'s connector — or another
/// — took) by refunding that money where it is, in `txn`: a refund row for
/// the connector, amount and currency the review recorded (unsent: the
/// caller sends it once committed, or the sweep does), the review closed
/// as `resolution` says, the refund's merchant event and an audit row.
/// Exactly once per payment and connector, whoever asks and however often:
/// a unique index over review refunds that have not failed (one that
/// failed reopens its review, see [`PaymentService::settle_refund_with`]).
async fn refund_at_connector_in(
    txn: &DatabaseTransaction,
    review: &Review,
    payment: &Payment,
    resolution: &Resolution,
) -> Result<AtConnector, PaymentError> {
    let connector = review.connector.as_deref().unwrap_or(&payment.provider);
    let amount = review
        .detail
        .get("amount")
        .and_then(serde_json::Value::as_i64)
        .and_then(|a| Amount::new(a).ok())
        .ok_or_else(|| PaymentError::Internal(format!("review {} records no amount", review.id)))?;
    let currency = review
        .detail
        .get("currency")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(&payment.currency)
        .to_owned();
    let refund = refunds::insert_once(
        txn,
        NewRefund {
            payment_id: payment.id,
            client_id: payment.client_id,
            amount,
            currency: &currency,
            reason: Some(format!("{}: {}", review.kind, resolution.action.as_str())),
            connector: Some(connector),
            review_id: Some(review.id),
        },
    )
    .await?;
    let Some(refund) = refund else {
        return Ok(AtConnector::RefundedBefore);
    };
    if !reviews::resolve(txn, review.id, resolution).await? {
        return Ok(AtConnector::NotOpen);
    }
    crate::events::record_refund(txn, &refund, &payment.client_reference, None).await?;
    payments::record_transition(
        txn,
        payment.id,
        &payment.status,
        &payment.status,
        &format!("{}:refund_at_connector:{connector}", review.kind),
        None,
    )
    .await?;
    tracing::info!(
        reference = payment.reference,
        connector,
        amount = refund.amount,
        by = resolution.by,
        "refunding at the connector that took the money"
    );
    Ok(AtConnector::Refunding(Box::new(refund)))
}

impl Payments {
    /// The open reviews of `refunds`, by refund.
    pub async fn open_refund_reviews(
        &self,
        refunds: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, Review>, PaymentError> {
        let open = reviews::open_for_refunds(&self.db, refunds).await?;
        Ok(open
            .into_iter()
            .filter_map(|review| review.refund_id.map(|id| (id, review)))
            .collect())
    }

    /// Reviews, oldest first (`open_only`: those still open).
    pub async fn reviews(&self, open_only: bool, limit: u64) -> Result<Vec<Review>, ReviewError> {
        Ok(reviews::list(&self.db, open_only, limit).await?)
    }

    /// Resolves the open review `id` as an operator (`by`) decides:
    /// `mark_succeeded` / `mark_failed` settle its refund (the payment
    /// `refunded` when covered; a failed refund's amount released) and
    /// `dismiss` closes it without touching money; each records who, when,
    /// the action and the note. A resolved review is never resolved again.
    pub async fn resolve_review(
        &self,
        id: Uuid,
        action: ReviewAction,
        by: &str,
        note: Option<String>,
    ) -> Result<Review, ReviewError> {
        let review = reviews::find(&self.db, id)
            .await?
            .ok_or(ReviewError::NotFound)?;
        if review.status != crate::domain::review::OPEN {
            return Err(already_resolved(review));
        }
        let kind = ReviewKind::parse(&review.kind)
            .ok_or_else(|| PaymentError::Internal(format!("review {id} kind")))?;
        if !ReviewAction::OPERATOR.contains(&action) || !action.applies_to(kind) {
            return Err(ReviewError::NotApplicable(format!(
                "`{}` does not resolve a {} review",
                action.as_str(),
                kind.as_str()
            )));
        }
        let resolution = Resolution {
            by: by.to_owned(),
            action,
            note,
        };
        if action == ReviewAction::RefundAtConnector {
            return self.refund_at_connector(review, &resolution).await;
        }
        let report = match action {
            ReviewAction::MarkSucceeded => Some(RefundReport::Processed),
            ReviewAction::MarkFailed => Some(RefundReport::Failed),
            _ => None,
        };
        match (report, review.refund_id) {
            (Some(report), Some(refund_id)) => {
                let payment = payments::find_by_id(&self.db, review.payment_id)
                    .await?
                    .ok_or(PaymentError::NotFound)?;
                self.service
                    .settle_refund_with(
                        &payment.reference,
                        refund_id,
                        report,
                        Source::Operator,
                        None,
                        &resolution,
                    )
                    .await?;
            }
            (Some(_), None) => {
                return Err(ReviewError::NotApplicable(format!(
                    "review {id} names no refund"
                )));
            }
            (None, _) => {
                if !reviews::resolve(&self.db, id, &resolution).await? {
                    let now = reviews::find(&self.db, id)
                        .await?
                        .ok_or(ReviewError::NotFound)?;
                    return Err(already_resolved(now));
                }
            }
        }
        let resolved = reviews::find(&self.db, id)
            .await?
            .ok_or(ReviewError::NotFound)?;
        if resolved.resolved_by.as_deref() != Some(by) {
            // Settled by the provider (or another operator) meanwhile.
            return Err(already_resolved(resolved));
        }
        self.count_open_reviews().await?;
        Ok(resolved)
    }

    /// `refund_at_connector`: the review resolved and its refund created
    /// in one transaction (under the payment's lock), then sent through the
    /// payment's actor. A send whose answer is lost leaves the refund
    /// pending for the sweep, like any refund.
    async fn refund_at_connector(
        &self,
        review: Review,
        resolution: &Resolution,
    ) -> Result<Review, ReviewError> {
        let payment = payments::find_by_id(&self.db, review.payment_id)
            .await?
            .ok_or_else(|| {
                ReviewError::NotApplicable(format!("review {} names no payment", review.id))
            })?;
        let (txn, holding) = self.service.hold([payment.reference.clone()]).await?;
        let payment = holding.only().cloned().ok_or(PaymentError::NotFound)?;
        let refund = match refund_at_connector_in(&txn, &review, &payment, resolution).await {
            Ok(AtConnector::Refunding(refund)) => *refund,
            Ok(AtConnector::RefundedBefore) => {
                txn.rollback().await?;
                return Err(ReviewError::NotApplicable(format!(
                    "the money at {} for this payment is refunded (or being refunded) already",
                    review.connector.as_deref().unwrap_or(&payment.provider)
                )));
            }
            Ok(AtConnector::NotOpen) => {
                txn.rollback().await?;
                let now = reviews::find(&self.db, review.id)
                    .await?
                    .ok_or(ReviewError::NotFound)?;
                return Err(already_resolved(now));
            }
            Err(err) => {
                txn.rollback().await?;
                return Err(err.into());
            }
        };
        super::commit(txn).await?;
        if let Err(err) = self.send_refund(&payment.reference, refund.id).await {
            tracing::warn!(refund_id = %refund.id, error = %err, "refund at connector not settled yet; the sweep follows it");
        }
        self.count_open_reviews().await?;
        reviews::find(&self.db, review.id)
            .await?
            .ok_or(ReviewError::NotFound)
    }

    /// Sets `payorch_reviews_open{kind}` from the table (every kind, zero
    /// included).
    pub async fn count_open_reviews(&self) -> Result<(), ReviewError> {
        let counts = reviews::count_open(&self.db).await?;
        for kind in ReviewKind::ALL {
            let open = counts
                .iter()
                .find(|(k, _)| k == kind.as_str())
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("payorch_reviews_open", "kind" => kind.as_str()).set(open as f64);
        }
        Ok(())
    }
}

fn already_resolved(review: Review) -> ReviewError {
    ReviewError::AlreadyResolved {
        id: review.id,
        action: review.resolution.unwrap_or_default(),
        by: review.resolved_by.unwrap_or_default(),
        at: review
            .resolved_at
            .map(|at| at.to_rfc3339())
            .unwrap_or_default(),
    }
}
