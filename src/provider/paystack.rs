//! The Paystack connector: its transaction API (`/transaction/initialize`,
//! `/transaction/verify/:reference`, `/refund`) over the shared
//! `Transport`, and its webhooks (`x-paystack-signature`, an HMAC of the
//! body). Verify only reads, so it is retried on any failure. Initialize is
//! retried only when the request never left (connection refused): it
//! carries payorch's own reference, so a repeat cannot open a second
//! transaction, but Paystack answers a repeated reference with 400
//! "Duplicate Transaction Reference", which would hide the first attempt's
//! checkout link. Its paged reads — a transaction's refunds (`GET
//! /refund?transaction=`) and the transactions of a window (`GET
//! /transaction?from=&to=`) — are in [`pages`].

mod pages;

pub use pages::PER_PAGE;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::json;

use uuid::Uuid;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha512;

use super::{
    ChargeReport, ChargeStatus, Checkout, InitializeRequest, Listing, PaymentProvider,
    ProviderError, ProviderRefund, RefundRequest,
    transport::{Retry, Transport},
};
use crate::{
    domain::webhook::{self, Action, ProviderEvent, RefundNotice},
    domain::{PaymentEvent, Reference, RefundReport},
    secret::Secret,
};

/// The header Paystack signs its webhooks in.
pub const SIGNATURE_HEADER: &str = "x-paystack-signature";

pub struct PaystackClient {
    name: &'static str,
    transport: Transport,
    /// The API key, which is also the webhooks' HMAC secret.
    secret_key: Secret,
}

#[derive(Deserialize)]
struct Envelope<T> {
    status: bool,
    #[serde(default)]
    message: String,
    data: Option<T>,
    /// Paging, on a list: `{total, skipped, perPage, page, pageCount}`.
    #[serde(default)]
    meta: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct InitializeData {
    authorization_url: String,
    access_code: String,
}

/// A refund in Paystack's shape (`POST /refund`, `GET /refund/{id}`,
/// `GET /refund?transaction=`).
#[derive(Deserialize)]
struct RefundData {
    id: serde_json::Value,
    status: String,
    #[serde(default)]
    merchant_note: Option<String>,
    /// The refunded transaction: its id in a list, an object with its
    /// `reference` in a create answer.
    #[serde(default)]
    transaction: Option<serde_json::Value>,
    #[serde(default)]
    transaction_reference: Option<String>,
}

impl RefundData {
    /// The reference of the transaction the refund names, where it names
    /// one (a bare transaction id says nothing of the reference).
    fn transaction_reference(&self) -> Option<&str> {
        self.transaction_reference
            .as_deref()
            .or_else(|| self.transaction.as_ref()?.get("reference")?.as_str())
    }

    /// Whether the refund is payorch's `ours` (its note) of the transaction
    /// `reference`: found in a list, it must carry payorch's id.
    fn is(&self, reference: &str, ours: &str) -> bool {
        self.merchant_note.as_deref() == Some(ours) && self.may_be(reference, ours)
    }

    /// Whether nothing the refund says excludes it from being payorch's
    /// `ours` of `reference`: fetched by id, a note or transaction it does
    /// not carry is no objection, another one is.
    fn may_be(&self, reference: &str, ours: &str) -> bool {
        self.merchant_note
            .as_deref()
            .is_none_or(|note| note == ours)
            && self
                .transaction_reference()
                .is_none_or(|theirs| theirs == reference)
    }

