//! The work a payment's actor does for each message: talk to the provider,
//! then apply what it said (the apply pipeline, [`super::pipeline`]). Each method runs inside the
//! payment's actor, so one payment's operations never overlap in this
//! process.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::{
    Completion, PaymentError, WebhookApplied,
    decide::{Change, Source, corrupt, held_by, status_of},
};
use crate::{
    domain::{Amount, Currency, Email, PaymentEvent, PaymentStatus, Reference},
    provider::{
        ChargeStatus, Connectors, InitializeRequest, PaymentProvider, ProviderError,
        routing::ConnectorName,
    },
    store::{
        payments::{self, Changes, Payment},
        webhooks::{self, WebhookRecord},
    },
};

/// The payment an initialize opens at the provider.
#[derive(Debug, Clone)]
pub enum Opening {
    /// Created by this request, as its transaction wrote it: opened without
    /// reading it back (the write's version check catches a change since).
    Created(Box<Payment>),
    /// Created by an earlier request with the same Idempotency-Key, which
    /// may already have reached the provider: read afresh.
    Resumed(String),
}

impl Opening {
    pub fn reference(&self) -> &str {
        match self {
            Opening::Created(payment) => &payment.reference,
            Opening::Resumed(reference) => reference,
        }
    }
}

pub struct PaymentService {
    pub db: DatabaseConnection,
    pub connectors: Arc<Connectors>,
    /// What a payment paid after it was final gets besides its review.
    pub late_success: crate::domain::LateSuccess,
}

impl PaymentService {
    /// The connector holding `payment`.
    pub(super) fn connector_of(
        &self,
        payment: &Payment,
    ) -> Result<Arc<dyn PaymentProvider>, PaymentError> {
        self.connectors.get(&payment.provider).ok_or_else(|| {
            ProviderError::Unavailable(format!(
                "the payment's connector `{}` is not enabled",
                payment.provider
            ))
            .into()
        })
    }

    /// The connector a refund of `payment` goes to: its own, or the one a
    /// review's `refund_at_connector` named.
    pub(super) fn refund_connector(
        &self,
        payment: &Payment,
        refund: &crate::store::refunds::Refund,
    ) -> Result<Arc<dyn PaymentProvider>, PaymentError> {
        match refund.connector.as_deref() {
            None => self.connector_of(payment),
            Some(name) => self.connectors.get(name).ok_or_else(|| {
                ProviderError::Unavailable(format!(
                    "the refund's connector `{name}` is not enabled"
                ))
                .into()
            }),
        }
    }

    /// Opens the provider transaction of a `created` payment and moves it to
    /// `pending`. A payment already past `created` is returned unchanged, so
    /// a retried or resumed request never opens a second transaction.
    ///
    /// The connector holding the payment is asked first. If it cannot be
    /// reached, times out, fails (5xx, 429) or its breaker is open, the
    /// payment moves to the next connector of `route` — written, with an
    /// audit row naming the connector and why, before that one is asked —
    /// so a crash mid-way resumes where it was, and a checkout is only ever
    /// shown from the connector that answered. A refusal (400, 422) is
    /// final.
    ///
    /// A provider refusal fails the payment. But a [resumed](Opening::Resumed) payment (its
    /// first request crashed or timed out) may already exist at the
    /// provider, which then refuses the repeated reference: so a refused
    /// resume first asks the provider what it holds under the reference
    /// ([`Self::settle_refused_resume`]).
    pub(super) async fn open_at_provider(
        &self,
        opening: Opening,
        callback_url: Option<String>,
        route: &[ConnectorName],
        completion: Option<Completion>,
    ) -> Result<Payment, PaymentError> {
        let (mut payment, resumed) = match opening {
            Opening::Created(payment) => (*payment, false),
            Opening::Resumed(reference) => (self.load(&reference).await?, true),
        };
        let reference = payment.reference.clone();
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
        let held = ConnectorName::of_stored(&payment.provider);
        let next: Vec<ConnectorName> = route.iter().copied().filter(|c| Some(*c) != held).collect();
        let mut failovers = next.into_iter();
        loop {
            let (name, answer) = match self.connector_of(&payment) {
                Ok(connector) => (connector.name(), connector.initialize(&request).await),
                // Dropped from PAYORCH_PROVIDERS since: as good as down.
                Err(PaymentError::Provider(err)) => (connector_label(&payment), Err(err)),
                Err(err) => return Err(err),
            };
            let err = match answer {
                Ok(checkout) => {
                    let change = Change {
                        fields: Changes {
                            authorization_url: Some(checkout.authorization_url),
                            access_code: Some(checkout.access_code),
                            ..Changes::default()
                        },
                        connector: Some(name),
                        ..Change::new(PaymentEvent::ProviderAccepted, Source::Initialize)
                    };
                    let (payment, _) = self
                        .apply_answering(payment, change, completion.as_ref())
                        .await?;
                    return still_held(payment, name);
                }
                Err(ProviderError::Rejected(message)) if resumed => {
                    let connector = self.connector_of(&payment)?;
                    return self
                        .settle_refused_resume(connector, payment, message)
                        .await;
                }
                Err(ProviderError::Rejected(message)) => {
                    return self.fail_rejected(payment, name, message).await;
                }
                Err(err) => err,
            };
            let Some(fallback) = failovers.find(|c| self.connectors.is_enabled(*c)) else {
                tracing::warn!(%reference, connector = name, error = %err, "provider initialize failed");
                return Err(err.into());
            };
            tracing::warn!(
                %reference,
                connector = name,
                to = fallback.as_str(),
                error = %err,
                "provider initialize failed; failing over"
            );
            metrics::counter!(
                "payorch_connector_failovers_total",
                "from" => name,
                "to" => fallback.as_str(),
            )
            .increment(1);
            let cause = format!("initialize:failover:{name}:{}", err.kind());
            payment = match self.move_to_connector(payment, fallback, &cause).await? {
                Some(moved) => moved,
                None => {
                    let current = self.load(&reference).await?;
                    if status_of(&current)? != PaymentStatus::Created {
                        // Another request opened it meanwhile: that one stands.
                        return Ok(current);
                    }
                    // Changed but still unopened: go on from where it is.
                    current
                }
            };
        }
    }

