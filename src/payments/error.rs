//! [`PaymentError`]: why an operation on a payment did not succeed, one
//! type for the whole core. The HTTP layer maps it to problem+json, the
//! worker to retry or park; database errors are classified here once.

use sea_orm::DbErr;

use crate::{domain::FieldError, provider::ProviderError};

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

pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
