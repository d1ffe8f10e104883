//! Applying an event to a payment: the pure state machine decides, and the
//! result is written in one transaction — the payment row (version-checked),
//! its audit row and, for a webhook, the event's dedup row.
//!
//! Across processes the database arbitrates. On PostgreSQL the row is read
//! `FOR UPDATE`, so workers holding events of one payment queue on the lock
//! instead of failing each other's version check. SQLite has no row locks,
//! and a transaction that reads before it writes fails outright if another
//! connection wrote in between: there the payment is read first and the
//! version check alone decides, retried on conflict.
//!
//! [`decide`] is the whole decision, free of I/O; [`write`] persists one,
//! with the merchant event it reports (the outbox row, same transaction).

use sea_orm::{DatabaseTransaction, DbBackend};

use super::{PaymentError, WebhookApplied, service::PaymentService};
use crate::{
    domain::{Amount, Currency, IgnoreReason, Outcome, PaymentEvent, PaymentStatus, transition},
    provider::routing::ConnectorName,
    store::{
        payments::{self, Changes, Payment},
        webhooks::{self, WebhookRecord},
    },
};

/// The outcome recorded for a webhook from a connector that does not hold
/// the payment.
pub(super) const OTHER_CONNECTOR: &str = "ignored:other_connector";

/// How often a version conflict is retried before giving up (503).
pub(super) const CONFLICT_RETRIES: usize = 8;

/// What caused an event, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Initialize,
    Verify,
    Webhook,
    /// The provider's answer to a refund request.
    Refund,
    /// A reconciliation sweep asked the provider.
    Reconcile,
}

impl Source {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Source::Initialize => "initialize",
            Source::Verify => "verify",
            Source::Webhook => "webhook",
            Source::Refund => "refund",
            Source::Reconcile => "reconcile",
        }
    }
}

/// An event to apply, with the fields that go with it if it is applied.
#[derive(Debug, Clone)]
pub struct Change {
    pub event: PaymentEvent,
    pub source: Source,
    /// Set along with an applied status (a checkout link, a failure reason).
    pub fields: Changes,
    /// The connector that answered, for an answer to initialize: it counts
    /// only while that connector still holds the payment (a slow answer
    /// from one the payment has failed over from is late).
    pub connector: Option<&'static str>,
}

impl Change {
    pub fn new(event: PaymentEvent, source: Source) -> Change {
        Change {
            event,
            source,
            fields: Changes::default(),
            connector: None,
        }
    }
}

/// What one event does to one payment, decided before anything is written.
#[derive(Debug)]
pub(super) struct Decision {
    pub(super) outcome: Outcome,
    /// The row update, if any. A delivered event that changes nothing on a
    /// row read without its lock still bumps the version, which proves the
    /// status the audit row describes was current when it was written.
    pub(super) update: Option<Changes>,
    pub(super) to: PaymentStatus,
    pub(super) cause: String,
    /// Nothing worth a write: a poll that found nothing new.
    unchanged: bool,
}

