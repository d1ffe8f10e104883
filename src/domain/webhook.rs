//! A provider webhook as payorch reads it, whichever connector sent it:
//! each connector parses its own dialect into a [`ProviderEvent`] (amounts
//! in minor units) and says what it asks of payorch ([`Action`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Amount, Currency, PaymentEvent, RefundReport};

/// What payorch reads from an event: its identity, the payment it is about
/// and the figures the state machine checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderEvent {
    pub event_type: String,
    pub dedup_key: String,
    pub reference: Option<String>,
    pub transaction_id: Option<i64>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    /// For refund events: which refund it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<RefundNotice>,
}

/// Which refund a refund event names: the provider's id for it, and
/// payorch's own id as sent along with it (`merchant_note`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundNotice {
    pub provider_refund_id: Option<String>,
    pub merchant_note: Option<String>,
}

/// Longest event identity stored (the column's width).
pub const MAX_KEY: usize = 255;

/// The body as received, JSON text not taken apart: it travels on the
/// queue as text (the ack path builds no JSON tree) and becomes a value
/// only when the worker stores it with the processed event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(String);

impl RawJson {
    /// A body as received (already read by its connector, so it is JSON).
    pub fn new(text: String) -> RawJson {
        RawJson(text)
    }

    pub fn get(&self) -> &str {
        &self.0
    }

    /// As a JSON value, for storage.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or(serde_json::Value::Null)
    }
}

/// A verified webhook, parsed once on receipt: what the worker needs to
/// apply it travels with it on the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedWebhook {
    pub provider: String,
    pub event: ProviderEvent,
    /// The body as received, kept with the processed event.
    pub payload: RawJson,
    pub received_at: DateTime<Utc>,
    /// The ingest request's id, to follow one event through the logs.
    pub request_id: Option<String>,
}

/// What a received webhook asks of payorch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Apply `event` to the payment `reference`.
    Apply {
        reference: String,
        event: PaymentEvent,
    },
    /// Settle a refund of the payment `reference` as `report` says.
    Refund {
        reference: String,
        notice: RefundNotice,
        report: RefundReport,
    },
    /// Ask the connector about the payment `reference` and apply what it
    /// reports, never the event's own figures: for connectors whose webhook
    /// proof does not sign the body (Flutterwave's `verif-hash`). By the
    /// provider's `transaction_id` the event names, when it names one (that
    /// attempt, which must be `reference`'s); else by the reference.
    Confirm {
        reference: String,
        transaction_id: Option<i64>,
    },
    /// Record it (once) so it can be seen; no payment changes.
    Record,
}

/// A charge event's figures as the state machine takes them; `Err` names
/// what is missing or unusable (`event_type` is for the message).
pub fn charge_succeeded(event: &ProviderEvent) -> Result<PaymentEvent, String> {
    let name = &event.event_type;
    let amount = event
        .amount
        .ok_or_else(|| format!("{name} without an amount"))
        .and_then(|a| Amount::new(a).map_err(|_| format!("{name} with a bad amount")))?;
    let currency = event
        .currency
        .as_deref()
        .ok_or_else(|| format!("{name} without a currency"))
        .and_then(|c| Currency::parse(c).map_err(|_| format!("{name} with an unknown currency")))?;
    Ok(PaymentEvent::ChargeSucceeded { amount, currency })
}
