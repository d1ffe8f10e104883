//! [`FlutterwaveClient`]: payorch's [`PaymentProvider`] calls made to
//! Flutterwave's v3 API over the shared [`Transport`] — initialize
//! (`POST /v3/payments`), verify by payorch's reference (the latest
//! attempt) or by the transaction id a webhook names (that attempt), refund by
//! Flutterwave's transaction id — and the webhook dialect it answers with.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::Url;
use uuid::Uuid;

use super::{
    amounts::{amount_minor, to_major},
    listing, refunds,
    webhook::{HASH_HEADER, action_of, hash_matches, parse_event},
    wire::{
        Customer, PaymentBody, PaymentData, RefundBody, RefundData, TransactionData,
        access_code_of, charge_status, envelope_data, id_number,
    },
};
use crate::{
    domain::Reference,
    domain::webhook::{Action, ProviderEvent},
    provider::{
        ChargeReport, ChargeStatus, Checkout, InitializeRequest, Listing, PaymentProvider,
        ProviderError, ProviderRefund, RefundRequest,
        transport::{Retry, Transport},
    },
    secret::Secret,
};

pub struct FlutterwaveClient {
    transport: Transport,
    /// `FLUTTERWAVE_WEBHOOK_HASH`: what `verif-hash` must be.
    webhook_hash: Secret,
}

impl FlutterwaveClient {
    pub fn new(base: Url, secret_key: Secret, webhook_hash: Secret, timeout: Duration) -> Self {
        FlutterwaveClient {
            transport: Transport::new("flutterwave", base, secret_key, timeout),
            webhook_hash,
        }
    }

    /// The transaction `reference` as Flutterwave reports it, asked before
    /// `deadline`.
    async fn transaction(
        &self,
        deadline: Instant,
        operation: &'static str,
        reference: &Reference,
    ) -> Result<TransactionData, ProviderError> {
        let mut url = self
            .transport
            .endpoint(&["v3", "transactions", "verify_by_reference"]);
        url.query_pairs_mut()
            .append_pair("tx_ref", reference.as_str());
        let data: TransactionData = self
            .transport
            .call_until(
                deadline,
                operation,
                Retry::Freely,
                |http| http.get(url.clone()),
                envelope_data::<TransactionData>,
            )
            .await?;
        if data
            .tx_ref
            .as_deref()
            .is_some_and(|r| r != reference.as_str())
        {
            return Err(ProviderError::Unavailable(
                "the provider answered about another transaction".into(),
            ));
        }
        Ok(data)
    }

    /// The transaction (one attempt) `id` as Flutterwave reports it, whoever's
    /// it is.
    async fn transaction_by_id(&self, id: i64) -> Result<TransactionData, ProviderError> {
        let id = id.to_string();
        let url = self
            .transport
            .endpoint(&["v3", "transactions", id.as_str(), "verify"]);
        self.transport
            .call(
                "verify",
                Retry::Freely,
                |http| http.get(url.clone()),
                envelope_data::<TransactionData>,
            )
            .await
    }

    /// The transaction's Flutterwave id, which refunds are made by.
    async fn transaction_id(
        &self,
        deadline: Instant,
        reference: &Reference,
    ) -> Result<(i64, TransactionData), ProviderError> {
        let data = self
            .transaction(deadline, "refund_lookup", reference)
            .await?;
        let id = data.id.as_ref().and_then(id_number).ok_or_else(|| {
            ProviderError::Unavailable("the provider's transaction has no id".into())
        })?;
        Ok((id, data))
    }
}

