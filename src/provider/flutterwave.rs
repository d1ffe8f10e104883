//! The Flutterwave connector (API v3) over the shared `Transport`:
//! Flutterwave Standard payments (`POST /v3/payments` → a hosted `link`),
//! verification by payorch's reference (`GET
//! /v3/transactions/verify_by_reference?tx_ref=`), refunds by transaction id
//! (`POST /v3/transactions/{id}/refund`, `GET /v3/refunds/{id}`,
//! `GET /v3/refunds`), and webhooks authenticated by the `verif-hash` header.
//!
//! Amounts are decimal *major* units at Flutterwave (`1500.75` NGN), minor
//! units everywhere in payorch (`150075`): [`to_major`] and [`to_minor`]
//! convert exactly, from integer arithmetic and decimal text, never through
//! floating point; answers are read as raw JSON text for that reason.
//!
//! `verif-hash` is a pre-shared secret that Flutterwave sends as it is (it
//! does not sign the body), so a webhook proves only that *someone who knows
//! the hash* sent it: its figures are never applied. `charge.completed`
//! becomes [`Action::Confirm`]: the worker asks [`PaymentProvider::verify`]
//! and applies what the API says.
//!
//! Sources: <https://developer.flutterwave.com/docs/collecting-payments/standard>,
//! <https://flutterwaveinc.mintlify.app/api-reference/transactions/verify-a-transaction-by-transaction-reference>,
//! <https://developer.flutterwave.com/docs/collecting-payments/refunds>,
//! <https://flutterwaveinc.mintlify.app/api-reference/transactions/get-all-refunds>,
//! <https://developer.flutterwave.com/v3.0.0/reference/get-all-refunds>,
//! <https://developer.flutterwave.com/docs/integration-guides/webhooks>.
//!
//! Assumptions where the documentation is silent or loose:
//! 1. Every answer is the envelope `{"status": "success" | "error",
//!    "message", "data"}`; only a 2xx with `status: "success"` and a `data`
//!    is an answer, a 400/422 (or a 2xx with `"error"`) is a refusal in
//!    `message`.
//! 2. `amount` may be sent as a JSON number with the currency's decimals
//!    (`1500.75`); we send the shortest exact form (`1500.7`, `1500`).
//!    Answers may carry it as a number or a numeric string; both are read.
//! 3. `redirect_url` is sent only when the payment has a `callback_url`
//!    (Flutterwave may refuse a payment without one: a final 400).
//!    `metadata` goes as `meta` unchanged.
//! 4. The checkout's `access_code` is the last path segment of `link`
//!    (Flutterwave has no such field), or the `tx_ref` if `link` has none.
//! 5. Initialize and refund are not repeated once the request may have left:
//!    Flutterwave documents no idempotency for either.
//! 6. Charge status words: `successful` → succeeded, `failed` → failed;
//!    `cancelled` (the customer closed the page) is treated like Paystack's
//!    `abandoned` — not final on a poll, so reconciliation later abandons
//!    the payment; anything else (`pending`, …) is undecided. A verify whose
//!    `tx_ref` is not the one asked about is refused as a broken answer.
//!    Before any charge is attempted Flutterwave knows no transaction for a
//!    `tx_ref` and answers 400 "No transaction was found for this id": that
//!    is `Rejected`, which reconciliation reads as "nobody paid".
//! 7. A refund names the transaction by Flutterwave's `id`, learned with a
//!    verify first; both calls share one provider timeout. payorch's refund
//!    id travels in `comments` (the only free-text field), so the refund's
//!    `reason` is not sent. A refund is refused (`Rejected`) if the
//!    transaction's currency is not the refund's. Refund status words:
//!    `completed` (and `completed-…`, `successful`) → processed, `failed` →
//!    failed, anything else pending. The refund's id is its `id` (a number),
//!    used for `GET /v3/refunds/{id}`.
//! 8. Without a provider refund id, `find_refund` pages through
//!    `GET /v3/refunds?page=N` (newest first is assumed) for the
//!    transaction's id and payorch's refund id (`comment` or `comments`;
//!    `transaction_id` or `tx_id`), at most [`REFUND_PAGES`] pages within
//!    one provider timeout; when that search ends before the last page it
//!    fails (`Unavailable`) rather than answer "none", since "none" would
//!    fail a refund that may exist.
//! 9. Webhooks: `{"event": "charge.completed", "data": {"id", "tx_ref",
//!    "flw_ref", "amount", "currency", "status", …}}` with the hash in
//!    `verif-hash`. `event.type` is tolerated and used as the event's name
//!    only when `event` is missing. Every other event (refunds, transfers) is
//!    recorded and changes nothing: its body cannot be trusted either.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{
    ChargeReport, ChargeStatus, Checkout, InitializeRequest, PaymentProvider, ProviderError,
    ProviderRefund, RefundRequest,
    transport::{Retry, Transport},
};
use crate::{
    config::Secret,
    domain::{Amount, Currency, Reference, RefundReport},
    webhook::event::{self, Action, ProviderEvent},
};

