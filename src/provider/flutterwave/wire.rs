//! Flutterwave's API as it is on the wire: the `{"status", "message",
//! "data"}` envelope every answer comes in, the request and answer bodies,
//! its ids (numbers or digit strings) and its status words.

use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;

use crate::{
    domain::{Reference, RefundReport},
    provider::{ChargeStatus, ProviderError, ProviderRefund},
};

/// A Flutterwave id: a number, or digits in a string.
pub(super) fn id_number(id: &serde_json::Value) -> Option<i64> {
    match id {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub(super) fn id_text(id: &serde_json::Value) -> String {
    match id {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
pub(super) struct Envelope {
    #[serde(default)]
    pub(super) status: String,
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) data: Option<Box<RawValue>>,
    #[serde(default)]
    pub(super) meta: Option<serde_json::Value>,
}

/// A Flutterwave answer's `data`, with its `meta` (paging): a 2xx with
/// `status: "success"` is the answer; anything else is the provider
/// refusing the request, in its own words. `data` is read only then, so an
/// error's `data` of any shape does not hide its message.
pub(super) fn envelope<T: DeserializeOwned>(
    status: StatusCode,
    body: &[u8],
) -> Result<(T, Option<serde_json::Value>), ProviderError> {
    let unreadable = |e: serde_json::Error| {
        ProviderError::Unavailable(format!("unreadable provider answer ({status}): {e}"))
    };
    let envelope: Envelope = serde_json::from_slice(body).map_err(unreadable)?;
    if !(status.is_success() && envelope.status == "success") {
        return Err(ProviderError::Rejected(if envelope.message.is_empty() {
            format!("provider answered {status}")
        } else {
            envelope.message
        }));
    }
    let data = envelope
        .data
        .ok_or_else(|| ProviderError::Unavailable("provider answer without data".into()))?;
    let data = serde_json::from_str(data.get()).map_err(unreadable)?;
    Ok((data, envelope.meta))
}

pub(super) fn envelope_data<T: DeserializeOwned>(
    status: StatusCode,
    body: &[u8],
) -> Result<T, ProviderError> {
    envelope(status, body).map(|(data, _)| data)
}

#[derive(Serialize)]
pub(super) struct PaymentBody<'a> {
    pub(super) tx_ref: &'a str,
    pub(super) amount: Box<RawValue>,
    pub(super) currency: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) redirect_url: Option<&'a str>,
    pub(super) customer: Customer<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) meta: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
pub(super) struct Customer<'a> {
    pub(super) email: &'a str,
}

#[derive(Deserialize)]
pub(super) struct PaymentData {
    pub(super) link: String,
}

/// A transaction (`verify_by_reference`, `/{id}/verify`).
#[derive(Deserialize)]
pub(super) struct TransactionData {
    #[serde(default)]
    pub(super) id: Option<serde_json::Value>,
    #[serde(default)]
    pub(super) tx_ref: Option<String>,
    pub(super) status: String,
    pub(super) amount: Box<RawValue>,
    pub(super) currency: String,
    /// A sentence in v3 (`"Approved by Financial Institution"`).
    #[serde(default)]
    pub(super) processor_response: Option<serde_json::Value>,
    /// When Flutterwave opened it (RFC 3339): what listings by date are about.
    #[serde(default)]
    pub(super) created_at: Option<String>,
}

#[derive(Serialize)]
pub(super) struct RefundBody {
    pub(super) amount: Box<RawValue>,
    pub(super) comments: String,
}

/// A refund: `POST /v3/transactions/{id}/refund` and `GET /v3/refunds/{id}`
/// name the transaction `tx_id` and the note `comments`; the list names
/// them `transaction_id` and `comment`.
#[derive(Deserialize)]
pub(super) struct RefundData {
    pub(super) id: serde_json::Value,
    pub(super) status: String,
    #[serde(default)]
    pub(super) comments: Option<String>,
    #[serde(default)]
    pub(super) comment: Option<String>,
    #[serde(default)]
    pub(super) tx_id: Option<serde_json::Value>,
    #[serde(default)]
    pub(super) transaction_id: Option<serde_json::Value>,
}

impl RefundData {
    pub(super) fn note(&self) -> Option<&str> {
        self.comments.as_deref().or(self.comment.as_deref())
    }

    pub(super) fn transaction(&self) -> Option<i64> {
        self.tx_id
            .as_ref()
            .or(self.transaction_id.as_ref())
            .and_then(id_number)
    }

    /// Whether the refund is payorch's `ours` (its note) of Flutterwave
    /// transaction `transaction`: a row of a list must carry both.
    pub(super) fn is(&self, transaction: i64, ours: &str) -> bool {
        self.note() == Some(ours) && self.transaction() == Some(transaction)
    }