#[async_trait]
impl PaymentProvider for FlutterwaveClient {
    fn name(&self) -> &'static str {
        "flutterwave"
    }

    async fn initialize(&self, request: &InitializeRequest) -> Result<Checkout, ProviderError> {
        let url = self.transport.endpoint(&["v3", "payments"]);
        let body = PaymentBody {
            tx_ref: request.reference.as_str(),
            amount: to_major(request.amount, request.currency),
            currency: request.currency.as_str(),
            redirect_url: request.callback_url.as_deref(),
            customer: Customer {
                email: request.email.as_str(),
            },
            meta: request.metadata.as_ref(),
        };
        let data: PaymentData = self
            .transport
            .call(
                "initialize",
                Retry::UntilSent,
                |http| http.post(url.clone()).json(&body),
                envelope_data::<PaymentData>,
            )
            .await?;
        Ok(Checkout {
            access_code: access_code_of(&data.link, &request.reference),
            authorization_url: data.link,
        })
    }

    async fn verify(&self, reference: &Reference) -> Result<ChargeReport, ProviderError> {
        let data = self
            .transaction(self.transport.deadline(), "verify", reference)
            .await?;
        report_of(data)
    }

    async fn verify_transaction(
        &self,
        reference: &Reference,
        transaction_id: i64,
    ) -> Result<Option<ChargeReport>, ProviderError> {
        let data = self.transaction_by_id(transaction_id).await?;
        if data.tx_ref.as_deref() != Some(reference.as_str()) {
            return Ok(None);
        }
        report_of(data).map(Some)
    }

    async fn refund(&self, request: &RefundRequest) -> Result<ProviderRefund, ProviderError> {
        // The lookup and the refund share one budget.
        let deadline = self.transport.deadline();
        let (id, transaction) = self.transaction_id(deadline, &request.reference).await?;
        if transaction.currency != request.currency.as_str() {
            return Err(ProviderError::Rejected(format!(
                "the transaction is in {}, the refund in {}",
                transaction.currency, request.currency
            )));
        }
        let id = id.to_string();
        let url = self
            .transport
            .endpoint(&["v3", "transactions", id.as_str(), "refund"]);
        let body = RefundBody {
            amount: to_major(request.amount, request.currency),
            comments: request.refund_id.to_string(),
        };
        let data: RefundData = self
            .transport
            .call_until(
                deadline,
                "refund",
                Retry::UntilSent,
                |http| http.post(url.clone()).json(&body),
                envelope_data::<RefundData>,
            )
            .await?;
        Ok(data.into_refund())
    }

    async fn find_refund(
        &self,
        reference: &Reference,
        refund_id: Uuid,
        provider_refund_id: Option<&str>,
    ) -> Result<Option<ProviderRefund>, ProviderError> {
        if let Some(id) = provider_refund_id {
            return refunds::by_id(&self.transport, id, refund_id).await;
        }
        let (transaction, _) = self
            .transaction_id(self.transport.deadline(), reference)
            .await?;
        refunds::search(&self.transport, transaction, refund_id).await
    }

    async fn list_transactions(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Listing, ProviderError> {
        listing::transactions(&self.transport, from, until).await
    }

    fn webhook_header(&self) -> &'static str {
        HASH_HEADER
    }

    fn webhook_authentic(&self, proof: Option<&str>, _body: &[u8]) -> bool {
        hash_matches(self.webhook_hash.expose(), proof)
    }

    fn parse_webhook(&self, body: &[u8]) -> Result<ProviderEvent, String> {
        parse_event(body)
    }

    fn webhook_action(&self, event: &ProviderEvent) -> Result<Action, String> {
        action_of(event)
    }
}

/// A transaction's answer in payorch's words. Only a success's figures are
/// checked; a failed or pending transaction's amount is never used.
fn report_of(data: TransactionData) -> Result<ChargeReport, ProviderError> {
    let status = charge_status(&data.status);
    let amount = match amount_minor(&data.amount, &data.currency) {
        Ok(amount) => amount,
        Err(e) if status == ChargeStatus::Succeeded => {
            return Err(ProviderError::Unavailable(format!(
                "provider reported a bad amount: {e}"
            )));
        }
        Err(_) => 0,
    };
    Ok(ChargeReport {
        provider_transaction_id: data.id.as_ref().and_then(id_number),
        status,
        status_word: data.status,
        amount,
        currency: data.currency,
        gateway_response: data.processor_response.and_then(|r| match r {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s),
            other => Some(other.to_string()),
        }),
    })
}
