//! Request bodies and their parsing into the core's types ("parse, don't
//! validate"): every field is checked once, here, and every wrong field is
//! reported together so a client fixes them in one round.

use poem_openapi::Object;
use serde::Serialize;

use crate::{
    domain::{Amount, Currency, DomainError, Email, FieldError, Reference},
    payments::NewPaymentRequest,
};

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
            })
        }
        _ => Err(errors),
    }
}

fn is_callback_url(url: &str) -> bool {
    url.len() <= MAX_CALLBACK_URL
        && reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}
