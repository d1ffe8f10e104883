//! Reviews in the payment core: opening one where payorch cannot know,
//! and resolving one on an operator's word. The CLI (`payorch reviews`)
//! calls these, and so will the operator API; settling money goes through
//! the same path as the provider's answers ([`PaymentService::settle_refund_with`]),
//! with the operator's decision recorded on the review in the same
//! transaction.

use std::time::Duration;

use uuid::Uuid;

use super::{PaymentError, Payments, decide::Source, service::PaymentService};
use crate::{
    domain::{RefundReport, RefundStatus, ReviewAction, ReviewKind},
    store::{
        payments::{self, Payment},
        refunds::{self, Refund},
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

    /// The open payment-level review of the payment `payment_id`, if any.
    pub async fn open_payment_review(
        &self,
        payment_id: Uuid,
    ) -> Result<Option<Review>, PaymentError> {
        Ok(reviews::open_for_payment(&self.db, payment_id).await?)
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
