//! The payment and refund as clients see them: the JSON the API returns
//! (and stores as an idempotent request's answer) and the merchant events
//! carry. Below both `http` and `events`, so neither imports the other for
//! them; the OpenAPI schema names are the type names.

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use serde::Serialize;
use uuid::Uuid;

use crate::store::{
    payments::{Payment, Transition},
    refunds::Refund,
    reviews::Review,
};

/// The open review of a payment or refund: payorch could not settle it by
/// itself and an operator is looking.
#[derive(Debug, Clone, Object, Serialize)]
pub struct ReviewRef {
    pub id: Uuid,
    /// `refund_outcome_unknown`, `charged_at_other_connector`,
    /// `paid_after_final`, `amount_mismatch` or `unknown_transaction`.
    pub kind: String,
    pub opened_at: DateTime<Utc>,
}

impl ReviewRef {
    pub fn new(review: &Review) -> ReviewRef {
        ReviewRef {
            id: review.id,
            kind: review.kind.clone(),
            opened_at: review.opened_at,
        }
    }
}

/// A payment as clients see it.
#[derive(Debug, Object, Serialize)]
pub struct PaymentView {
    pub id: Uuid,
    /// Your reference (unique among your payments).
    pub reference: String,
    /// The reference the provider knows the payment by: yours, unless
    /// another client already used it, then one payorch generated.
    pub provider_reference: String,
    /// created, pending, succeeded, failed, abandoned or refunded.
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub email: String,
    pub provider: String,
    #[oai(nullable)]
    pub authorization_url: Option<String>,
    #[oai(nullable)]
    pub access_code: Option<String>,
    #[oai(nullable)]
    pub metadata: Option<serde_json::Value>,
    /// Why a payment failed or was flagged (e.g. `amount_mismatch`).
    #[oai(nullable)]
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[oai(nullable)]
    pub paid_at: Option<DateTime<Utc>>,
    /// The sum of this payment's refunds that have not failed (pending ones
    /// included), in minor units.
    pub refunded_amount: i64,
    /// Counts this payment's changes: a later state has a higher version
    /// (merchant events can be ordered by it).
    pub version: i64,
    /// The open payment-level review, if any (GET only; otherwise null).
    #[oai(nullable)]
    pub review: Option<ReviewRef>,
    /// The audit trail, oldest first (GET only).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transitions: Option<Vec<TransitionView>>,
}

#[derive(Debug, Object, Serialize)]
pub struct TransitionView {
    pub from_status: String,
    pub to_status: String,
    /// What caused it: `verify:charge_succeeded`, `webhook:charge_failed:ignored_late`…
    pub cause: String,
    #[oai(nullable)]
    pub event_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl PaymentView {
    pub fn new(payment: Payment, transitions: Option<Vec<Transition>>) -> PaymentView {
        PaymentView {
            id: payment.id,
            reference: payment.client_reference,
            provider_reference: payment.reference,
            status: payment.status,
            amount: payment.amount,
            currency: payment.currency,
            email: payment.email,
            provider: payment.provider,
            authorization_url: payment.authorization_url,
            access_code: payment.access_code,
            metadata: payment.metadata,
            failure_reason: payment.failure_reason,
            created_at: payment.created_at,
            updated_at: payment.updated_at,
            paid_at: payment.paid_at,
            refunded_amount: payment.refunded_amount,
            version: i64::from(payment.version),
            review: None,
            transitions: transitions.map(|rows| {
                rows.into_iter()
                    .map(|t| TransitionView {
                        from_status: t.from_status,
                        to_status: t.to_status,
                        cause: t.cause,
                        event_id: t.event_id,
                        created_at: t.created_at,
                    })
                    .collect()
            }),
        }
    }

    /// With its open review.
    pub fn with_review(self, review: Option<&Review>) -> PaymentView {
        PaymentView {
            review: review.map(ReviewRef::new),
            ..self
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a payment view serializes")
    }
}

/// A refund as clients see it.
#[derive(Debug, Object, Serialize)]
pub struct RefundView {
    pub id: Uuid,
    pub payment_reference: String,
    /// Minor units.
    pub amount: i64,
    pub currency: String,
    /// pending, requires_review (the provider has no answer for it; its
    /// amount stays reserved), succeeded or failed.
    pub status: String,
    #[oai(nullable)]
    pub reason: Option<String>,
    /// The open review, if any (a refund under review has one).
    #[oai(nullable)]
    pub review: Option<ReviewRef>,
    /// Why it failed (`provider_rejected`, `provider_failed`…).
    #[oai(nullable)]
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl RefundView {
    pub fn new(refund: Refund, payment_reference: &str) -> RefundView {
        RefundView {
            id: refund.id,
            payment_reference: payment_reference.to_owned(),
            amount: refund.amount,
            currency: refund.currency,
            status: refund.status,
            reason: refund.reason,
            review: None,
            failure_reason: refund.failure_reason,
            created_at: refund.created_at,
            updated_at: refund.updated_at,
        }
    }
}

impl RefundView {
    /// With its open review.
    pub fn with_review(self, review: Option<&Review>) -> RefundView {
        RefundView {
            review: review.map(ReviewRef::new),
            ..self
        }
    }
}

/// A review as operators see it (the operator API, `payorch reviews list
/// --json`).
#[derive(Debug, Object, Serialize)]
pub struct ReviewView {
    pub id: Uuid,
    /// `refund_outcome_unknown`, `charged_at_other_connector`,
    /// `paid_after_final`, `amount_mismatch`, `unknown_transaction`…
    pub kind: String,
    pub payment_id: Uuid,
    /// The refund under review, for refund-level kinds.
    #[oai(nullable)]
    pub refund_id: Option<Uuid>,
    /// `open` or `resolved`.
    pub status: String,
    pub opened_at: DateTime<Utc>,
    /// What payorch knew when it opened the review.
    pub detail: serde_json::Value,
    #[oai(nullable)]
    pub resolved_at: Option<DateTime<Utc>>,
    /// `provider`, or who resolved it: `operator:NAME`, `cli:USER`.
    #[oai(nullable)]
    pub resolved_by: Option<String>,
    /// The action that resolved it: `provider`, `mark_succeeded`,
    /// `mark_failed`, `dismiss`…
    #[oai(nullable)]
    pub resolution: Option<String>,
    #[oai(nullable)]
    pub note: Option<String>,
    /// The connector the review is about, when it is not the payment's own
    /// (money found at another connector, a transaction payorch never made).
    #[oai(nullable)]
    pub connector: Option<String>,
    /// The provider's reference of a transaction payorch never made.
    #[oai(nullable)]
    pub reference: Option<String>,
}

impl ReviewView {
    pub fn new(review: Review) -> ReviewView {
        ReviewView {
            id: review.id,
            kind: review.kind,
            payment_id: review.payment_id,
            refund_id: review.refund_id,
            status: review.status,
            opened_at: review.opened_at,
            detail: review.detail,
            resolved_at: review.resolved_at,
            resolved_by: review.resolved_by,
            resolution: review.resolution,
            note: review.note,
            connector: review.connector,
            reference: review.reference,
        }
    }
}