/// The header Flutterwave sends its webhooks' secret hash in.
pub const HASH_HEADER: &str = "verif-hash";

/// How many pages of refunds a search without the provider's id reads.
pub const REFUND_PAGES: u32 = 10;

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

// Amounts: exact decimal text both ways.

/// `amount` in `currency`'s major units as an exact JSON number:
/// 150075 NGN → `1500.75`, 150000 NGN → `1500`, 1500 XOF → `1500`.
pub fn to_major(amount: Amount, currency: Currency) -> Box<RawValue> {
    raw_number(major_text(amount.get(), currency.minor_unit_exponent()))
}

/// Decimal text of major units (`"1500.75"`, no exponent, no sign) as
/// minor units of `currency`, exactly; more decimals than the currency has
/// (unless they are zeros), a sign, an exponent or anything else is refused.
pub fn to_minor(text: &str, currency: Currency) -> Result<i64, String> {
    minor_of(text, currency.minor_unit_exponent())
}

/// Minor units as major-unit decimal text at `exponent`, shortest exact
/// form: `(150075, 2)` → `1500.75`, `(150070, 2)` → `1500.7`, `(-5, 2)` →
/// `-0.05`.
pub(crate) fn major_text(minor: i64, exponent: u32) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    let unit = 10u64.pow(exponent);
    let (whole, fraction) = (magnitude / unit, magnitude % unit);
    if fraction == 0 {
        return format!("{sign}{whole}");
    }
    let digits = format!("{fraction:0width$}", width = exponent as usize);
    format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
}

/// Decimal text as minor units at `exponent` (see [`to_minor`]).
pub(crate) fn minor_of(text: &str, exponent: u32) -> Result<i64, String> {
    let bad = || format!("{text:?} is not an amount in major units");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !all_digits(whole)
        || !all_digits(fraction)
        || (text.contains('.') && fraction.is_empty())
    {
        return Err(bad());
    }
    let places = exponent as usize;
    let (kept, dropped) = fraction.split_at(fraction.len().min(places));
    if dropped.bytes().any(|b| b != b'0') {
        return Err(format!(
            "{text:?} has more decimals than the currency's {exponent}"
        ));
    }
    let too_large = || format!("{text:?} is too large");
    let mut minor: i64 = 0;
    for digit in whole.bytes().chain(kept.bytes()) {
        minor = minor
            .checked_mul(10)
            .and_then(|m| m.checked_add(i64::from(digit - b'0')))
            .ok_or_else(too_large)?;
    }
    for _ in kept.len()..places {
        minor = minor.checked_mul(10).ok_or_else(too_large)?;
    }
    Ok(minor)
}

