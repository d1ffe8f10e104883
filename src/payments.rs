//! The payment operations that change state: create, initialize at the
//! provider, verify, apply an event. Each state change runs the pure
//! [`transition`](crate::domain::transition) and writes the result with a
//! version check, retrying on conflict; the audit row (and, for a webhook,
//! its dedup row) goes in the same transaction. Within a process,
//! [`crate::actors`] serializes these per payment; across processes the
//! database does: a webhook reads the payment row locked (`FOR UPDATE`), so
//! workers holding events of one payment queue on the lock, and the version
//! check catches whatever was read without one.

use std::sync::Arc;

use sea_orm::{DatabaseConnection, DbBackend, DbErr, TransactionTrait};
use uuid::Uuid;

use crate::{
    domain::{
        Amount, Currency, Email, IgnoreReason, Outcome, PaymentEvent, PaymentStatus, Reference,
        transition,
    },
    error::ApiError,
    provider::{InitializeRequest, PaymentProvider, ProviderError},
    store::{
        payments::{self, Changes, NewPayment, Payment},
        webhooks::{self, WebhookRecord},
    },
};

/// How often a version conflict is retried before giving up (503).
const CONFLICT_RETRIES: usize = 8;

pub struct PaymentService {
    pub db: DatabaseConnection,
    pub provider: Arc<dyn PaymentProvider>,
}

/// A validated request to take a payment.
#[derive(Debug, Clone)]
pub struct NewPaymentRequest {
    pub reference: Reference,
    pub amount: Amount,
    pub currency: Currency,
    pub email: Email,
    pub callback_url: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

/// What caused an event, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Initialize,
    Verify,
    Webhook,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Initialize => "initialize",
            Source::Verify => "verify",
            Source::Webhook => "webhook",
        }
    }
}

impl From<ProviderError> for ApiError {
    fn from(err: ProviderError) -> Self {
        match err {
            ProviderError::Rejected(message) => ApiError::ProviderRejected(message),
            ProviderError::Unavailable(message) => ApiError::ProviderUnavailable(message),
            ProviderError::Timeout => ApiError::ProviderTimeout,
        }
    }
}

impl PaymentService {
    /// Stores a new `created` payment (and its first audit row) in `db`,
    /// which may be a transaction the caller also uses for its key.
    pub async fn create(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        client_id: Uuid,
        request: &NewPaymentRequest,
    ) -> Result<Payment, ApiError> {
        // No look-before-insert: the unique index decides, in one statement.
        payments::insert(
            db,
            NewPayment {
                client_id,
                reference: &request.reference,
                provider: self.provider.name(),
                amount: request.amount,
                currency: request.currency,
                email: &request.email,
                metadata: request.metadata.clone(),
            },
        )
        .await
        .map_err(|err| match err {
            // Lost a race with another request for the same reference.
            err if is_unique_violation(&err) => reference_taken(),
            err => err.into(),
        })
    }

    /// Opens the provider transaction of a `created` payment and moves it to
    /// `pending`. A payment already past `created` is returned unchanged, so
    /// a retried or resumed request never opens a second transaction.
    ///
    /// A provider refusal fails the payment. But a `resumed` payment (its
    /// first request crashed or timed out) may already exist at the
    /// provider, which then refuses the repeated reference: so a refused
    /// resume first asks the provider what it holds under the reference
    /// ([`Self::settle_refused_resume`]).
    pub async fn initialize_at_provider(
        &self,
        reference: &str,
        callback_url: Option<String>,
        resumed: bool,
    ) -> Result<Payment, ApiError> {
        let payment = self.load(reference).await?;
        if status_of(&payment)? != PaymentStatus::Created {
            return Ok(payment);
        }
        let request = InitializeRequest {
            reference: Reference::parse(&payment.reference).map_err(corrupt)?,
            amount: Amount::new(payment.amount).map_err(corrupt)?,
            currency: Currency::parse(&payment.currency).map_err(corrupt)?,
            email: Email::parse(&payment.email).map_err(corrupt)?,
            callback_url,
            metadata: payment.metadata.clone(),
        };
        match self.provider.initialize(&request).await {
            Ok(checkout) => {
                let changes = Changes {
                    authorization_url: Some(checkout.authorization_url),
                    access_code: Some(checkout.access_code),
                    ..Changes::default()
                };
                let (payment, _) = self
                    .apply_loaded(
                        payment,
                        PaymentEvent::ProviderAccepted,
                        Source::Initialize,
                        changes,
                    )
                    .await?;
                Ok(payment)
            }
            Err(ProviderError::Rejected(message)) if resumed => {
                self.settle_refused_resume(payment, message).await
            }
            Err(ProviderError::Rejected(message)) => self.fail_rejected(payment, message).await,
            Err(err) => {
                tracing::warn!(reference, error = %err, "provider initialize failed");
                Err(err.into())
            }
        }
    }

