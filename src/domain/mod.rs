//! The payments domain: pure types and rules, no I/O.
//!
//! Nothing in here touches the network, the database, the clock or a logger,
//! so every rule can be tested exhaustively with plain unit tests.
//!
//! The types follow "parse, don't validate": each newtype (`Amount`,
//! `Currency`, `Reference`, `IdempotencyKey`, `Email`) has one constructor
//! that checks its input, so the rest of the program cannot hold an invalid
//! value and never re-checks one. The HTTP layer parses raw input into these
//! types once, at the edge, and turns a [`DomainError`] into a 400 that names
//! the offending field.
//!
//! `payment` holds the payment state machine: one pure function that decides
//! what an event from a provider does to a payment; `webhook` what payorch
//! reads from a provider's webhook, whichever connector sent it (the
//! vocabulary shared by the connectors, the queue and the worker).

pub mod ids;
pub mod money;
pub mod payment;
pub mod refund;
pub mod review;
pub mod webhook;

pub use ids::{Email, IdempotencyKey, Reference};
pub use money::{Amount, Currency};
pub use payment::{
    FlagReason, IgnoreReason, Outcome, PaymentEvent, PaymentStatus, RejectReason, transition,
};
pub use refund::{RefundRefusal, RefundReport, RefundStatus};
pub use review::{LateSuccess, ReviewAction, ReviewKind};

/// Why raw input could not become a domain value.
///
/// Each variant carries a sentence meant for the API client (it ends up in a
/// problem+json `detail`), so it must never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    InvalidAmount(String),
    #[error("{0}")]
    InvalidCurrency(String),
    #[error("{0}")]
    InvalidReference(String),
    #[error("{0}")]
    InvalidEmail(String),
    #[error("{0}")]
    InvalidIdempotencyKey(String),
}

impl DomainError {
    /// The request field the error is about, as the client spelled it
    /// (a JSON body field, or the header name for the idempotency key).
    pub fn field(&self) -> &'static str {
        match self {
            DomainError::InvalidAmount(_) => "amount",
            DomainError::InvalidCurrency(_) => "currency",
            DomainError::InvalidReference(_) => "reference",
            DomainError::InvalidEmail(_) => "email",
            DomainError::InvalidIdempotencyKey(_) => "Idempotency-Key",
        }
    }
}

/// One wrong field of a request, and why: what a client needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl From<DomainError> for FieldError {
    fn from(err: DomainError) -> FieldError {
        FieldError::new(err.field(), err.to_string())
    }
}