    /// A resumed initialize the provider refused. If the provider holds a
    /// transaction under the reference for this amount and currency, an
    /// earlier attempt opened it: apply what it reports (usually pending,
    /// without a checkout link, which Paystack does not hand out twice).
    /// If it holds none, or one for other terms, the refusal stands.
    async fn settle_refused_resume(
        &self,
        connector: Arc<dyn PaymentProvider>,
        payment: Payment,
        message: String,
    ) -> Result<Payment, PaymentError> {
        let reference = Reference::parse(&payment.reference).map_err(corrupt)?;
        match connector.verify(&reference).await {
            Ok(report)
                if report.amount == payment.amount && report.currency == payment.currency =>
            {
                tracing::warn!(
                    reference = %reference,
                    status = report.status_word,
                    "provider already holds this resumed payment; taking its state"
                );
                let event = match report.event()? {
                    PaymentEvent::ChargePending => PaymentEvent::ProviderAccepted,
                    event => event,
                };
                let change = Change {
                    connector: Some(connector.name()),
                    ..Change::new(event, Source::Initialize)
                };
                let (payment, _) = self.apply(payment, change).await?;
                still_held(payment, connector.name())
            }
            Ok(_) | Err(ProviderError::Rejected(_)) => {
                self.fail_rejected(payment, connector.name(), message).await
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The provider refused to open the transaction: the payment fails,
    /// unless another attempt moved it on meanwhile.
    async fn fail_rejected(
        &self,
        payment: Payment,
        connector: &'static str,
        message: String,
    ) -> Result<Payment, PaymentError> {
        let change = Change {
            fields: Changes {
                failure_reason: Some("provider_rejected".into()),
                ..Changes::default()
            },
            connector: Some(connector),
            ..Change::new(PaymentEvent::ProviderRejected, Source::Initialize)
        };
        let (payment, _) = self.apply(payment, change).await?;
        match status_of(&payment)? {
            PaymentStatus::Failed | PaymentStatus::Abandoned => {
                Err(ProviderError::Rejected(message).into())
            }
            // Another process opened the transaction, or it was even paid.
            _ => Ok(payment),
        }
    }

    /// Asks the provider about the payment `reference` (the provider's)
    /// and applies what it says, if it is `client_id`'s under its own
    /// `client_reference`; otherwise `NotFound`. A payment in a final
    /// state, or not yet at the provider, is returned without asking.
    pub(super) async fn verify(
        &self,
        client_id: Uuid,
        client_reference: &str,
        reference: &str,
    ) -> Result<Payment, PaymentError> {
        let payment = self.load(reference).await?;
        if payment.client_id != client_id || payment.client_reference != client_reference {
            return Err(PaymentError::NotFound);
        }
        let status = status_of(&payment)?;
        // Final states do not move (bar a refund, which verify does not
        // report); a `created` payment has no provider transaction yet.
        if status.is_terminal() || status == PaymentStatus::Created {
            return Ok(payment);
        }
        let report = self
            .connector_of(&payment)?
            .verify(&Reference::parse(reference).map_err(corrupt)?)
            .await?;
        let event = report.event()?;
        Ok(self
            .apply(payment, Change::new(event, Source::Verify))
            .await?
            .0)
    }

    /// Moves a `created` payment to `connector` (failover at initialize),
    /// with an audit row whose `cause` says why. `None`: the payment moved
    /// on meanwhile (another request opened it).
    async fn move_to_connector(
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

    /// A webhook whose proof does not sign its figures (Flutterwave's
    /// `verif-hash`): the payment's connector is asked — about the
    /// transaction `transaction_id` the webhook names, which must be the
    /// payment's, or by reference when it names none — and what it reports
    /// is applied as the webhook's effect. A declined attempt on a checkout
    /// the customer can still pay is applied as
    /// [`PaymentEvent::AttemptDeclined`] (`ignored:attempt_declined`, with an
    /// audit row): the payment stays pending, and the sweep abandons it if
    /// nobody pays. Recorded, changing nothing: a transaction the connector
    /// reports under another reference (`ignored:other_transaction`); one it
    /// does not report settled (`ignored:unconfirmed`, on the last try; the
    /// reconciliation sweep asks again later).
    pub(super) async fn confirm_webhook(
        &self,
        record: &WebhookRecord,
        transaction_id: Option<i64>,
        last_try: bool,
    ) -> Result<WebhookApplied, PaymentError> {
        let payment = match self.load(&record.reference).await {
            Err(PaymentError::NotFound) => {
                return self.confirm_unknown(record, transaction_id).await;
            }
            other => other?,
        };
        // A connector that does not hold the payment is asked too: money it
        // reports taken opens a review (decided under the lock, where
        // holding is re-checked).
        let held = held_by(&payment, &record.provider);
        let connector = match self.connectors.get(&record.provider) {
            Some(connector) if !held => connector,
            _ if !held => {
                return self
                    .apply_webhook(record, PaymentEvent::ChargePending)
                    .await;
            }
            _ => self.connector_of(&payment)?,
        };
        let reference = Reference::parse(&payment.reference).map_err(corrupt)?;
        let answer = match transaction_id {
            Some(id) => connector.verify_transaction(&reference, id).await,
            None => connector.verify(&reference).await.map(Some),
        };
        let event = match answer {
            // Applied as what it is, so the audit trail shows it: the
            // state machine keeps the payment pending.
            Ok(Some(report)) if report.status == ChargeStatus::Declined => {
                let declined = if held {
                    PaymentEvent::AttemptDeclined
                } else {
                    PaymentEvent::ChargePending
                };
                return self.apply_webhook(record, declined).await;
            }
            Ok(Some(report)) => report.event()?,
            Ok(None) => {
                tracing::warn!(
                    reference = payment.reference,
                    event_id = record.event_id,
                    transaction_id,
                    "webhook names another reference's transaction; not applied"
                );
                return self.record_ignored(record, OTHER_TRANSACTION).await;
            }
            Err(ProviderError::Rejected(_)) => PaymentEvent::ChargePending,
            Err(err) => return Err(err.into()),
        };
        if !held {
            return self.apply_webhook(record, event).await;
        }
        if event == PaymentEvent::ChargePending && !last_try {
            return Ok(WebhookApplied::Unconfirmed);
        }
        if event == PaymentEvent::ChargePending {
            tracing::warn!(
                reference = payment.reference,
                event_id = record.event_id,
                "webhook not confirmed by the connector; not applied"
            );
            return self.record_ignored(record, UNCONFIRMED).await;
        }
        self.apply_webhook(record, event).await
    }

    /// A webhook whose figures are not signed, for a reference payorch
    /// never made: its connector is asked about the transaction it names,
    /// and it is recorded — with a review if the connector reports it paid.
    async fn confirm_unknown(
        &self,
        record: &WebhookRecord,
        transaction_id: Option<i64>,
    ) -> Result<WebhookApplied, PaymentError> {
        let (Some(connector), Some(id), Ok(reference)) = (
            self.connectors.get(&record.provider),
            transaction_id,
            Reference::parse(&record.reference),
        ) else {
            return self.record_unknown(record, None).await;
        };
        let event = match connector.verify_transaction(&reference, id).await {
            Ok(Some(report)) if report.status == ChargeStatus::Succeeded => Some(report.event()?),
            Ok(_) | Err(ProviderError::Rejected(_)) => None,
            Err(err) => return Err(err.into()),
        };
        self.record_unknown(record, event).await
    }

    /// A webhook for a reference payorch never made: recorded once
    /// (`ignored:unknown_reference`), never retried into the dead letters;
    /// if the provider's word is that money moved (`event` is a success),
    /// an `unknown_transaction` review opens with it — once per connector
    /// and reference.
    pub(super) async fn record_unknown(
        &self,
        record: &WebhookRecord,
        event: Option<PaymentEvent>,
    ) -> Result<WebhookApplied, PaymentError> {
        let txn = crate::store::begin_write(&self.db).await?;
        if !webhooks::insert(&txn, record, UNKNOWN_REFERENCE).await? {
            txn.rollback().await?;
            return Ok(WebhookApplied::Duplicate);
        }
        if let Some(PaymentEvent::ChargeSucceeded { amount, currency }) = event {
            self.open_unknown_transaction(
                &txn,
                &record.provider,
                &record.reference,
                serde_json::json!({
                    "amount": amount.get(),
                    "currency": currency.as_str(),
                    "source": "webhook",
                    "event_id": record.event_id,
                }),
            )
            .await?;
        }
        super::commit(txn).await?;
        tracing::warn!(
            reference = record.reference,
            provider = record.provider,
            event_id = record.event_id,
            "webhook for a reference payorch never made; recorded"
        );
        Ok(WebhookApplied::Ignored(UNKNOWN_REFERENCE))
    }

    /// Opens an `unknown_transaction` review of `connector`'s transaction
    /// `reference` in `txn`, unless one was ever opened for it. Whether it
    /// opened one.
    pub(super) async fn open_unknown_transaction(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        connector: &str,
        reference: &str,
        detail: serde_json::Value,
    ) -> Result<bool, PaymentError> {
        use crate::{
            domain::ReviewKind,
            store::reviews::{self, NewReview},
        };
        let subject = reviews::unknown_subject(connector, reference);
        if reviews::ever_opened(
            txn,
            ReviewKind::UnknownTransaction,
            subject,
            Some(connector),
        )
        .await?
        {
            return Ok(false);
        }
        let new = NewReview::of_unknown_transaction(connector, reference, detail);
        Ok(reviews::open(txn, new).await?.is_some())
    }

    /// Records `record` once with the outcome `why`, changing no payment.
    async fn record_ignored(
        &self,
        record: &WebhookRecord,
        why: &'static str,
    ) -> Result<WebhookApplied, PaymentError> {
        Ok(if webhooks::insert(&self.db, record, why).await? {
            WebhookApplied::Ignored(why)
        } else {
            WebhookApplied::Duplicate
        })
    }
}

/// The payment after `connector`'s checkout was applied. If the payment
/// had meanwhile failed over to another connector (another process's
/// attempt), the checkout was not applied and this request has nothing to
/// show: a transient error, so the client's retry reads the other attempt's.
fn still_held(payment: Payment, connector: &'static str) -> Result<Payment, PaymentError> {
    if payment.status == PaymentStatus::Created.as_str() && !held_by(&payment, connector) {
        return Err(ProviderError::Unavailable(format!(
            "the payment moved to connector `{}` meanwhile",
            payment.provider
        ))
        .into());
    }
    Ok(payment)
}

/// A payment's connector name for the log, known or not.
fn connector_label(payment: &Payment) -> &'static str {
    ConnectorName::of_stored(&payment.provider).map_or("unknown", ConnectorName::as_str)
}

/// The outcome recorded for a webhook about a reference payorch never made.
const UNKNOWN_REFERENCE: &str = "ignored:unknown_reference";

/// The outcome recorded for a webhook its connector did not confirm.
const UNCONFIRMED: &str = "ignored:unconfirmed";

/// The outcome recorded for a webhook naming a transaction its connector
/// reports under another reference.
const OTHER_TRANSACTION: &str = "ignored:other_transaction";