    /// A resumed initialize the provider refused. If the provider holds a
    /// transaction under the reference for this amount and currency, an
    /// earlier attempt opened it: apply what it reports (usually pending,
    /// without a checkout link, which Paystack does not hand out twice).
    /// If it holds none, or one for other terms, the refusal stands.
    async fn settle_refused_resume(
        &self,
        payment: Payment,
        message: String,
    ) -> Result<Payment, ApiError> {
        let reference = Reference::parse(&payment.reference).map_err(corrupt)?;
        match self.provider.verify(&reference).await {
            Ok(report)
                if report.amount == payment.amount && report.currency == payment.currency =>
            {
                tracing::warn!(
                    reference = %reference,
                    status = report.status,
                    "provider already holds this resumed payment; taking its state"
                );
                let event = match report.event()? {
                    PaymentEvent::ChargePending => PaymentEvent::ProviderAccepted,
                    event => event,
                };
                let (payment, _) = self
                    .apply_loaded(payment, event, Source::Initialize, Changes::default())
                    .await?;
                Ok(payment)
            }
            Ok(_) | Err(ProviderError::Rejected(_)) => self.fail_rejected(payment, message).await,
            Err(err) => Err(err.into()),
        }
    }

    /// The provider refused to open the transaction: the payment fails,
    /// unless another attempt moved it on meanwhile.
    async fn fail_rejected(&self, payment: Payment, message: String) -> Result<Payment, ApiError> {
        let changes = Changes {
            failure_reason: Some("provider_rejected".into()),
            ..Changes::default()
        };
        let (payment, _) = self
            .apply_loaded(
                payment,
                PaymentEvent::ProviderRejected,
                Source::Initialize,
                changes,
            )
            .await?;
        match status_of(&payment)? {
            PaymentStatus::Failed | PaymentStatus::Abandoned => {
                Err(ApiError::ProviderRejected(message))
            }
            // Another process opened the transaction, or it was even paid.
            _ => Ok(payment),
        }
    }

    /// Asks the provider about a payment and applies what it says. A payment
    /// in a final state is returned without asking.
    pub async fn verify(&self, reference: &str) -> Result<Payment, ApiError> {
        let payment = self.load(reference).await?;
        let status = status_of(&payment)?;
        // Final states do not move (bar a refund, which verify does not
        // report); a `created` payment has no provider transaction yet.
        if status.is_terminal() || status == PaymentStatus::Created {
            return Ok(payment);
        }
        let report = self
            .provider
            .verify(&Reference::parse(reference).map_err(corrupt)?)
            .await?;
        let event = report.event()?;
        let (payment, _) = self
            .apply_loaded(payment, event, Source::Verify, Changes::default())
            .await?;
        Ok(payment)
    }

    /// Runs the state machine on `event` and persists the outcome with the
    /// version check, retrying on conflict. Returns the payment after the
    /// event and what the state machine decided.
    pub async fn apply(
        &self,
        reference: &str,
        event: PaymentEvent,
        source: Source,
        extra: Changes,
    ) -> Result<(Payment, Outcome), ApiError> {
        self.apply_inner(reference, event, source, extra, None, None)
            .await
            .map(|applied| applied.expect("only webhooks can be duplicates"))
    }

    /// [`Self::apply`] on a payment the caller has just read.
    async fn apply_loaded(
        &self,
        payment: Payment,
        event: PaymentEvent,
        source: Source,
        extra: Changes,
    ) -> Result<(Payment, Outcome), ApiError> {
        let reference = payment.reference.clone();
        self.apply_inner(&reference, event, source, extra, None, Some(payment))
            .await
            .map(|applied| applied.expect("only webhooks can be duplicates"))
    }

    /// Applies a provider webhook in one transaction: the `webhook_events`
    /// row (unique per provider and event identity), the state change and
    /// its audit row, and the event's outcome. `Ok(None)`: this event was
    /// processed before, nothing changed.
    pub async fn apply_webhook(
        &self,
        record: &WebhookRecord,
    ) -> Result<Option<(Payment, Outcome)>, ApiError> {
        self.apply_inner(
            &record.reference,
            record.event,
            Source::Webhook,
            Changes::default(),
            Some(record),
            None,
        )
        .await
    }

