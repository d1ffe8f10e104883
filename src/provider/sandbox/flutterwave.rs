//! The sandbox's Flutterwave dialect (v3), served under `/flutterwave`:
//! `POST /v3/payments`, `GET /v3/transactions/verify_by_reference?tx_ref=`
//! (the checkout's latest attempt), `GET /v3/transactions/{id}/verify` (one
//! attempt),
//! `POST /v3/transactions/{id}/refund`, `GET /v3/refunds/{id}`; its
//! listings — `GET /v3/refunds?id=&page=` and `GET
//! /v3/transactions?from=&to=&page=` — are in `refund_listing.rs` and
//! `listing.rs`. It keeps transactions as the Paystack dialect does —
//! minor units, Paystack's status words — and translates here: amounts to
//! exact decimal major units ([`connector::major_text`]), `success` →
//! `successful`, `abandoned` → `cancelled`, `ongoing` → `pending`; refunds
//! `processed` → `completed`. Answers use Flutterwave's envelope
//! `{"status": "success" | "error", "message", "data"}`.
//!
//! Each Pay or Decline on a checkout is an attempt with its own id under the
//! same `tx_ref` (see `state.rs`), announced by its own `charge.completed`.
//!
//! Simplifications: a transaction nobody has paid yet verifies as `pending`
//! (the real API knows none until a charge is attempted); a cancelled
//! checkout and refunds send no webhook.

use poem::{
    IntoResponse, Request, Response, Route, handler,
    http::StatusCode,
    web::{Data, Json, Path, Query},
};
use serde::{Deserialize, Serialize};
use serde_json::{json, value::RawValue};

use super::{
    Sandbox,
    state::{Attempt, OpenRefusal, Opening, Operation, SandboxRefund, Transaction},
};
use crate::{domain::Currency, provider::flutterwave as connector};

pub(super) fn api_routes() -> Route {
    Route::new()
        .at("/v3/payments", poem::post(initialize))
        .at("/v3/transactions/verify_by_reference", poem::get(verify))
        .at("/v3/transactions/:id/verify", poem::get(verify_by_id))
        .at("/v3/transactions/:id/refund", poem::post(create_refund))
        .at("/v3/refunds/:id", poem::get(fetch_refund))
}

/// An error in Flutterwave's envelope.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"status": "error", "message": message, "data": null})),
    )
        .into_response()
}

#[derive(Serialize)]
struct Answer<'a, T> {
    status: &'static str,
    message: &'a str,
    data: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<serde_json::Value>,
}

fn answer<T: Serialize + Send>(message: &str, data: T) -> Response {
    Json(Answer {
        status: "success",
        message,
        data,
        meta: None,
    })
    .into_response()
}

/// A transaction's status (Paystack's word) in Flutterwave's words.
pub(super) fn status_word(paystack: &str) -> &'static str {
    match paystack {
        "success" => "successful",
        "failed" => "failed",
        "abandoned" => "cancelled",
        _ => "pending",
    }
}

/// A refund's status (Paystack's word) in Flutterwave's words.
pub(super) fn refund_word(paystack: &str) -> &'static str {
    match paystack {
        "processed" => "completed",
        "failed" => "failed",
        _ => "pending",
    }
}

/// Minor units as an exact decimal JSON number of `currency`'s major units;
/// a currency payorch does not know (a test's forced report) counts in
/// hundredths.
pub(super) fn major(minor: i64, currency: &str) -> Box<RawValue> {
    let exponent = Currency::parse(currency)
        .map(|c| c.minor_unit_exponent())
        .unwrap_or(2);
    RawValue::from_string(connector::major_text(minor, exponent))
        .expect("decimal text is a JSON number")
}

#[derive(Serialize)]
struct Customer<'a> {
    email: &'a str,
}

/// A transaction in Flutterwave's shape, as verify and webhooks report it.
#[derive(Serialize)]
pub(super) struct TransactionView<'a> {
    id: i64,
    tx_ref: &'a str,
    flw_ref: String,
    amount: Box<RawValue>,
    charged_amount: Box<RawValue>,
    currency: &'a str,
    status: &'static str,
    processor_response: &'a str,
    payment_type: &'static str,
    customer: Customer<'a>,
}

