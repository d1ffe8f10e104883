//! Request bodies and their parsing into the core's types ("parse, don't
//! validate"): every field is checked once, here, and every wrong field is
//! reported together so a client fixes them in one round.

use poem_openapi::Object;
use serde::Serialize;

use super::error::ApiError;
use crate::{
    domain::{Amount, Currency, DomainError, Email, FieldError, IdempotencyKey, Reference},
    payments::{Idempotent, NewPaymentRequest, NewRefundRequest, idempotency},
    provider::routing::ConnectorName,
};

/// The `Idempotency-Key` header (a UUID, else 400) with the fingerprint of
/// the request it names: `operation` and the body, canonicalized.
pub fn idempotent(
    header: Option<String>,
    operation: &str,
    body: &impl Serialize,
) -> Result<Option<Idempotent>, ApiError> {
    let Some(raw) = header else {
        return Ok(None);
    };
    let key =
        IdempotencyKey::parse(raw.trim()).map_err(|err| ApiError::BadRequest(err.to_string()))?;
    let body = serde_json::to_value(body).expect("a request body serializes");
    Ok(Some(Idempotent {
        key,
        fingerprint: idempotency::fingerprint(operation, &body),
    }))
}

/// Largest accepted `metadata`, serialized.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// Longest accepted `callback_url`.
pub const MAX_CALLBACK_URL: usize = 2048;

/// A request to take a payment.
#[derive(Debug, Clone, Object, Serialize)]
pub struct InitializeBody {
    /// Amount in the currency's minor units (kobo, cents): an integer > 0.
    pub amount: i64,
    /// ISO 4217 code: NGN, GHS, ZAR, KES, USD, EUR, GBP or XOF.
    pub currency: String,
    /// The customer's email address.
    pub email: String,
    /// Your unique reference (letters, digits, `.`, `=`, `-`; at most 100);
    /// generated when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Where the provider sends the customer after checkout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Your own JSON object, at most 8 KiB, returned as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// Open it with this connector (`paystack`, `flutterwave`) and no
    /// other, instead of the routing rules' choice; it must be enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

/// Parses every field into its domain type, collecting all the errors.
pub fn validate(body: &InitializeBody) -> Result<NewPaymentRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut keep = |result: Result<(), DomainError>| {
        if let Err(err) = result {
            errors.push(FieldError::from(err));
        }
    };
    let amount = Amount::new(body.amount);
    let currency = Currency::parse(&body.currency);
    let email = Email::parse(&body.email);
    let reference = body
        .reference
        .as_deref()
        .map(Reference::parse)
        .unwrap_or_else(|| Ok(Reference::generate()));
    keep(amount.as_ref().map(drop).map_err(Clone::clone));
    keep(currency.as_ref().map(drop).map_err(Clone::clone));
    keep(email.as_ref().map(drop).map_err(Clone::clone));
    keep(reference.as_ref().map(drop).map_err(Clone::clone));
    if let Some(url) = &body.callback_url
        && !is_callback_url(url)
    {
        errors.push(FieldError::new(
            "callback_url",
            "must be an http(s) URL of at most 2048 characters",
        ));
    }
    let provider = match body.provider.as_deref().map(str::parse::<ConnectorName>) {
        None => None,
        Some(Ok(connector)) => Some(connector),
        Some(Err(_)) => {
            errors.push(FieldError::new(
                "provider",
                "must be one of paystack, flutterwave",
            ));
            None
        }
    };
    if let Some(metadata) = &body.metadata {
        if !metadata.is_object() {
            errors.push(FieldError::new("metadata", "must be a JSON object"));
        } else if metadata.to_string().len() > MAX_METADATA_BYTES {
            errors.push(FieldError::new(
                "metadata",
                "must be at most 8 KiB when serialized",
            ));
        }
    }
    match (amount, currency, email, reference) {
        (Ok(amount), Ok(currency), Ok(email), Ok(reference)) if errors.is_empty() => {
            Ok(NewPaymentRequest {
                reference,
                amount,
                currency,
                email,
                callback_url: body.callback_url.clone(),
                metadata: body.metadata.clone(),
                provider,
            })
        }
        _ => Err(errors),
    }
}