    async fn apply_inner(
        &self,
        reference: &str,
        event: PaymentEvent,
        source: Source,
        extra: Changes,
        webhook: Option<&WebhookRecord>,
        mut loaded: Option<Payment>,
    ) -> Result<Option<(Payment, Outcome)>, ApiError> {
        // Delivered events carry their identity into the audit trail.
        let event_id = webhook.map(|record| record.event_id.as_str());
        // SQLite has no row locks, and a transaction that reads before it
        // writes fails outright if another connection wrote in between: there
        // the payment is read first and the version check alone arbitrates.
        let row_locks = self.db.get_database_backend() == DbBackend::Postgres;
        for _ in 0..CONFLICT_RETRIES {
            if loaded.is_none() && !row_locks {
                loaded = Some(self.load(reference).await?);
            }
            let txn = self.db.begin().await?;
            // A payment the caller just read saves a query, and the version
            // check catches it if it went stale. Otherwise the row is read
            // locked: concurrent workers then queue on the lock instead of
            // failing the version check and going round again.
            let (current, locked) = match loaded.take() {
                Some(payment) => (payment, false),
                None => match payments::lock_by_reference(&txn, reference).await? {
                    Some(payment) => (payment, true),
                    None => return Err(ApiError::NotFound),
                },
            };
            let status = status_of(&current)?;
            let amount = Amount::new(current.amount).map_err(corrupt)?;
            let currency = Currency::parse(&current.currency).map_err(corrupt)?;
            let outcome = transition(status, amount, currency, &event);
            let cause = |verdict: &str| match verdict {
                "" => format!("{}:{}", source.as_str(), event.name()),
                verdict => format!("{}:{}:{verdict}", source.as_str(), event.name()),
            };
            // Only an unlocked read needs a write to prove that the state the
            // audit row describes was still the state when it was written.
            let prove = |changes: Changes| (!locked).then_some(changes);
            let (changes, to, cause) = match outcome {
                Outcome::Applied { to } => {
                    let mut changes = extra.clone();
                    changes.status = Some(to);
                    changes.paid = to == PaymentStatus::Succeeded;
                    (Some(changes), to, cause(""))
                }
                Outcome::Flagged(reason) => {
                    let changes = Changes {
                        failure_reason: Some(reason.as_str().to_owned()),
                        ..Changes::default()
                    };
                    tracing::warn!(reference, reason = reason.as_str(), "payment flagged");
                    (
                        Some(changes),
                        status,
                        cause(&format!("flagged_{}", reason.as_str())),
                    )
                }
                // A poll that finds nothing new is not worth an audit row; a
                // delivered event always is, so every event can be traced.
                Outcome::Ignored(IgnoreReason::Duplicate) if event_id.is_none() => {
                    txn.rollback().await?;
                    return Ok(Some((current, outcome)));
                }
                Outcome::Ignored(reason) => (
                    prove(Changes::default()),
                    status,
                    cause(&format!("ignored_{}", reason.as_str())),
                ),
                Outcome::Rejected(reason) => (
                    prove(Changes::default()),
                    status,
                    cause(&format!("rejected_{}", reason.as_str())),
                ),
            };
            if let Some(record) = webhook
                && !webhooks::insert(&txn, record, &outcome_label(&outcome)).await?
            {
                txn.rollback().await?;
                return Ok(None);
            }
            let updated = match &changes {
                Some(changes) => match payments::update_versioned(&txn, &current, changes).await? {
                    Some(updated) => updated,
                    None => {
                        txn.rollback().await?;
                        continue;
                    }
                },
                None => current.clone(),
            };
            payments::record_transition(
                &txn,
                current.id,
                &current.status,
                to.as_str(),
                &cause,
                event_id,
            )
            .await?;
            txn.commit().await?;
            return Ok(Some((updated, outcome)));
        }
        Err(ApiError::Unavailable(
            "this payment (too many concurrent changes)",
        ))
    }

    async fn load(&self, reference: &str) -> Result<Payment, ApiError> {
        payments::find_by_reference(&self.db, reference)
            .await?
            .ok_or(ApiError::NotFound)
    }
}

/// How an event ended, for `webhook_events.outcome`.
pub fn outcome_label(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Applied { to } => format!("applied:{}", to.as_str()),
        Outcome::Ignored(reason) => format!("ignored:{}", reason.as_str()),
        Outcome::Flagged(reason) => format!("flagged:{}", reason.as_str()),
        Outcome::Rejected(reason) => format!("rejected:{}", reason.as_str()),
    }
}

fn status_of(payment: &Payment) -> Result<PaymentStatus, ApiError> {
    PaymentStatus::parse(&payment.status).ok_or_else(|| {
        ApiError::Internal(format!(
            "payment {} has status {:?}",
            payment.id, payment.status
        ))
    })
}

/// A stored row that no longer parses: a bug or a hand edit, never the client's fault.
fn corrupt(err: crate::domain::DomainError) -> ApiError {
    ApiError::Internal(format!("stored payment is invalid: {err}"))
}

fn reference_taken() -> ApiError {
    // Not echoed: whether another client uses a reference is not this one's business.
    ApiError::Conflict("this reference is already in use".into())
}

pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