impl<'a> TransactionView<'a> {
    /// The transaction as verify by reference reports it: its latest
    /// attempt, or the checkout itself before any.
    pub(super) fn of(tx: &'a Transaction) -> TransactionView<'a> {
        match tx.latest_attempt() {
            Some(attempt) => TransactionView::of_attempt(tx, attempt),
            None => TransactionView::with(tx, tx.id, status_word(&tx.status), &tx.gateway_response),
        }
    }

    /// One attempt on the checkout `tx`.
    pub(super) fn of_attempt(tx: &'a Transaction, attempt: &'a Attempt) -> TransactionView<'a> {
        TransactionView::with(
            tx,
            attempt.id,
            status_word(&attempt.status),
            &attempt.gateway_response,
        )
    }

    fn with(
        tx: &'a Transaction,
        id: i64,
        status: &'static str,
        processor_response: &'a str,
    ) -> TransactionView<'a> {
        let currency = tx.reported_currency.as_deref().unwrap_or(&tx.currency);
        let amount = tx.reported_amount.unwrap_or(tx.amount);
        TransactionView {
            id,
            tx_ref: &tx.reference,
            flw_ref: format!("FLW-SANDBOX-{id}"),
            amount: major(amount, currency),
            charged_amount: major(amount, currency),
            currency,
            status,
            processor_response,
            payment_type: "card",
            customer: Customer { email: &tx.email },
        }
    }
}

/// `tx`'s status as verify by reference reports it (its latest attempt's).
pub(super) fn reported_status(tx: &Transaction) -> &'static str {
    status_word(tx.latest_attempt().map_or(&tx.status, |a| &a.status))
}

#[derive(Serialize)]
struct Event<'a> {
    event: &'static str,
    data: TransactionView<'a>,
    #[serde(rename = "event.type")]
    event_type: &'static str,
}

/// The `charge.completed` webhook of the checkout's latest attempt, naming
/// that attempt; `None` before any attempt (Flutterwave announces no
/// cancelled checkout).
pub(super) fn webhook_body(tx: &Transaction) -> Option<String> {
    let attempt = tx.latest_attempt()?;
    let event = Event {
        event: "charge.completed",
        data: TransactionView::of_attempt(tx, attempt),
        event_type: "CARD_TRANSACTION",
    };
    Some(serde_json::to_string(&event).expect("a webhook body serializes"))
}

/// A refund as `POST /v3/transactions/{id}/refund` and `GET
/// /v3/refunds/{id}` show it.
#[derive(Serialize)]
pub(super) struct RefundView<'a> {
    id: i64,
    tx_id: i64,
    flw_ref: String,
    amount_refunded: Box<RawValue>,
    currency: &'a str,
    status: &'static str,
    comments: Option<&'a str>,
    destination: &'static str,
}

