//! Flutterwave's webhook dialect. `verif-hash` is a pre-shared secret sent
//! as it is (it does not sign the body), so a webhook proves only that
//! someone who knows the hash sent it: its figures are never applied, and a
//! `charge.completed` asks payorch to confirm the payment with the API, by
//! the transaction id it names (each attempt on a checkout has its own).

use serde::Deserialize;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

use super::{
    amounts::amount_minor,
    wire::{id_number, id_text},
};
use crate::domain::webhook::{self, Action, ProviderEvent};

/// The header Flutterwave sends its webhooks' secret hash in.
pub const HASH_HEADER: &str = "verif-hash";

/// Whether `given` is the configured hash: compared in constant time over
/// the full length; a missing header, another length or an unset hash
/// never match.
pub fn hash_matches(expected: &str, given: Option<&str>) -> bool {
    given.is_some_and(|given| {
        !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
    })
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(default)]
    event: Option<String>,
    #[serde(default, rename = "event.type")]
    event_type: Option<String>,
    #[serde(default)]
    data: RawEventData,
}

#[derive(Deserialize, Default)]
struct RawEventData {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    tx_ref: Option<String>,
    #[serde(default)]
    amount: Option<Box<RawValue>>,
    #[serde(default)]
    currency: Option<String>,
}

/// Reads a Flutterwave event. Its identity for deduplication is
/// `{event}:{data.id}` (the transaction id), or `{event}:{data.tx_ref}`
/// without an id. Its amount is in minor units when it converts exactly.
pub fn parse_event(body: &[u8]) -> Result<ProviderEvent, String> {
    let raw: RawEvent =
        serde_json::from_slice(body).map_err(|e| format!("not a provider event: {e}"))?;
    let name = raw
        .event
        .filter(|e| !e.is_empty())
        .or(raw.event_type)
        .unwrap_or_default();
    if name.is_empty() || name.len() > 64 {
        return Err("`event` must be 1 to 64 characters".into());
    }
    let id = raw.data.id.as_ref().and_then(|id| match id {
        serde_json::Value::Null => None,
        other => Some(id_text(other)),
    });
    let dedup_key = match (&id, &raw.data.tx_ref) {
        (Some(id), _) => format!("{name}:{id}"),
        (None, Some(tx_ref)) => format!("{name}:{tx_ref}"),
        (None, None) => return Err("the event names neither data.id nor data.tx_ref".into()),
    };
    if dedup_key.len() > webhook::MAX_KEY {
        return Err("the event identity is too long".into());
    }
    let amount = match (&raw.data.amount, &raw.data.currency) {
        (Some(amount), Some(currency)) => amount_minor(amount, currency).ok(),
        _ => None,
    };
    Ok(ProviderEvent {
        event_type: name,
        dedup_key,
        reference: raw.data.tx_ref,
        transaction_id: raw.data.id.as_ref().and_then(id_number),
        amount,
        currency: raw.data.currency,
        refund: None,
    })
}

/// What a Flutterwave event asks of payorch: a completed charge is
/// confirmed with the API by the attempt it names (the hash does not sign
/// the body); anything else is only recorded.
pub(super) fn action_of(event: &ProviderEvent) -> Result<Action, String> {
    match event.event_type.as_str() {
        "charge.completed" => match &event.reference {
            Some(reference) => Ok(Action::Confirm {
                reference: reference.clone(),
                transaction_id: event.transaction_id,
            }),
            None => Err("the event names no payment reference (data.tx_ref)".into()),
        },
        _ => Ok(Action::Record),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPLETED: &[u8] = br#"{"event":"charge.completed","data":{"id":285959875,"tx_ref":"Links-616626414629","flw_ref":"PeterEkene/FLW270177170","device_fingerprint":"a42937f4a73ce8bb8b8df14e63a2df31","amount":1500.75,"currency":"NGN","charged_amount":1500.75,"app_fee":21.01,"merchant_fee":0,"processor_response":"Approved by Financial Institution","auth_model":"PIN","ip":"197.210.64.96","narration":"CARD Transaction ","status":"successful","payment_type":"card","created_at":"2020-07-06T19:17:04.000Z","account_id":17321,"customer":{"id":215604089,"name":"Yemi Desola","phone_number":null,"email":"user@gmail.com","created_at":"2020-07-06T19:17:04.000Z"}},"event.type":"CARD_TRANSACTION"}"#;

    #[test]
    fn the_hash_must_match_exactly() {
        assert!(hash_matches("s3cret-hash", Some("s3cret-hash")));
        assert!(!hash_matches("s3cret-hash", Some("s3cret-hasH")), "wrong");
        assert!(!hash_matches("s3cret-hash", None), "missing");
        assert!(!hash_matches("s3cret-hash", Some("s3cret")), "a prefix");
        assert!(!hash_matches("s3cret-hash", Some("s3cret-hash2")), "longer");
        assert!(!hash_matches("s3cret-hash", Some("")), "empty");
        assert!(!hash_matches("", Some("")), "no hash configured");
    }

    #[test]
    fn a_completed_charge_is_read() {
        let event = parse_event(COMPLETED).unwrap();
        assert_eq!(
            event,
            ProviderEvent {
                event_type: "charge.completed".into(),
                dedup_key: "charge.completed:285959875".into(),
                reference: Some("Links-616626414629".into()),
                transaction_id: Some(285959875),
                amount: Some(150075),
                currency: Some("NGN".into()),
                refund: None,
            }
        );
    }

    #[test]
    fn a_completed_charge_is_confirmed_with_the_api_never_applied() {
        let event = parse_event(COMPLETED).unwrap();
        assert_eq!(
            action_of(&event),
            Ok(Action::Confirm {
                reference: "Links-616626414629".into(),
                transaction_id: Some(285959875),
            })
        );
        let no_reference = parse_event(br#"{"event":"charge.completed","data":{"id":1}}"#).unwrap();
        assert!(action_of(&no_reference).is_err());
        let transfer =
            parse_event(br#"{"event":"transfer.completed","data":{"id":2,"amount":10}}"#).unwrap();
        assert_eq!(action_of(&transfer), Ok(Action::Record));
    }

    #[test]
    fn events_are_named_by_type_and_transaction() {
        let by_reference =
            parse_event(br#"{"event":"charge.completed","data":{"tx_ref":"r-1"}}"#).unwrap();
        assert_eq!(by_reference.dedup_key, "charge.completed:r-1");
        let old_style =
            parse_event(br#"{"event.type":"CARD_TRANSACTION","data":{"id":"9","tx_ref":"r"}}"#)
                .unwrap();
        assert_eq!(old_style.dedup_key, "CARD_TRANSACTION:9");
        assert_eq!(old_style.transaction_id, Some(9));
        let inexact = parse_event(
            br#"{"event":"charge.completed","data":{"id":1,"tx_ref":"r","amount":1.234,"currency":"NGN"}}"#,
        )
        .unwrap();
        assert_eq!(inexact.amount, None);
    }

    #[test]
    fn unusable_bodies_say_why() {
        for body in [
            &b"not json"[..],
            br#"{"data":{"id":1}}"#,
            br#"{"event":"charge.completed","data":{}}"#,
            br#"{"event":""}"#,
        ] {
            assert!(
                parse_event(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