/// An amount as an answer carries it (a number, or a numeric string) in
/// minor units of `currency`.
pub(crate) fn amount_minor(raw: &RawValue, currency: &str) -> Result<i64, String> {
    let currency =
        Currency::parse(currency).map_err(|_| format!("unknown currency {currency:?}"))?;
    let text = raw.get().trim();
    if text.starts_with('"') {
        let inner: String =
            serde_json::from_str(text).map_err(|e| format!("amount {text}: {e}"))?;
        to_minor(&inner, currency)
    } else {
        to_minor(text, currency)
    }
}

fn raw_number(text: String) -> Box<RawValue> {
    RawValue::from_string(text).expect("decimal digits are a JSON number")
}

/// A Flutterwave id: a number, or digits in a string.
fn id_number(id: &serde_json::Value) -> Option<i64> {
    match id {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn id_text(id: &serde_json::Value) -> String {
    match id {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// The API's shapes.

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    meta: Option<serde_json::Value>,
}

/// A Flutterwave answer's `data`, with its `meta` (paging): a 2xx with
/// `status: "success"` is the answer; anything else is the provider
/// refusing the request, in its own words. `data` is read only then, so an
/// error's `data` of any shape does not hide its message.
fn envelope<T: DeserializeOwned>(
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

fn envelope_data<T: DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, ProviderError> {
    envelope(status, body).map(|(data, _)| data)
}

#[derive(Serialize)]
struct PaymentBody<'a> {
    tx_ref: &'a str,
    amount: Box<RawValue>,
    currency: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_url: Option<&'a str>,
    customer: Customer<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
struct Customer<'a> {
    email: &'a str,
}

#[derive(Deserialize)]
struct PaymentData {
    link: String,
}

/// A transaction (`verify_by_reference`).
#[derive(Deserialize)]
struct TransactionData {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    tx_ref: Option<String>,
    status: String,
    amount: Box<RawValue>,
    currency: String,
    /// A sentence in v3 (`"Approved by Financial Institution"`).
    #[serde(default)]
    processor_response: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct RefundBody {
    amount: Box<RawValue>,
    comments: String,
}

/// A refund: `POST /v3/transactions/{id}/refund` and `GET /v3/refunds/{id}`
/// name the transaction `tx_id` and the note `comments`; the list names
/// them `transaction_id` and `comment`.
#[derive(Deserialize)]
struct RefundData {
    id: serde_json::Value,
    status: String,
    #[serde(default)]
    comments: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    tx_id: Option<serde_json::Value>,
    #[serde(default)]
    transaction_id: Option<serde_json::Value>,
}

impl RefundData {
    fn note(&self) -> Option<&str> {
        self.comments.as_deref().or(self.comment.as_deref())
    }

    fn transaction(&self) -> Option<i64> {
        self.tx_id
            .as_ref()
            .or(self.transaction_id.as_ref())
            .and_then(id_number)
    }

    fn into_refund(self) -> ProviderRefund {
        ProviderRefund {
            provider_refund_id: id_text(&self.id),
            report: refund_report(&self.status),
        }
    }
}

/// Flutterwave's charge status words.
fn charge_status(word: &str) -> ChargeStatus {
    match word {
        "successful" => ChargeStatus::Succeeded,
        "failed" => ChargeStatus::Failed,
        // `cancelled`: the customer left the page, like Paystack's
        // `abandoned`; only reconciliation abandons a payment.
        _ => ChargeStatus::Pending,
    }
}

/// Flutterwave's refund status words.
fn refund_report(word: &str) -> RefundReport {
    match word {
        "successful" => RefundReport::Processed,
        w if w.starts_with("completed") => RefundReport::Processed,
        "failed" => RefundReport::Failed,
        _ => RefundReport::Pending,
    }
}

/// The checkout's code: the link's last path segment, else the reference.
fn access_code_of(link: &str, reference: &Reference) -> String {
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
        let status = charge_status(&data.status);
        let amount = match amount_minor(&data.amount, &data.currency) {
            Ok(amount) => amount,
            // Only a success's figures are checked; a failed or pending
            // transaction's amount is never used.
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
            let url = self.transport.endpoint(&["v3", "refunds", id]);
            let data: RefundData = self
                .transport
                .call(
                    "find_refund",
                    Retry::Freely,
                    |http| http.get(url.clone()),
                    envelope_data::<RefundData>,
                )
                .await?;
            return Ok(Some(data.into_refund()));
        }
        // The lookup and every page share one budget.
        let deadline = self.transport.deadline();
        let (transaction, _) = self.transaction_id(deadline, reference).await?;
        let ours = refund_id.to_string();
        for page in 1..=REFUND_PAGES {
            let mut url = self.transport.endpoint(&["v3", "refunds"]);
            url.query_pairs_mut().append_pair("page", &page.to_string());
            let (refunds, meta): (Vec<RefundData>, _) = self
                .transport
                .call_until(
                    deadline,
                    "find_refund",
                    Retry::Freely,
                    |http| http.get(url.clone()),
                    envelope::<Vec<RefundData>>,
                )
                .await?;
            let last = refunds.is_empty() || is_last_page(meta.as_ref(), page);
            let is_ours = |r: &RefundData| {
                r.note() == Some(ours.as_str()) && r.transaction() == Some(transaction)
            };
            if let Some(found) = refunds.into_iter().find(is_ours) {
                return Ok(Some(found.into_refund()));
            }
            if last {
                return Ok(None);
            }
        }
        Err(ProviderError::Unavailable(format!(
            "refund {refund_id} not among the newest {REFUND_PAGES} pages of refunds"
        )))
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

/// Whether `meta.page_info` says `page` is the last one (no paging
/// information: a single page).
fn is_last_page(meta: Option<&serde_json::Value>, page: u32) -> bool {
    meta.and_then(|m| m.pointer("/page_info/total_pages"))
        .and_then(serde_json::Value::as_u64)
        .is_none_or(|total| u64::from(page) >= total)
}

// Webhooks.

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
    if dedup_key.len() > event::MAX_KEY {
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
/// confirmed with the API (the hash does not sign the body); anything else
/// is only recorded.
fn action_of(event: &ProviderEvent) -> Result<Action, String> {
    match event.event_type.as_str() {
        "charge.completed" => match &event.reference {
            Some(reference) => Ok(Action::Confirm {
                reference: reference.clone(),
            }),
            None => Err("the event names no payment reference (data.tx_ref)".into()),
        },
        _ => Ok(Action::Record),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn major(minor: i64, currency: Currency) -> String {
        to_major(Amount::new(minor).unwrap(), currency)
            .get()
            .to_owned()
    }

    #[test]
    fn minor_units_become_exact_major_units() {
        assert_eq!(major(150075, Currency::NGN), "1500.75");
        assert_eq!(major(150070, Currency::NGN), "1500.7");
        assert_eq!(major(150000, Currency::NGN), "1500");
        assert_eq!(major(5, Currency::USD), "0.05");
        assert_eq!(major(1500, Currency::XOF), "1500");
        assert_eq!(major(Amount::MAX, Currency::NGN), "100000000000");
        assert_eq!(major_text(-5, 2), "-0.05");
        assert_eq!(major_text(i64::MIN, 0), i64::MIN.to_string());
    }

    #[test]
    fn major_units_become_exact_minor_units() {
        assert_eq!(to_minor("1500.75", Currency::NGN), Ok(150075));
        assert_eq!(to_minor("1500.7", Currency::NGN), Ok(150070));
        assert_eq!(to_minor("1500", Currency::NGN), Ok(150000));
        assert_eq!(to_minor("1500.750", Currency::NGN), Ok(150075));
        assert_eq!(to_minor("0.05", Currency::USD), Ok(5));
        assert_eq!(to_minor("1500", Currency::XOF), Ok(1500));
        assert_eq!(to_minor("1500.00", Currency::XOF), Ok(1500));
    }

    #[test]
    fn inexact_or_malformed_amounts_are_refused() {
        for (text, currency) in [
            ("1500.755", Currency::NGN),
            ("1500.5", Currency::XOF),
            ("-1", Currency::NGN),
            ("+1", Currency::NGN),
            ("1e3", Currency::NGN),
            ("1E3", Currency::XOF),
            ("", Currency::NGN),
            (".5", Currency::NGN),
            ("5.", Currency::NGN),
            ("1.2.3", Currency::NGN),
            (" 15", Currency::NGN),
            ("0x10", Currency::NGN),
            ("NaN", Currency::NGN),
            ("99999999999999999999", Currency::XOF),
            ("92233720368547758.08", Currency::NGN),
        ] {
            assert!(
                to_minor(text, currency).is_err(),
                "{text:?} {currency} was accepted"
            );
        }
    }

    #[test]
    fn conversions_round_trip() {
        for currency in Currency::ALL {
            for minor in [1, 7, 10, 99, 100, 101, 150075, 999_999, Amount::MAX] {
                let text = major(minor, currency);
                assert_eq!(to_minor(&text, currency), Ok(minor), "{text} {currency}");
            }
        }
    }

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
    fn the_hash_must_match_exactly() {
        assert!(hash_matches("s3cret-hash", Some("s3cret-hash")));
        assert!(!hash_matches("s3cret-hash", Some("s3cret-hasH")), "wrong");
        assert!(!hash_matches("s3cret-hash", None), "missing");
        assert!(!hash_matches("s3cret-hash", Some("s3cret")), "a prefix");
        assert!(!hash_matches("s3cret-hash", Some("s3cret-hash2")), "longer");
        assert!(!hash_matches("s3cret-hash", Some("")), "empty");
        assert!(!hash_matches("", Some("")), "no hash configured");
    }

    const COMPLETED: &[u8] = br#"{"event":"charge.completed","data":{"id":285959875,"tx_ref":"Links-616626414629","flw_ref":"PeterEkene/FLW270177170","device_fingerprint":"a42937f4a73ce8bb8b8df14e63a2df31","amount":1500.75,"currency":"NGN","charged_amount":1500.75,"app_fee":21.01,"merchant_fee":0,"processor_response":"Approved by Financial Institution","auth_model":"PIN","ip":"197.210.64.96","narration":"CARD Transaction ","status":"successful","payment_type":"card","created_at":"2020-07-06T19:17:04.000Z","account_id":17321,"customer":{"id":215604089,"name":"Yemi Desola","phone_number":null,"email":"user@gmail.com","created_at":"2020-07-06T19:17:04.000Z"}},"event.type":"CARD_TRANSACTION"}"#;

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
                reference: "Links-616626414629".into()
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

    #[test]
    fn status_words_map_to_payorch_words() {
        assert_eq!(charge_status("successful"), ChargeStatus::Succeeded);
        assert_eq!(charge_status("failed"), ChargeStatus::Failed);
        assert_eq!(charge_status("cancelled"), ChargeStatus::Pending);
        assert_eq!(charge_status("pending"), ChargeStatus::Pending);
        assert_eq!(refund_report("completed"), RefundReport::Processed);
        assert_eq!(refund_report("completed-mpgs"), RefundReport::Processed);
        assert_eq!(refund_report("failed"), RefundReport::Failed);
        assert_eq!(refund_report("pending"), RefundReport::Pending);
    }

    #[test]
    fn paging_ends_on_the_last_page() {
        let meta = serde_json::json!({
            "page_info": {"total": 43, "current_page": 1, "total_pages": 3}
        });
        assert!(!is_last_page(Some(&meta), 1));
        assert!(is_last_page(Some(&meta), 3));
        assert!(is_last_page(None, 1));
    }
}