/// The whole decision for `change` on `current`. `locked`: the row was read
/// under its lock; `delivered`: the event is a webhook (every one of those
/// gets an audit row, so every event can be traced).
pub(super) fn decide(
    current: &Payment,
    change: &Change,
    locked: bool,
    delivered: bool,
) -> Result<Decision, PaymentError> {
    let status = status_of(current)?;
    let amount = Amount::new(current.amount).map_err(corrupt)?;
    let currency = Currency::parse(&current.currency).map_err(corrupt)?;
    let outcome = transition(status, amount, currency, &change.event);
    let cause = |verdict: &str| {
        let base = format!("{}:{}", change.source.as_str(), change.event.name());
        if verdict.is_empty() {
            base
        } else {
            format!("{base}:{verdict}")
        }
    };
    let proof = (!locked).then(Changes::default);
    if let Some(connector) = change.connector
        && !super::service::held_by(current, connector)
    {
        // The payment failed over to another connector meanwhile: this
        // connector's checkout (or refusal) is never shown.
        return Ok(Decision {
            outcome: Outcome::Ignored(IgnoreReason::Late),
            update: proof,
            to: status,
            cause: cause(&format!("ignored_not_held_by_{connector}")),
            unchanged: false,
        });
    }
    let decision = match outcome {
        Outcome::Applied { to } => {
            let mut fields = change.fields.clone();
            fields.status = Some(to);
            fields.paid = to == PaymentStatus::Succeeded;
            Decision {
                outcome,
                update: Some(fields),
                to,
                cause: cause(""),
                unchanged: false,
            }
        }
        Outcome::Flagged(reason) => {
            tracing::warn!(
                reference = current.reference,
                reason = reason.as_str(),
                "payment flagged"
            );
            Decision {
                outcome,
                update: Some(Changes {
                    failure_reason: Some(reason.as_str().to_owned()),
                    ..Changes::default()
                }),
                to: status,
                cause: cause(&format!("flagged_{}", reason.as_str())),
                unchanged: false,
            }
        }
        // A checkout link for a pending payment that has none: a resumed
        // initialize found the transaction already open at the provider
        // (which hands out no second link) before the first attempt's
        // answer, with the link, came back. Keep the link.
        Outcome::Ignored(IgnoreReason::Duplicate)
            if current.authorization_url.is_none() && change.fields.authorization_url.is_some() =>
        {
            Decision {
                outcome,
                update: Some(Changes {
                    authorization_url: change.fields.authorization_url.clone(),
                    access_code: change.fields.access_code.clone(),
                    ..Changes::default()
                }),
                to: status,
                cause: cause("checkout_link_kept"),
                unchanged: false,
            }
        }
        Outcome::Ignored(IgnoreReason::Duplicate) if !delivered => Decision {
            outcome,
            update: None,
            to: status,
            cause: String::new(),
            unchanged: true,
        },
        Outcome::Ignored(reason) => Decision {
            outcome,
            update: proof,
            to: status,
            cause: cause(&format!("ignored_{}", reason.as_str())),
            unchanged: false,
        },
        Outcome::Rejected(reason) => Decision {
            outcome,
            update: proof,
            to: status,
            cause: cause(&format!("rejected_{}", reason.as_str())),
            unchanged: false,
        },
    };
    Ok(decision)
}

/// Writes `decision` in `txn`: the row update and the audit row. `None`:
/// the row moved on since it was read (version conflict).
pub(super) async fn write(
    txn: &DatabaseTransaction,
    current: &Payment,
    decision: &Decision,
    event_id: Option<&str>,
) -> Result<Option<Payment>, PaymentError> {
    let updated = match &decision.update {
        Some(changes) => match payments::update_versioned(txn, current, changes).await? {
            Some(updated) => updated,
            None => return Ok(None),
        },
        None => current.clone(),
    };
    payments::record_transition(
        txn,
        current.id,
        &current.status,
        decision.to.as_str(),
        &decision.cause,
        event_id,
    )
    .await?;
    if let Some(kind) = crate::events::payment_event_type(&decision.outcome) {
        crate::events::record_payment(txn, &updated, kind).await?;
    }
    Ok(Some(updated))
}

impl PaymentService {
    /// Applies `change` to `payment`, which the caller has just read:
    /// version-checked, retried on conflict with the row re-read (locked
    /// where the database has row locks). Returns the payment after the
    /// change and what the state machine decided.
    pub(super) async fn apply(
        &self,
        payment: Payment,
        change: Change,
    ) -> Result<(Payment, Outcome), PaymentError> {
        self.apply_answering(payment, change, None).await
    }