/// Longest accepted refund `reason`.
pub const MAX_REFUND_REASON: usize = 255;

/// A request to give money back.
#[derive(Debug, Clone, Object, Serialize)]
pub struct RefundBody {
    /// Minor units, an integer > 0; everything that is left when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    /// Why, in your words (at most 255 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Checks a refund request's own fields; what is left to refund is the
/// core's to judge.
pub fn validate_refund(body: &RefundBody) -> Result<NewRefundRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    if body.amount.is_some_and(|amount| amount <= 0) {
        errors.push(FieldError::new(
            "amount",
            "must be a whole number of minor units above 0",
        ));
    }
    if body
        .reason
        .as_ref()
        .is_some_and(|reason| reason.chars().count() > MAX_REFUND_REASON)
    {
        errors.push(FieldError::new("reason", "must be at most 255 characters"));
    }
    if errors.is_empty() {
        Ok(NewRefundRequest {
            amount: body.amount,
            reason: body.reason.clone(),
        })
    } else {
        Err(errors)
    }
}

fn is_callback_url(url: &str) -> bool {
    url.len() <= MAX_CALLBACK_URL
        && reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A body every field of which is valid.
    fn valid() -> InitializeBody {
        InitializeBody {
            amount: 150_075,
            currency: "NGN".into(),
            email: "ada@example.com".into(),
            reference: Some("order-2026-0001".into()),
            callback_url: Some("https://shop.example.com/thanks".into()),
            metadata: Some(json!({"cart": 42})),
            provider: Some("flutterwave".into()),
        }
    }

    /// The fields `validate` refuses `body` for, in the order it names them.
    fn refused_fields(body: &InitializeBody) -> Vec<String> {
        validate(body)
            .expect_err("the body must be refused")
            .into_iter()
            .map(|error| error.field)
            .collect()
    }

    /// `{"blob": "xx…"}` serialized to exactly `bytes` bytes.
    fn metadata_of_size(bytes: usize) -> serde_json::Value {
        let overhead = json!({"blob": ""}).to_string().len();
        let metadata = json!({"blob": "x".repeat(bytes - overhead)});
        assert_eq!(metadata.to_string().len(), bytes);
        metadata
    }

    /// An https URL of exactly `len` characters.
    fn callback_url_of_len(len: usize) -> String {
        let base = "https://shop.example.com/";
        format!("{base}{}", "a".repeat(len - base.len()))
    }

    #[test]
    fn a_valid_body_parses_into_domain_values() {
        let request = validate(&valid()).unwrap();
        assert_eq!(request.amount.get(), 150_075);
        assert_eq!(request.currency, Currency::NGN);
        assert_eq!(request.email.as_str(), "ada@example.com");
        assert_eq!(request.reference.as_str(), "order-2026-0001");
        assert_eq!(
            request.callback_url.as_deref(),
            Some("https://shop.example.com/thanks")
        );
        assert_eq!(request.metadata, Some(json!({"cart": 42})));
    }

    #[test]
    fn optional_fields_may_be_absent_and_a_reference_is_generated() {
        let body = InitializeBody {
            reference: None,
            callback_url: None,
            metadata: None,
            ..valid()
        };
        let first = validate(&body).unwrap();
        let second = validate(&body).unwrap();
        assert!(
            Reference::parse(first.reference.as_str()).is_ok(),
            "a generated reference is itself valid: {}",
            first.reference
        );
        assert_ne!(first.reference, second.reference, "each one is fresh");
        assert_eq!(first.callback_url, None);
        assert_eq!(first.metadata, None);
    }

    #[test]
    fn a_zero_negative_or_too_large_amount_is_refused() {
        for amount in [0, -5, i64::MIN, Amount::MAX + 1] {
            let body = InitializeBody { amount, ..valid() };
            assert_eq!(refused_fields(&body), ["amount"], "amount {amount}");
        }
    }

    #[test]
    fn an_unknown_or_malformed_currency_is_refused() {
        for currency in ["XYZ", "ngn", ""] {
            let body = InitializeBody {
                currency: currency.into(),
                ..valid()
            };
            assert_eq!(refused_fields(&body), ["currency"], "currency {currency:?}");
        }
    }

    #[test]
    fn a_bad_email_is_refused() {
        for email in ["nope", "", "a@b@c.co", "ada@example"] {
            let body = InitializeBody {
                email: email.into(),
                ..valid()
            };
            assert_eq!(refused_fields(&body), ["email"], "email {email:?}");
        }
    }

    #[test]
    fn a_bad_reference_is_refused() {
        let too_long = "x".repeat(Reference::MAX_LEN + 1);
        for reference in ["has space", "", "..", too_long.as_str()] {
            let body = InitializeBody {
                reference: Some(reference.into()),
                ..valid()
            };
            assert_eq!(
                refused_fields(&body),
                ["reference"],
                "reference {reference:?}"
            );
        }
    }

    #[test]
    fn a_callback_url_must_be_http_or_https() {
        for url in [
            "ftp://shop.example.com/thanks",
            "not a url",
            "javascript:alert(1)",
        ] {
            let body = InitializeBody {
                callback_url: Some(url.into()),
                ..valid()
            };
            assert_eq!(refused_fields(&body), ["callback_url"], "{url}");
        }
        let plain_http = InitializeBody {
            callback_url: Some("http://shop.example.com/thanks".into()),
            ..valid()
        };
        assert!(validate(&plain_http).is_ok());
    }

    #[test]
    fn a_callback_url_may_be_as_long_as_the_limit_and_no_longer() {
        let at_limit = InitializeBody {
            callback_url: Some(callback_url_of_len(MAX_CALLBACK_URL)),
            ..valid()
        };
        assert!(validate(&at_limit).is_ok());
        let too_long = InitializeBody {
            callback_url: Some(callback_url_of_len(MAX_CALLBACK_URL + 1)),
            ..valid()
        };
        assert_eq!(refused_fields(&too_long), ["callback_url"]);
    }

    #[test]
    fn metadata_must_be_a_json_object() {
        for metadata in [json!([1]), json!("text"), json!(7)] {
            let body = InitializeBody {
                metadata: Some(metadata.clone()),
                ..valid()
            };
            assert_eq!(refused_fields(&body), ["metadata"], "{metadata}");
        }
    }

    #[test]
    fn metadata_may_be_as_large_as_the_limit_and_no_larger() {
        let at_limit = InitializeBody {
            metadata: Some(metadata_of_size(MAX_METADATA_BYTES)),
            ..valid()
        };
        assert!(validate(&at_limit).is_ok());
        let too_large = InitializeBody {
            metadata: Some(metadata_of_size(MAX_METADATA_BYTES + 1)),
            ..valid()
        };
        assert_eq!(refused_fields(&too_large), ["metadata"]);
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let body = InitializeBody {
            amount: 0,
            currency: "ngn".into(),
            email: "x".into(),
            reference: Some("has space".into()),
            callback_url: Some("ftp://x".into()),
            metadata: Some(json!([1])),
            provider: Some("stripe".into()),
        };
        assert_eq!(
            refused_fields(&body),
            [
                "amount",
                "currency",
                "email",
                "reference",
                "callback_url",
                "provider",
                "metadata"
            ]
        );
    }

    #[test]
    fn each_field_is_reported_once() {
        let body = InitializeBody {
            amount: -1,
            currency: "XYZ".into(),
            email: "ada@example.com".into(),
            reference: None,
            callback_url: None,
            metadata: Some(metadata_of_size(MAX_METADATA_BYTES + 1)),
            provider: None,
        };
        assert_eq!(refused_fields(&body), ["amount", "currency", "metadata"]);
    }
}
