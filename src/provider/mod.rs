//! Payment providers. [`PaymentProvider`] is what the rest of payorch sees;
//! [`paystack::PaystackClient`] speaks Paystack's HTTP API and serves both the
//! real provider and the built-in [`sandbox`], which is Paystack-compatible
//! (same client, another base URL and key).

pub mod paystack;
pub mod sandbox;

use std::sync::Arc;

use async_trait::async_trait;

use uuid::Uuid;

use crate::{
    config::{Config, ProviderKind, Secret},
    domain::{Amount, Currency, Email, PaymentEvent, Reference, RefundReport},
};

/// What payorch asks a provider to start.
#[derive(Debug, Clone)]
pub struct InitializeRequest {
    pub reference: Reference,
    pub amount: Amount,
    pub currency: Currency,
    pub email: Email,
    pub callback_url: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

/// The provider's transaction, ready for the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub authorization_url: String,
    pub access_code: String,
}

/// A charge as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeReport {
    pub provider_transaction_id: Option<i64>,
    /// The provider's own status word (`success`, `failed`, `abandoned`, `ongoing`…).
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub gateway_response: Option<String>,
}

impl ChargeReport {
    /// The state-machine event this report means. An amount or currency
    /// that payorch cannot even represent is reported as a mismatch by
    /// the state machine, never trusted.
    pub fn event(&self) -> Result<PaymentEvent, ProviderError> {
        match self.status.as_str() {
            "success" => {
                let amount = Amount::new(self.amount).map_err(|e| {
                    ProviderError::Unavailable(format!("provider reported a bad amount: {e}"))
                })?;
                let currency = Currency::parse(&self.currency).map_err(|e| {
                    ProviderError::Unavailable(format!("provider reported a bad currency: {e}"))
                })?;
                Ok(PaymentEvent::ChargeSucceeded { amount, currency })
            }
            "failed" | "reversed" => Ok(PaymentEvent::ChargeFailed),
            // Paystack reports a transaction nobody has paid *yet* as
            // `abandoned`; the customer can still pay, so on a poll it is
            // not final. (Only an explicit event abandons a payment.)
            _ => Ok(PaymentEvent::ChargePending),
        }
    }
}

/// A refund payorch asks the provider to make.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    /// payorch's own refund id: sent along (Paystack's `merchant_note`) so
    /// the refund can be found again if its answer is lost.
    pub refund_id: Uuid,
    /// The payment's reference at the provider.
    pub reference: Reference,
    pub amount: Amount,
    pub currency: Currency,
    pub reason: Option<String>,
}

/// A refund as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRefund {
    pub provider_refund_id: String,
    pub report: RefundReport,
}

impl ProviderRefund {
    /// Paystack's refund status words.
    pub fn report_of(status: &str) -> RefundReport {
        match status {
            "processed" => RefundReport::Processed,
            "failed" => RefundReport::Failed,
            // pending, processing, needs-attention: not settled yet.
            _ => RefundReport::Pending,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    /// The provider understood and refused (its 400 or 422): retrying will
    /// not help.
    #[error("rejected by the provider: {0}")]
    Rejected(String),
    /// The provider failed or could not be reached (5xx, connection), or
    /// refused us rather than the request (401, 403, 404: our configuration).
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// No answer within the configured timeout.
    #[error("provider timed out")]
    Timeout,
}

#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// The name used in webhook paths and stored on payments.
    fn name(&self) -> &'static str;

    /// Starts a transaction. Safe to repeat with the same reference: the
    /// provider deduplicates on it.
    async fn initialize(&self, request: &InitializeRequest) -> Result<Checkout, ProviderError>;

    /// Asks for the current state of a transaction.
    async fn verify(&self, reference: &Reference) -> Result<ChargeReport, ProviderError>;

    /// Asks for a refund. Never repeated by the client once the request may
    /// have reached the provider: a lost answer is found with
    /// [`Self::find_refund`], never by asking twice.
    async fn refund(&self, request: &RefundRequest) -> Result<ProviderRefund, ProviderError>;

    /// The provider's refund for payorch's `refund_id` on the transaction
    /// `reference` (by the provider's id when known); `None` if it has none.
    async fn find_refund(
        &self,
        reference: &Reference,
        refund_id: Uuid,
        provider_refund_id: Option<&str>,
    ) -> Result<Option<ProviderRefund>, ProviderError>;
}

/// The provider `cfg` selects, calling it with `secret`. `sandbox_base` is
/// where the sandbox listens when it is mounted on the API's own listener.
pub fn from_config(
    cfg: &Config,
    secret: Secret,
    sandbox_base: Option<reqwest::Url>,
) -> Arc<dyn PaymentProvider> {
    let name = cfg.provider.as_str();
    let base = match (&cfg.paystack_base_url, cfg.provider) {
        (Some(url), _) => url.clone(),
        (None, ProviderKind::Sandbox) => sandbox_base.unwrap_or_else(|| {
            format!("http://{}", cfg.sandbox_addr)
                .parse()
                .expect("a socket address makes a URL")
        }),
        (None, ProviderKind::Paystack) => unreachable!("config requires PAYSTACK_BASE_URL"),
    };
    Arc::new(paystack::PaystackClient::new(
        name,
        base,
        secret,
        cfg.provider_timeout,
    ))
}
