//! The sandbox's refunds, in Paystack's shapes: `POST /refund` (a refund of
//! a successful transaction, never above what is left of it),
//! `GET /refund/{id}`, `GET /refund?transaction={reference}`, and
//! `POST /_control/refunds/{id}/outcome` to settle one as a test decides.
//! A settled refund is announced with a signed `refund.processed` or
//! `refund.failed` webhook.

use std::time::Duration;

use poem::{
    IntoResponse, Request, Response, handler,
    http::StatusCode,
    web::{Data, Json, Path, Query},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Operation, Sandbox, fault, paystack_error, unauthorized};

/// How long a refund stays pending when nothing settles it sooner.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Serialize)]
pub struct SandboxRefund {
    id: i64,
    transaction_reference: String,
    amount: i64,
    currency: String,
    /// `pending`, then `processed` or `failed`.
    status: String,
    merchant_note: Option<String>,
}

impl SandboxRefund {
    fn view(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "transaction_reference": self.transaction_reference,
            "amount": self.amount,
            "currency": self.currency,
            "status": self.status,
            "merchant_note": self.merchant_note,
        })
    }

    fn webhook_body(&self) -> serde_json::Value {
        let event = match self.status.as_str() {
            "processed" => "refund.processed",
            _ => "refund.failed",
        };
        json!({"event": event, "data": self.view()})
    }
}

impl Sandbox {
    /// Settles a pending refund and announces it; `None` if unknown.
    fn settle_refund(&self, id: i64, status: &str, notify: bool) -> Option<SandboxRefund> {
        let (refund, changed) = {
            let mut state = self.lock();
            let refund = state.refunds.get_mut(&id)?;
            let changed = refund.status == "pending";
            if changed {
                refund.status = status.to_owned();
            }
            (refund.clone(), changed)
        };
        if changed
            && notify
            && let Some(sender) = &self.inner.webhooks
        {
            sender.send_in_background(refund.webhook_body());
        }
        Some(refund)
    }
}

#[derive(Deserialize)]
pub struct CreateBody {
    transaction: String,
    amount: Option<i64>,
    merchant_note: Option<String>,
}

#[handler]
pub async fn create(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    body: poem::Result<Json<CreateBody>>,
) -> Response {
    if !sandbox.authorized(req) {
        return unauthorized();
    }
    sandbox.lock().stats.refund_calls += 1;
    if let Some(response) = fault(sandbox, Operation::Refund).await {
        return response;
    }
    let Ok(Json(body)) = body else {
        return paystack_error(StatusCode::BAD_REQUEST, "Invalid request body");
    };
    let refund = {
        let mut state = sandbox.lock();
        let Some(tx) = state.transactions.get(&body.transaction) else {
            return paystack_error(StatusCode::NOT_FOUND, "Transaction not found");
        };
        if tx.status != "success" {
            return paystack_error(
                StatusCode::BAD_REQUEST,
                "Cannot refund an unsuccessful transaction",
            );
        }
        let (total, currency) = (tx.amount, tx.currency.clone());
        let promised: i64 = state
            .refunds
            .values()
            .filter(|r| r.transaction_reference == body.transaction && r.status != "failed")
            .map(|r| r.amount)
            .sum();
        let amount = body.amount.unwrap_or(total - promised);
        if amount <= 0 || promised + amount > total {
            return paystack_error(
                StatusCode::BAD_REQUEST,
                "Refund amount cannot be more than the transaction amount",
            );
        }
        state.next_id += 1;
        let refund = SandboxRefund {
            id: state.next_id,
            transaction_reference: body.transaction,
            amount,
            currency,
            status: "pending".into(),
            merchant_note: body.merchant_note,
        };
        state.refunds.insert(refund.id, refund.clone());
        refund
    };
    if let Some(after) = sandbox.inner.refund_settle {
        let (sandbox, id) = (sandbox.clone(), refund.id);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            sandbox.settle_refund(id, "processed", true);
        });
    }
    Json(json!({
        "status": true,
        "message": "Refund has been queued for processing",
        "data": refund.view(),
    }))
    .into_response()
}

#[handler]
pub async fn fetch(req: &Request, Data(sandbox): Data<&Sandbox>, Path(id): Path<i64>) -> Response {
    if !sandbox.authorized(req) {
        return unauthorized();
    }
    let refund = {
        let mut state = sandbox.lock();
        state.stats.refund_lookups += 1;
        state.refunds.get(&id).map(SandboxRefund::view)
    };
    match refund {
        Some(data) => Json(json!({"status": true, "message": "Refund retrieved", "data": data}))
            .into_response(),
        None => paystack_error(StatusCode::NOT_FOUND, "Refund not found"),
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    transaction: String,
}

#[handler]
pub async fn list(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Query(query): Query<ListQuery>,
) -> Response {
    if !sandbox.authorized(req) {
        return unauthorized();
    }
    let refunds: Vec<_> = {
        let mut state = sandbox.lock();
        state.stats.refund_lookups += 1;
        state
            .refunds
            .values()
            .filter(|r| r.transaction_reference == query.transaction)
            .map(SandboxRefund::view)
            .collect()
    };
    Json(json!({"status": true, "message": "Refunds retrieved", "data": refunds})).into_response()
}

#[derive(Deserialize)]
pub struct OutcomeBody {
    /// `processed` or `failed`.
    status: String,
    /// Announce it by webhook (default), or stay quiet for reconciliation.
    #[serde(default = "super::yes")]
    notify: bool,
}

#[handler]
pub async fn force(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Path(id): Path<i64>,
    Json(body): Json<OutcomeBody>,
) -> Response {
    if !sandbox.authorized(req) {
        return unauthorized();
    }
    if !matches!(body.status.as_str(), "processed" | "failed") {
        return paystack_error(StatusCode::BAD_REQUEST, "status: processed or failed");
    }
    match sandbox.settle_refund(id, &body.status, body.notify) {
        Some(refund) => Json(refund.view()).into_response(),
        None => paystack_error(StatusCode::NOT_FOUND, "Refund not found"),
    }
}
