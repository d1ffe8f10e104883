//! The sandbox's Paystack dialect, at its base: `POST /transaction/initialize`
//! (idempotent per reference, the amount a number or a numeric string) and
//! `GET /transaction/verify/{reference}`, and its refunds (`POST /refund`,
//! `GET /refund/{id}`, opened and settled by `refunds.rs`), in Paystack's
//! shapes; its listings — `GET /refund?transaction=` (paged) and `GET
//! /transaction` by date — are in `refund_listing.rs` and `listing.rs`. Errors come in Paystack's
//! envelope `{"status": false, "message"}`.

use poem::{
    IntoResponse, Request, Response, Route, handler,
    http::StatusCode,
    web::{Data, Json, Path},
};
use serde::Deserialize;
use serde_json::json;

use super::{
    Sandbox,
    state::{OpenRefusal, Opening, Operation, SandboxRefund, Transaction},
};

pub(super) fn api_routes() -> Route {
    Route::new()
        .at("/transaction/initialize", poem::post(initialize))
        .at("/transaction/verify/:reference", poem::get(verify))
        .at("/refund/:id", poem::get(fetch_refund))
}

/// An error in Paystack's envelope.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"status": false, "message": message}))).into_response()
}

#[derive(Deserialize)]
struct InitializeBody {
    reference: String,
    amount: serde_json::Value,
    currency: Option<String>,
    email: String,
    callback_url: Option<String>,
}

#[handler]
async fn initialize(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    body: poem::Result<Json<InitializeBody>>,
) -> Response {
    match sandbox.admit(req, Operation::Initialize).await {
        Ok(admission) => admission.finish(sandbox, open_transaction(sandbox, body)),
        Err(response) => response,
    }
}

/// Initialize's work and answer.
fn open_transaction(sandbox: &Sandbox, body: poem::Result<Json<InitializeBody>>) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "Invalid request body");
    };
    // Paystack accepts the amount as a number or a numeric string.
    let amount = match &body.amount {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    };
    let Some(amount) = amount.filter(|a| *a > 0) else {
        return error(StatusCode::BAD_REQUEST, "Invalid Amount Sent");
    };
    let opened = sandbox.open(Opening {
        reference: body.reference,
        amount,
        currency: body.currency.unwrap_or_else(|| "NGN".into()),
        email: body.email,
        callback_url: body.callback_url,
    });
    match opened {
        Ok(tx) => Json(json!({
            "status": true,
            "message": "Authorization URL created",
            "data": {
                "authorization_url": format!(
                    "{}/checkout/{}",
                    sandbox.inner.public_base, tx.access_code
                ),
                "access_code": tx.access_code,
                "reference": tx.reference,
            }
        }))
        .into_response(),
        Err(OpenRefusal::Conflict) => {
            error(StatusCode::BAD_REQUEST, "Duplicate Transaction Reference")
        }
        Err(OpenRefusal::Full) => error(StatusCode::TOO_MANY_REQUESTS, "sandbox is full"),
    }
}

#[handler]
async fn verify(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Path(reference): Path<String>,
) -> Response {
    if let Err(response) = sandbox.admit(req, Operation::Verify).await {
        return response;
    }
    let report = sandbox
        .lock()
        .transactions
        .get(&reference)
        .map(Transaction::report);
    match report {
        Some(data) => Json(json!({
            "status": true,
            "message": "Verification successful",
            "data": data,
        }))
        .into_response(),
        // Paystack answers an unknown reference with 400, not 404.
        None => error(StatusCode::BAD_REQUEST, "Transaction reference not found"),
    }
}

#[derive(Deserialize)]
pub struct RefundBody {
    transaction: String,
    amount: Option<i64>,
    merchant_note: Option<String>,
}

#[handler]
pub async fn create_refund(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    body: poem::Result<Json<RefundBody>>,
) -> Response {
    match sandbox.admit(req, Operation::Refund).await {
        Ok(admission) => admission.finish(sandbox, open_refund(sandbox, body)),
        Err(response) => response,
    }
}

/// A refund's work and answer.
fn open_refund(sandbox: &Sandbox, body: poem::Result<Json<RefundBody>>) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "Invalid request body");
    };
    match sandbox.open_refund(&body.transaction, body.amount, body.merchant_note) {
        Ok(refund) => Json(json!({
            "status": true,
            "message": "Refund has been queued for processing",
            "data": refund.view(),
        }))
        .into_response(),
        Err((status, message)) => error(status, message),
    }
}

#[handler]
pub async fn fetch_refund(
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
        sandbox.lock().refunds.get(&id).map(SandboxRefund::view)
    };
    match refund {
        Some(data) => Json(json!({"status": true, "message": "Refund retrieved", "data": data}))
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "Refund not found"),
    }
}