    pub(super) fn into_refund(self) -> ProviderRefund {
        ProviderRefund {
            provider_refund_id: id_text(&self.id),
            report: refund_report(&self.status),
        }
    }
}

/// Flutterwave's charge status words.
pub(super) fn charge_status(word: &str) -> ChargeStatus {
    match word {
        "successful" => ChargeStatus::Succeeded,
        // One declined attempt: the hosted checkout stays payable under the
        // same `tx_ref`, and Flutterwave's API says nothing of whether it
        // still is, so a decline is never final (the abandon sweep ends a
        // payment nobody pays).
        "failed" => ChargeStatus::Declined,
        // `cancelled`: the customer left the page, like Paystack's
        // `abandoned`; only reconciliation abandons a payment.
        _ => ChargeStatus::Pending,
    }
}

/// Flutterwave's refund status words.
pub(super) fn refund_report(word: &str) -> RefundReport {
    match word {
        "successful" => RefundReport::Processed,
        w if w.starts_with("completed") => RefundReport::Processed,
        "failed" => RefundReport::Failed,
        _ => RefundReport::Pending,
    }
}

/// The checkout's code: the link's last path segment, else the reference.
pub(super) fn access_code_of(link: &str, reference: &Reference) -> String {
    Url::parse(link)
        .ok()
        .and_then(|url| {
            url.path_segments()?
                .rev()
                .find(|s| !s.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| reference.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::{Amount, Currency},
        provider::flutterwave::amounts::{amount_minor, to_major},
    };

    #[test]
    fn answers_carry_amounts_as_numbers_or_strings() {
        let number = RawValue::from_string("1500.75".into()).unwrap();
        let string = RawValue::from_string("\"1500.75\"".into()).unwrap();
        assert_eq!(amount_minor(&number, "NGN"), Ok(150075));
        assert_eq!(amount_minor(&string, "NGN"), Ok(150075));
        assert!(amount_minor(&number, "XOF").is_err());
        assert!(amount_minor(&number, "JPY").is_err());
        let body = br#"{"status":"success","message":"ok","data":{"id":7,"tx_ref":"r","status":"successful","amount":1500.75,"currency":"NGN"}}"#;
        let data: TransactionData = envelope_data(StatusCode::OK, body).unwrap();
        assert_eq!(data.amount.get(), "1500.75");
    }

    #[test]
    fn request_bodies_carry_the_exact_decimal() {
        let body = RefundBody {
            amount: to_major(Amount::new(150075).unwrap(), Currency::NGN),
            comments: "r".into(),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"amount":1500.75,"comments":"r"}"#
        );
    }

    #[test]
    fn envelopes_are_answers_or_refusals() {
        let refused = envelope_data::<PaymentData>(
            StatusCode::BAD_REQUEST,
            br#"{"status":"error","message":"Invalid currency","data":{"code":"X"}}"#,
        );
        assert_eq!(
            refused.err(),
            Some(ProviderError::Rejected("Invalid currency".into()))
        );
        let error_in_a_200 = envelope_data::<PaymentData>(
            StatusCode::OK,
            br#"{"status":"error","message":"nope","data":null}"#,
        );
        assert_eq!(
            error_in_a_200.err(),
            Some(ProviderError::Rejected("nope".into()))
        );
        let link = envelope_data::<PaymentData>(
            StatusCode::OK,
            br#"{"status":"success","message":"Hosted Link","data":{"link":"https://c/pay/abc"}}"#,
        );
        assert_eq!(link.unwrap().link, "https://c/pay/abc");
        assert!(matches!(
            envelope_data::<PaymentData>(StatusCode::OK, b"<html>"),
            Err(ProviderError::Unavailable(_))
        ));
    }

    #[test]
    fn access_codes_come_from_the_link() {
        let reference = Reference::parse("ref-1").unwrap();
        assert_eq!(
            access_code_of(
                "https://checkout.flutterwave.com/v3/hosted/pay/4a1b8bd3",
                &reference
            ),
            "4a1b8bd3"
        );
        assert_eq!(
            access_code_of("http://h/fw/checkout/ac_1/", &reference),
            "ac_1"
        );
        assert_eq!(access_code_of("not a url", &reference), "ref-1");
    }

    #[test]
    fn status_words_map_to_payorch_words() {
        assert_eq!(charge_status("successful"), ChargeStatus::Succeeded);
        assert_eq!(charge_status("failed"), ChargeStatus::Declined);
        assert_eq!(charge_status("cancelled"), ChargeStatus::Pending);
        assert_eq!(charge_status("pending"), ChargeStatus::Pending);
        assert_eq!(refund_report("completed"), RefundReport::Processed);
        assert_eq!(refund_report("completed-mpgs"), RefundReport::Processed);
        assert_eq!(refund_report("failed"), RefundReport::Failed);
        assert_eq!(refund_report("pending"), RefundReport::Pending);
    }
}
