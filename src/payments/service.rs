//! The work a payment's actor does for each message: talk to the provider,
//! then apply what it said ([`super::apply`]). Each method runs inside the
//! payment's actor, so one payment's operations never overlap in this
//! process.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::{
    PaymentError,
    apply::{Change, Source, corrupt, status_of},
};
use crate::{
    domain::{Amount, Currency, Email, PaymentEvent, PaymentStatus, Reference},
    provider::{InitializeRequest, PaymentProvider, ProviderError},
    store::payments::{Changes, Payment},
};

pub struct PaymentService {
    pub db: DatabaseConnection,
    pub provider: Arc<dyn PaymentProvider>,
}

impl PaymentService {
    /// Opens the provider transaction of a `created` payment and moves it to
    /// `pending`. A payment already past `created` is returned unchanged, so
    /// a retried or resumed request never opens a second transaction.
    ///
    /// A provider refusal fails the payment. But a `resumed` payment (its
    /// first request crashed or timed out) may already exist at the
    /// provider, which then refuses the repeated reference: so a refused
    /// resume first asks the provider what it holds under the reference
    /// ([`Self::settle_refused_resume`]).
    pub(super) async fn open_at_provider(
        &self,
        reference: &str,
        callback_url: Option<String>,
        resumed: bool,
    ) -> Result<Payment, PaymentError> {
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
                let change = Change {
                    fields: Changes {
                        authorization_url: Some(checkout.authorization_url),
                        access_code: Some(checkout.access_code),
                        ..Changes::default()
                    },
                    ..Change::new(PaymentEvent::ProviderAccepted, Source::Initialize)
                };
                Ok(self.apply(payment, change).await?.0)
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
    ) -> Result<Payment, PaymentError> {
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
                Ok(self
                    .apply(payment, Change::new(event, Source::Initialize))
                    .await?
                    .0)
            }
            Ok(_) | Err(ProviderError::Rejected(_)) => self.fail_rejected(payment, message).await,
            Err(err) => Err(err.into()),
        }
    }

    /// The provider refused to open the transaction: the payment fails,
    /// unless another attempt moved it on meanwhile.
    async fn fail_rejected(
        &self,
        payment: Payment,
        message: String,
    ) -> Result<Payment, PaymentError> {
        let change = Change {
            fields: Changes {
                failure_reason: Some("provider_rejected".into()),
                ..Changes::default()
            },
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
            .provider
            .verify(&Reference::parse(reference).map_err(corrupt)?)
            .await?;
        let event = report.event()?;
        Ok(self
            .apply(payment, Change::new(event, Source::Verify))
            .await?
            .0)
    }
}