    /// [`Self::apply`], and when the change is applied and `answer` is
    /// given, the request's answer stored under its Idempotency-Key in the
    /// same transaction (one commit fewer for initialize; see
    /// [`super::Completion`]).
    pub(super) async fn apply_answering(
        &self,
        payment: Payment,
        change: Change,
        answer: Option<&super::Completion>,
    ) -> Result<(Payment, Outcome), PaymentError> {
        let reference = payment.reference.clone();
        let mut read = Some(payment);
        for _ in 0..CONFLICT_RETRIES {
            let (txn, current, locked) = match read.take() {
                Some(current) => (crate::store::begin_write(&self.db).await?, current, false),
                None => self.begin_with(&reference).await?,
            };
            let decision = decide(&current, &change, locked, false)?;
            if decision.unchanged {
                txn.rollback().await?;
                return Ok((current, decision.outcome));
            }
            match write(&txn, &current, &decision, None).await? {
                Some(updated) => {
                    let answered = match answer {
                        Some(answer) if matches!(decision.outcome, Outcome::Applied { .. }) => {
                            Some((answer, answer.store(&txn, &updated).await?))
                        }
                        _ => None,
                    };
                    super::commit(txn).await?;
                    if let Some((answer, rendered)) = answered {
                        answer.stored(rendered);
                    }
                    return Ok((updated, decision.outcome));
                }
                None => txn.rollback().await?,
            }
        }
        Err(too_contended())
    }

    /// Applies a provider webhook in one transaction: its dedup row (unique
    /// per provider and event identity, carrying the outcome), the state
    /// change and its audit row.
    pub(super) async fn apply_webhook(
        &self,
        record: &WebhookRecord,
        event: PaymentEvent,
    ) -> Result<WebhookApplied, PaymentError> {
        let change = Change::new(event, Source::Webhook);
        for _ in 0..CONFLICT_RETRIES {
            let (txn, current, locked) = self.begin_with(&record.reference).await?;
            if !super::service::held_by(&current, &record.provider) {
                // Another connector holds this reference (the payment failed
                // over, or the event is not about this payment at all).
                tracing::warn!(
                    reference = current.reference,
                    holder = current.provider,
                    from = record.provider,
                    "webhook from a connector that does not hold the payment; ignored"
                );
                let fresh = webhooks::insert(&txn, record, OTHER_CONNECTOR).await?;
                super::commit(txn).await?;
                return Ok(if fresh {
                    WebhookApplied::Ignored(OTHER_CONNECTOR)
                } else {
                    WebhookApplied::Duplicate
                });
            }
            let decision = decide(&current, &change, locked, true)?;
            if !webhooks::insert(&txn, record, &outcome_label(&decision.outcome)).await? {
                txn.rollback().await?;
                return Ok(WebhookApplied::Duplicate);
            }
            match write(&txn, &current, &decision, Some(&record.event_id)).await? {
                Some(updated) => {
                    super::commit(txn).await?;
                    return Ok(WebhookApplied::Applied(Box::new(updated), decision.outcome));
                }
                None => txn.rollback().await?,
            }
        }
        Err(too_contended())
    }

    /// Moves a `created` payment to `connector` (failover at initialize),
    /// with an audit row whose `cause` says why. `None`: the payment moved
    /// on meanwhile (another request opened it).
    pub(super) async fn move_to_connector(
        &self,
        payment: Payment,
        connector: ConnectorName,
        cause: &str,
    ) -> Result<Option<Payment>, PaymentError> {
        let txn = crate::store::begin_write(&self.db).await?;
        let Some(moved) = payments::move_to_connector(&txn, &payment, connector.as_str()).await?
        else {
            txn.rollback().await?;
            return Ok(None);
        };
        payments::record_transition(
            &txn,
            payment.id,
            &payment.status,
            &moved.status,
            cause,
            None,
        )
        .await?;
        super::commit(txn).await?;
        Ok(Some(moved))
    }

    /// A transaction and the payment as it stands in it; `true` if its row
    /// is locked until the transaction ends (see the module docs).
    pub(super) async fn begin_with(
        &self,
        reference: &str,
    ) -> Result<(DatabaseTransaction, Payment, bool), PaymentError> {
        if self.db.get_database_backend() == DbBackend::Postgres {
            let txn = crate::store::begin_write(&self.db).await?;
            let payment = payments::lock_by_reference(&txn, reference)
                .await?
                .ok_or(PaymentError::NotFound)?;
            Ok((txn, payment, true))
        } else {
            let payment = self.load(reference).await?;
            Ok((crate::store::begin_write(&self.db).await?, payment, false))
        }
    }