    fn into_refund(self) -> ProviderRefund {
        ProviderRefund {
            provider_refund_id: match self.id {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            },
            report: refund_report(&self.status),
        }
    }
}

#[derive(Deserialize)]
struct VerifyData {
    id: Option<i64>,
    status: String,
    amount: i64,
    currency: String,
    gateway_response: Option<String>,
}

impl PaystackClient {
    pub fn new(name: &'static str, base: Url, secret_key: Secret, timeout: Duration) -> Self {
        PaystackClient {
            name,
            transport: Transport::new(name, base, secret_key.clone(), timeout),
            secret_key,
        }
    }
}

/// The `data` of a Paystack answer (`{status: bool, message, data}`): a
/// 2xx with `status: true` is the answer; anything else is the provider
/// refusing the request, in its own words.
fn envelope_data<T: DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, ProviderError> {
    envelope(status, body).map(|(data, _)| data)
}

/// [`envelope_data`] with the answer's `meta` (a list's paging).
fn envelope<T: DeserializeOwned>(
    status: StatusCode,
    body: &[u8],
) -> Result<(T, Option<serde_json::Value>), ProviderError> {
    let envelope: Envelope<T> = serde_json::from_slice(body).map_err(|e| {
        ProviderError::Unavailable(format!("unreadable provider answer ({status}): {e}"))
    })?;
    match (status.is_success() && envelope.status, envelope.data) {
        (true, Some(data)) => Ok((data, envelope.meta)),
        (true, None) => Err(ProviderError::Unavailable(
            "provider answer without data".into(),
        )),
        (false, _) => Err(ProviderError::Rejected(if envelope.message.is_empty() {
            format!("provider answered {status}")
        } else {
            envelope.message
        })),
    }
}

#[async_trait]
impl PaymentProvider for PaystackClient {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn initialize(&self, request: &InitializeRequest) -> Result<Checkout, ProviderError> {
        let url = self.transport.endpoint(&["transaction", "initialize"]);
        let mut body = json!({
            "reference": request.reference.as_str(),
            "amount": request.amount.get(),
            "currency": request.currency.as_str(),
            "email": request.email.as_str(),
        });
        if let Some(callback) = &request.callback_url {
            body["callback_url"] = json!(callback);
        }
        if let Some(metadata) = &request.metadata {
            body["metadata"] = metadata.clone();
        }
        let data: InitializeData = self
            .transport
            .call(
                "initialize",
                Retry::UntilSent,
                |http| http.post(url.clone()).json(&body),
                envelope_data::<InitializeData>,
            )
            .await?;
        Ok(Checkout {
            authorization_url: data.authorization_url,
            access_code: data.access_code,
        })
    }

    async fn verify(&self, reference: &Reference) -> Result<ChargeReport, ProviderError> {
        let url = self
            .transport
            .endpoint(&["transaction", "verify", reference.as_str()]);
        let data: VerifyData = self
            .transport
            .call(
                "verify",
                Retry::Freely,
                |http| http.get(url.clone()),
                envelope_data::<VerifyData>,
            )
            .await?;
        Ok(ChargeReport {
            provider_transaction_id: data.id,
            status: charge_status(&data.status),
            status_word: data.status,
            amount: data.amount,
            currency: data.currency,
            gateway_response: data.gateway_response,
        })
    }