impl<'a> RefundView<'a> {
    pub(super) fn of(refund: &'a SandboxRefund) -> RefundView<'a> {
        RefundView {
            id: refund.id,
            tx_id: refund.transaction_id,
            flw_ref: format!("URF-SANDBOX-{}", refund.id),
            amount_refunded: major(refund.amount, &refund.currency),
            currency: &refund.currency,
            status: refund_word(&refund.status),
            comments: refund.merchant_note.as_deref(),
            destination: "payment_source",
        }
    }
}

#[derive(Deserialize)]
struct PaymentBody {
    tx_ref: String,
    amount: Box<RawValue>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    redirect_url: Option<String>,
    customer: CustomerBody,
}

#[derive(Deserialize)]
struct CustomerBody {
    email: String,
}

#[handler]
async fn initialize(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    body: poem::Result<Json<PaymentBody>>,
) -> Response {
    match sandbox.admit(req, Operation::Initialize).await {
        Ok(admission) => admission.finish(sandbox, open_transaction(sandbox, body)),
        Err(response) => response,
    }
}

/// Initialize's work and answer.
fn open_transaction(sandbox: &Sandbox, body: poem::Result<Json<PaymentBody>>) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "Invalid request body");
    };
    if body.tx_ref.is_empty() {
        return error(StatusCode::BAD_REQUEST, "tx_ref is required");
    }
    // Flutterwave assumes NGN when no currency is given.
    let currency = body.currency.unwrap_or_else(|| "NGN".into());
    if Currency::parse(&currency).is_err() {
        return error(StatusCode::BAD_REQUEST, "Invalid currency");
    }
    let amount = match connector::amount_minor(&body.amount, &currency) {
        Ok(amount) if amount > 0 => amount,
        _ => return error(StatusCode::BAD_REQUEST, "Invalid amount"),
    };
    let opened = sandbox.open(Opening {
        reference: body.tx_ref,
        amount,
        currency,
        email: body.customer.email,
        callback_url: body.redirect_url,
    });
    match opened {
        Ok(tx) => answer(
            "Hosted Link",
            json!({
                "link": format!("{}/checkout/{}", sandbox.inner.public_base, tx.access_code)
            }),
        ),
        Err(OpenRefusal::Conflict) => error(
            StatusCode::BAD_REQUEST,
            "A transaction with this tx_ref exists with other details",
        ),
        Err(OpenRefusal::Full) => error(StatusCode::TOO_MANY_REQUESTS, "sandbox is full"),
    }
}

#[derive(Deserialize)]
struct VerifyQuery {
    tx_ref: Option<String>,
}

#[handler]
async fn verify(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Query(query): Query<VerifyQuery>,
) -> Response {
    if let Err(response) = sandbox.admit(req, Operation::Verify).await {
        return response;
    }
    let Some(tx_ref) = query.tx_ref else {
        return error(StatusCode::BAD_REQUEST, "tx_ref is required");
    };
    let tx = sandbox.lock().transactions.get(&tx_ref).cloned();
    match tx {
        Some(tx) => answer("Transaction fetched successfully", TransactionView::of(&tx)),
        // Flutterwave answers an unknown tx_ref with 400, not 404.
        None => error(
            StatusCode::BAD_REQUEST,
            "No transaction was found for this id",
        ),
    }
}

/// `GET /v3/transactions/{id}/verify`: one attempt, by its id.
#[handler]
async fn verify_by_id(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Path(id): Path<i64>,
) -> Response {
    if let Err(response) = sandbox.admit(req, Operation::Verify).await {
        return response;
    }
    let state = sandbox.lock();
    let tx = state
        .by_id
        .get(&id)
        .and_then(|reference| state.transactions.get(reference));
    let view = tx.and_then(|tx| match tx.attempts.iter().find(|a| a.id == id) {
        Some(attempt) => Some(TransactionView::of_attempt(tx, attempt)),
        // The checkout's own id before any attempt: as by reference.
        None if tx.id == id && tx.attempts.is_empty() => Some(TransactionView::of(tx)),
        None => None,
    });
    match view {
        Some(view) => answer("Transaction fetched successfully", view),
        None => error(
            StatusCode::BAD_REQUEST,
            "No transaction was found for this id",
        ),
    }
}

#[derive(Deserialize)]
struct RefundBody {
    /// Major units; all that is left when absent.
    #[serde(default)]
    amount: Option<Box<RawValue>>,
    #[serde(default)]
    comments: Option<String>,
}

#[handler]
async fn create_refund(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Path(id): Path<i64>,
    body: poem::Result<Json<RefundBody>>,
) -> Response {
    match sandbox.admit(req, Operation::Refund).await {
        Ok(admission) => admission.finish(sandbox, open_refund(sandbox, id, body)),
        Err(response) => response,
    }
}