    pub(super) async fn load(&self, reference: &str) -> Result<Payment, PaymentError> {
        payments::find_by_reference(&self.db, reference)
            .await?
            .ok_or(PaymentError::NotFound)
    }
}

pub(super) fn too_contended() -> PaymentError {
    PaymentError::Unavailable("this payment (too many concurrent changes)")
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

pub(super) fn status_of(payment: &Payment) -> Result<PaymentStatus, PaymentError> {
    PaymentStatus::parse(&payment.status).ok_or_else(|| {
        PaymentError::Internal(format!(
            "payment {} has status {:?}",
            payment.id, payment.status
        ))
    })
}

/// A stored row that no longer parses: a bug or a hand edit, never the client's fault.
pub(super) fn corrupt(err: crate::domain::DomainError) -> PaymentError {
    PaymentError::Internal(format!("stored payment is invalid: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(link: Option<&str>) -> Payment {
        let now = chrono::Utc::now();
        Payment {
            id: uuid::Uuid::now_v7(),
            client_id: uuid::Uuid::nil(),
            reference: "r-1".into(),
            client_reference: "r-1".into(),
            provider: "sandbox".into(),
            amount: 100,
            currency: "NGN".into(),
            email: "a@b.co".into(),
            status: "pending".into(),
            failure_reason: None,
            authorization_url: link.map(str::to_owned),
            access_code: link.map(|_| "ac_1".to_owned()),
            metadata: None,
            version: 1,
            created_at: now,
            updated_at: now,
            paid_at: None,
            refunded_amount: 0,
            checked_at: None,
        }
    }

    fn accepted_with_link() -> Change {
        Change {
            fields: Changes {
                authorization_url: Some("https://checkout/ac_2".into()),
                access_code: Some("ac_2".into()),
                ..Changes::default()
            },
            ..Change::new(PaymentEvent::ProviderAccepted, Source::Initialize)
        }
    }

    #[test]
    fn a_late_checkout_link_is_kept_when_the_payment_has_none() {
        let decision = decide(&pending(None), &accepted_with_link(), true, false).unwrap();
        let update = decision.update.expect("the link is written");
        assert_eq!(
            update.authorization_url.as_deref(),
            Some("https://checkout/ac_2")
        );
        assert_eq!(update.status, None, "the status does not move");
        assert_eq!(decision.to, PaymentStatus::Pending);
    }

    #[test]
    fn a_checkout_from_a_connector_the_payment_failed_over_from_is_never_applied() {
        let mut created = pending(None);
        created.status = "created".into();
        created.provider = "flutterwave".into();
        let late = Change {
            connector: Some("paystack"),
            ..accepted_with_link()
        };
        for locked in [true, false] {
            let decision = decide(&created, &late, locked, false).unwrap();
            assert_eq!(decision.outcome, Outcome::Ignored(IgnoreReason::Late));
            assert_eq!(decision.to, PaymentStatus::Created);
            assert!(
                decision
                    .update
                    .as_ref()
                    .is_none_or(|u| u.authorization_url.is_none() && u.status.is_none()),
                "no link, no status"
            );
            assert!(decision.cause.ends_with("ignored_not_held_by_paystack"));
        }
        let current = Change {
            connector: Some("flutterwave"),
            ..accepted_with_link()
        };
        let decision = decide(&created, &current, true, false).unwrap();
        assert_eq!(
            decision.outcome,
            Outcome::Applied {
                to: PaymentStatus::Pending
            }
        );
    }

    #[test]
    fn a_second_checkout_link_never_replaces_the_first() {
        let decision = decide(
            &pending(Some("https://checkout/ac_1")),
            &accepted_with_link(),
            true,
            false,
        )
        .unwrap();
        assert!(decision.update.is_none() && decision.unchanged);
    }
}