    async fn refund(&self, request: &RefundRequest) -> Result<ProviderRefund, ProviderError> {
        let url = self.transport.endpoint(&["refund"]);
        let mut body = json!({
            "transaction": request.reference.as_str(),
            "amount": request.amount.get(),
            "currency": request.currency.as_str(),
            "merchant_note": request.refund_id.to_string(),
        });
        if let Some(reason) = &request.reason {
            body["customer_note"] = json!(reason);
        }
        // Like initialize: retried only while nothing was sent.
        let data: RefundData = self
            .transport
            .call(
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
        let ours = refund_id.to_string();
        let Some(id) = provider_refund_id else {
            return pages::find_refund(&self.transport, reference.as_str(), &ours).await;
        };
        let url = self.transport.endpoint(&["refund", id]);
        let data: RefundData = self
            .transport
            .call(
                "find_refund",
                Retry::Freely,
                |http| http.get(url.clone()),
                envelope_data::<RefundData>,
            )
            .await?;
        if !data.may_be(reference.as_str(), &ours) {
            tracing::warn!(%refund_id, provider_refund_id = id, %reference, "the provider's refund by that id is another one");
            return Ok(None);
        }
        Ok(Some(data.into_refund()))
    }

    async fn list_transactions(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Listing, ProviderError> {
        pages::list_transactions(&self.transport, from, until).await
    }

    fn webhook_header(&self) -> &'static str {
        SIGNATURE_HEADER
    }

    fn webhook_authentic(&self, proof: Option<&str>, body: &[u8]) -> bool {
        proof
            .is_some_and(|given| verify_signature(self.secret_key.expose().as_bytes(), body, given))
    }

    fn parse_webhook(&self, body: &[u8]) -> Result<ProviderEvent, String> {
        parse_event(body)
    }

    fn webhook_action(&self, event: &ProviderEvent) -> Result<Action, String> {
        action_of(event)
    }
}

/// Paystack's charge status words.
fn charge_status(word: &str) -> ChargeStatus {
    match word {
        "success" => ChargeStatus::Succeeded,
        "failed" | "reversed" => ChargeStatus::Failed,
        // `abandoned` is a transaction nobody has paid *yet*: the customer
        // can still pay, so on a poll it is not final. (Only an explicit
        // event abandons a payment.) `ongoing`, `pending`, …: undecided.
        _ => ChargeStatus::Pending,
    }
}

/// Paystack's refund status words.
fn refund_report(word: &str) -> RefundReport {
    match word {
        "processed" => RefundReport::Processed,
        "failed" => RefundReport::Failed,
        // pending, processing, needs-attention: not settled yet.
        _ => RefundReport::Pending,
    }
}

// Webhooks: `x-paystack-signature: hex(HMAC-SHA512(secret key, raw body))`,
// and a body `{"event": "charge.success", "data": {"id", "reference",
// "amount" (minor units), "currency", "status", …}}`.

type HmacSha512 = Hmac<Sha512>;

/// The signature Paystack would send for `body`.
pub fn sign_webhook(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha512::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` (hex) is the HMAC of `body` under `secret`: checked
/// in constant time over the full length, so an empty signature, a prefix
/// of the right one, or anything that is not hex is rejected.
pub fn verify_signature(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Ok(given) = hex::decode(signature.trim()) else {
        return false;
    };
    let mut mac = HmacSha512::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    // `verify_slice` compares in constant time and requires the full length.
    mac.verify_slice(&given).is_ok()
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(default)]
    id: Option<serde_json::Value>,
    event: String,
    #[serde(default)]
    data: RawEventData,
}

#[derive(Deserialize, Default)]
struct RawEventData {
    id: Option<i64>,
    reference: Option<String>,
    /// Refund events name the refunded transaction so.
    transaction_reference: Option<String>,
    merchant_note: Option<String>,
    amount: Option<i64>,
    currency: Option<String>,
}

/// Reads a Paystack event. Its identity for deduplication is the event's
/// own id where it has one; Paystack's events carry none, so it is
/// `{event}:{data.id}` (the transaction id), or `{event}:{data.reference}`
/// without an id.
pub fn parse_event(body: &[u8]) -> Result<ProviderEvent, String> {
    let raw: RawEvent =
        serde_json::from_slice(body).map_err(|e| format!("not a provider event: {e}"))?;
    if raw.event.is_empty() || raw.event.len() > 64 {
        return Err("`event` must be 1 to 64 characters".into());
    }
    let own_id = raw.id.as_ref().and_then(|id| match id {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let reference = raw.data.reference.or(raw.data.transaction_reference);
    let dedup_key = match (own_id, raw.data.id, &reference) {
        (Some(id), _, _) => id,
        (None, Some(id), _) => format!("{}:{id}", raw.event),
        (None, None, Some(reference)) => format!("{}:{reference}", raw.event),
        (None, None, None) => {
            return Err("the event names neither data.id nor data.reference".into());
        }
    };
    if dedup_key.len() > webhook::MAX_KEY {
        return Err("the event identity is too long".into());
    }
    let refund = raw.event.starts_with("refund.").then(|| RefundNotice {
        provider_refund_id: raw.data.id.map(|id| id.to_string()),
        merchant_note: raw.data.merchant_note,
    });
    Ok(ProviderEvent {
        event_type: raw.event,
        dedup_key,
        reference,
        transaction_id: raw.data.id,
        amount: raw.data.amount,
        currency: raw.data.currency,
        refund,
    })
}

/// What a Paystack event asks of payorch.
fn action_of(event: &ProviderEvent) -> Result<Action, String> {
    if let Some(notice) = &event.refund {
        let report = match event.event_type.as_str() {
            "refund.processed" => RefundReport::Processed,
            "refund.failed" => RefundReport::Failed,
            _ => return Ok(Action::Record),
        };
        let reference = event
            .reference
            .clone()
            .ok_or("the refund event names no transaction reference")?;
        return Ok(Action::Refund {
            reference,
            notice: notice.clone(),
            report,
        });
    }
    let payment_event = match event.event_type.as_str() {
        "charge.success" => webhook::charge_succeeded(event)?,
        "charge.failed" => PaymentEvent::ChargeFailed,
        "charge.abandoned" => PaymentEvent::ChargeAbandoned,
        _ => return Ok(Action::Record),
    };
    match &event.reference {
        Some(reference) => Ok(Action::Apply {
            reference: reference.clone(),
            event: payment_event,
        }),
        None => Err("the event names no payment reference".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Amount, Currency};

    const SECRET: &[u8] = b"sk_test_secret";
    const BODY: &[u8] = br#"{"event":"charge.success","data":{"id":1}}"#;

    #[test]
    fn the_right_signature_verifies_in_either_case() {
        let signature = sign_webhook(SECRET, BODY);
        assert_eq!(signature.len(), 128);
        assert!(verify_signature(SECRET, BODY, &signature));
        assert!(verify_signature(SECRET, BODY, &signature.to_uppercase()));
    }

    #[test]
    fn any_other_signature_is_rejected() {
        let signature = sign_webhook(SECRET, BODY);
        assert!(!verify_signature(SECRET, BODY, ""));
        assert!(
            !verify_signature(SECRET, BODY, &signature[..64]),
            "a prefix"
        );
        assert!(
            !verify_signature(SECRET, BODY, &signature[..2]),
            "a short prefix"
        );
        assert!(
            !verify_signature(SECRET, BODY, &format!("{signature}00")),
            "too long"
        );
        assert!(!verify_signature(SECRET, BODY, "zz"), "not hex");
        assert!(!verify_signature(b"other secret", BODY, &signature));
        assert!(!verify_signature(SECRET, b"{}", &signature), "another body");
        let mut flipped = signature.into_bytes();
        flipped[10] = if flipped[10] == b'a' { b'b' } else { b'a' };
        assert!(!verify_signature(
            SECRET,
            BODY,
            std::str::from_utf8(&flipped).unwrap()
        ));
    }

    #[test]
    fn events_are_named_by_type_and_transaction() {
        let event = parse_event(br#"{"event":"charge.success","data":{"id":302961,"reference":"r-1","amount":500,"currency":"NGN"}}"#).unwrap();
        assert_eq!(event.dedup_key, "charge.success:302961");
        assert_eq!(event.reference.as_deref(), Some("r-1"));
        let by_reference =
            parse_event(br#"{"event":"charge.failed","data":{"reference":"r-1"}}"#).unwrap();
        assert_eq!(by_reference.dedup_key, "charge.failed:r-1");
        let own_id =
            parse_event(br#"{"id":"evt_9","event":"charge.failed","data":{"id":1}}"#).unwrap();
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
            assert!(
                parse_event(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn charge_events_map_to_the_state_machine() {
        let action = |body: &[u8]| action_of(&parse_event(body).unwrap());
        assert_eq!(
            action(br#"{"event":"charge.success","data":{"id":1,"reference":"r","amount":500,"currency":"NGN"}}"#),
            Ok(Action::Apply {
                reference: "r".into(),
                event: PaymentEvent::ChargeSucceeded {
                    amount: Amount::new(500).unwrap(),
                    currency: Currency::NGN
                }
            })
        );
        assert_eq!(
            action(br#"{"event":"charge.failed","data":{"id":1,"reference":"r"}}"#),
            Ok(Action::Apply {
                reference: "r".into(),
                event: PaymentEvent::ChargeFailed
            })
        );
        assert_eq!(
            action(br#"{"event":"transfer.success","data":{"id":1}}"#),
            Ok(Action::Record)
        );
        assert!(action(br#"{"event":"charge.success","data":{"id":1,"reference":"r","amount":-5,"currency":"NGN"}}"#).is_err());
    }

    #[test]
    fn status_words_map_to_payorch_words() {
        assert_eq!(charge_status("success"), ChargeStatus::Succeeded);
        assert_eq!(charge_status("reversed"), ChargeStatus::Failed);
        assert_eq!(charge_status("abandoned"), ChargeStatus::Pending);
        assert_eq!(refund_report("processed"), RefundReport::Processed);
        assert_eq!(refund_report("needs-attention"), RefundReport::Pending);
    }
}