/// A refund's work and answer.
fn open_refund(sandbox: &Sandbox, id: i64, body: poem::Result<Json<RefundBody>>) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "Invalid request body");
    };
    let found = {
        let state = sandbox.lock();
        state
            .by_id
            .get(&id)
            .and_then(|reference| state.transactions.get(reference))
            .map(|tx| {
                let declined = tx
                    .attempts
                    .iter()
                    .any(|a| a.id == id && a.status != "success");
                (tx.reference.clone(), tx.currency.clone(), declined)
            })
    };
    let Some((reference, currency, declined)) = found else {
        return error(StatusCode::NOT_FOUND, "Transaction not found");
    };
    if declined {
        return error(
            StatusCode::BAD_REQUEST,
            "Cannot refund an unsuccessful transaction",
        );
    }
    let amount = body
        .amount
        .as_deref()
        .map(|raw| connector::amount_minor(raw, &currency))
        .transpose();
    let Ok(amount) = amount else {
        return error(StatusCode::BAD_REQUEST, "Invalid refund amount");
    };
    match sandbox.open_refund(&reference, amount, body.comments) {
        Ok(refund) => answer("Transaction refund initiated", RefundView::of(&refund)),
        Err((status, message)) => error(status, message),
    }
}

#[handler]
async fn fetch_refund(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Path(id): Path<i64>,
) -> Response {
    let admission = match sandbox.admit(req, Operation::RefundLookup).await {
        Ok(admission) => admission,
        Err(response) => return response,
    };
    let refund = if admission.misses() {
        None
    } else {
        sandbox.lock().refunds.get(&id).cloned()
    };
    match refund {
        Some(refund) => answer("Refund fetched", RefundView::of(&refund)),
        None => error(StatusCode::NOT_FOUND, "Refund not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkout in `status`; a decided one holds one attempt.
    fn transaction(status: &str) -> Transaction {
        let attempts = match status {
            "success" | "failed" => vec![Attempt {
                id: 7_000_001,
                created_at: chrono::Utc::now(),
                status: status.into(),
                gateway_response: "Approved".into(),
                paid_at: None,
            }],
            _ => Vec::new(),
        };
        Transaction {
            id: 7_000_001,
            reference: "r-1".into(),
            amount: 150075,
            currency: "NGN".into(),
            email: "a@b.c".into(),
            created_at: chrono::Utc::now(),
            status: status.into(),
            access_code: "ac_1".into(),
            paid_at: None,
            gateway_response: "Approved".into(),
            reported_amount: None,
            reported_currency: None,
            callback_url: None,
            attempts,
        }
    }

    #[test]
    fn statuses_speak_flutterwave() {
        assert_eq!(status_word("success"), "successful");
        assert_eq!(status_word("failed"), "failed");
        assert_eq!(status_word("abandoned"), "cancelled");
        assert_eq!(status_word("ongoing"), "pending");
        assert_eq!(refund_word("processed"), "completed");
        assert_eq!(refund_word("pending"), "pending");
    }

    #[test]
    fn amounts_are_exact_major_units() {
        let tx = transaction("success");
        let text = serde_json::to_string(&TransactionView::of(&tx)).unwrap();
        assert!(text.contains(r#""amount":1500.75,"#), "{text}");
        let xof = Transaction {
            amount: 1500,
            currency: "XOF".into(),
            ..transaction("success")
        };
        let text = serde_json::to_string(&TransactionView::of(&xof)).unwrap();
        assert!(text.contains(r#""amount":1500,"#), "{text}");
    }

    #[test]
    fn the_webhook_reads_back_through_the_connector() {
        let body = webhook_body(&transaction("success")).unwrap();
        let event = connector::parse_event(body.as_bytes()).unwrap();
        assert_eq!(event.event_type, "charge.completed");
        assert_eq!(event.dedup_key, "charge.completed:7000001");
        assert_eq!(event.reference.as_deref(), Some("r-1"));
        assert_eq!(event.amount, Some(150075));
        assert!(webhook_body(&transaction("failed")).is_some());
        assert!(webhook_body(&transaction("abandoned")).is_none());
        assert!(webhook_body(&transaction("ongoing")).is_none());
    }
}
