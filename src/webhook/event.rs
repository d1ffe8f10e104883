//! A provider event in Paystack's shape:
//! `{"event": "charge.success", "data": {"id", "reference", "amount",
//! "currency", "status", "paid_at", "gateway_response"}}`.
//!
//! Its identity for deduplication is the provider's event id where it has
//! one; Paystack-style events carry none, so it is `{event}:{data.id}` (the
//! provider's transaction id), or `{event}:{data.reference}` without an id.

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

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    id: Option<serde_json::Value>,
    event: String,
    #[serde(default)]
    data: RawData,
}

#[derive(Deserialize, Default)]
struct RawData {
    id: Option<i64>,
    reference: Option<String>,
    /// Refund events name the refunded transaction so.
    transaction_reference: Option<String>,
    merchant_note: Option<String>,
    amount: Option<i64>,
    currency: Option<String>,
}

/// Longest event identity stored (the column's width).
const MAX_KEY: usize = 255;

/// The body as received, JSON text not taken apart: it travels on the
/// queue as text (the ack path builds no JSON tree) and becomes a value
/// only when the worker stores it with the processed event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(String);

impl RawJson {
    pub fn get(&self) -> &str {
        &self.0
    }

    /// As a JSON value, for storage.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or(serde_json::Value::Null)
    }
}

/// Parses a raw body once into the event; the body is kept as it came.
pub fn parse(body: &[u8]) -> Result<(ProviderEvent, RawJson), String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("not a provider event: {e}"))?;
    let event = from_json(text)?;
    Ok((event, RawJson(text.to_owned())))
}

/// Reads the event out of a JSON body.
fn from_json(text: &str) -> Result<ProviderEvent, String> {
    let raw: Raw = serde_json::from_str(text).map_err(|e| format!("not a provider event: {e}"))?;
    if raw.event.is_empty() || raw.event.len() > 64 {
        return Err("`event` must be 1 to 64 characters".into());
    }
    let own_id = raw.id.as_ref().and_then(|id| match id {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let reference = raw
        .data
        .reference
        .as_ref()
        .or(raw.data.transaction_reference.as_ref());
    let dedup_key = match (own_id, raw.data.id, reference) {
        (Some(id), _, _) => id,
        (None, Some(id), _) => format!("{}:{id}", raw.event),
        (None, None, Some(reference)) => format!("{}:{reference}", raw.event),
        (None, None, None) => {
            return Err("the event names neither data.id nor data.reference".into());
        }
    };
    if dedup_key.len() > MAX_KEY {
        return Err("the event identity is too long".into());
    }
    let refund = raw.event.starts_with("refund.").then(|| RefundNotice {
        provider_refund_id: raw.data.id.map(|id| id.to_string()),
        merchant_note: raw.data.merchant_note.clone(),
    });
    Ok(ProviderEvent {
        event_type: raw.event,
        dedup_key,
        reference: raw.data.reference.or(raw.data.transaction_reference),
        transaction_id: raw.data.id,
        amount: raw.data.amount,
        currency: raw.data.currency,
        refund,
    })
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
    /// Record it (once) so it can be seen; no payment changes.
    Record,
}

impl ReceivedWebhook {
    /// What to do with it, or why it cannot be used (then it is parked).
    pub fn action(&self) -> Result<Action, String> {
        if let Some(notice) = &self.event.refund {
            let report = match self.event.event_type.as_str() {
                "refund.processed" => RefundReport::Processed,
                "refund.failed" => RefundReport::Failed,
                _ => return Ok(Action::Record),
            };
            let reference = self
                .event
                .reference
                .clone()
                .ok_or("the refund event names no transaction reference")?;
            return Ok(Action::Refund {
                reference,
                notice: notice.clone(),
                report,
            });
        }
        match self.event.payment_event()? {
            None => Ok(Action::Record),
            Some(event) => match &self.event.reference {
                Some(reference) => Ok(Action::Apply {
                    reference: reference.clone(),
                    event,
                }),
                None => Err("the event names no payment reference".into()),
            },
        }
    }
}

impl ProviderEvent {
    /// The state-machine event, `Ok(None)` for events payorch does not act
    /// on, `Err` for a charge event whose amount or currency is unusable.
    pub fn payment_event(&self) -> Result<Option<PaymentEvent>, String> {
        match self.event_type.as_str() {
            "charge.success" => {
                let amount = self
                    .amount
                    .ok_or("charge.success without data.amount")
                    .and_then(|a| Amount::new(a).map_err(|_| "charge.success with a bad amount"))?;
                let currency = self
                    .currency
                    .as_deref()
                    .ok_or("charge.success without data.currency")
                    .and_then(|c| {
                        Currency::parse(c).map_err(|_| "charge.success with an unknown currency")
                    })?;
                Ok(Some(PaymentEvent::ChargeSucceeded { amount, currency }))
            }
            "charge.failed" => Ok(Some(PaymentEvent::ChargeFailed)),
            "charge.abandoned" => Ok(Some(PaymentEvent::ChargeAbandoned)),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paystack_events_are_named_by_type_and_transaction() {
        let (event, _) = parse(br#"{"event":"charge.success","data":{"id":302961,"reference":"r-1","amount":500,"currency":"NGN"}}"#).unwrap();
        assert_eq!(event.dedup_key, "charge.success:302961");
        assert_eq!(event.reference.as_deref(), Some("r-1"));
        let (by_reference, _) =
            parse(br#"{"event":"charge.failed","data":{"reference":"r-1"}}"#).unwrap();
        assert_eq!(by_reference.dedup_key, "charge.failed:r-1");
        let (own_id, _) =
            parse(br#"{"id":"evt_9","event":"charge.failed","data":{"id":1}}"#).unwrap();
        assert_eq!(own_id.dedup_key, "evt_9");
    }

    #[test]
    fn unusable_bodies_say_why() {
        for body in [
            &b"not json"[..],
            br#"{"data":{}}"#,
            br#"{"event":"charge.success","data":{}}"#,
            br#"{"event":""}"#,
        ] {
            assert!(parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn charge_events_map_to_the_state_machine() {
        let event = |body: &[u8]| parse(body).unwrap().0;
        let success =
            event(br#"{"event":"charge.success","data":{"id":1,"amount":500,"currency":"NGN"}}"#);
        assert_eq!(
            success.payment_event().unwrap(),
            Some(PaymentEvent::ChargeSucceeded {
                amount: Amount::new(500).unwrap(),
                currency: Currency::NGN
            })
        );
        let failed = event(br#"{"event":"charge.failed","data":{"id":1}}"#);
        assert_eq!(
            failed.payment_event().unwrap(),
            Some(PaymentEvent::ChargeFailed)
        );
        let other = event(br#"{"event":"transfer.success","data":{"id":1}}"#);
        assert_eq!(other.payment_event().unwrap(), None);
        let bad =
            event(br#"{"event":"charge.success","data":{"id":1,"amount":-5,"currency":"NGN"}}"#);
        assert!(bad.payment_event().is_err());
    }
}
