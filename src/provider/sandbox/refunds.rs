//! The sandbox's refunds. Paystack's shapes here: `POST /refund` (a refund
//! of a successful transaction, never above what is left of it),
//! `GET /refund/{id}`, `GET /refund?transaction={reference}`; Flutterwave's
//! in [`super::flutterwave`], on the same rules. In either dialect
//! `POST /_control/refunds/{id}/outcome` settles one as a test decides. A
//! settled Paystack refund is announced with a signed `refund.processed` or
//! `refund.failed` webhook; a Flutterwave one is not announced.

use std::time::Duration;

use poem::{
    IntoResponse, Request, Response, handler,
    http::StatusCode,
    web::{Data, Json, Path, Query},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Sandbox, flutterwave, paystack, state::Operation};
use crate::provider::routing::ConnectorName;

/// How long a refund stays pending when nothing settles it sooner.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(1);

/// A refund, in minor units and Paystack's words whatever the dialect.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxRefund {
    pub(super) id: i64,
    pub(super) transaction_reference: String,
    /// The refunded transaction's id (Flutterwave names it so).
    pub(super) transaction_id: i64,
    pub(super) amount: i64,
    pub(super) currency: String,
    /// `pending`, then `processed` or `failed`.
    pub(super) status: String,
    /// The merchant's note: Paystack's `merchant_note`, Flutterwave's
    /// `comments`.
    pub(super) merchant_note: Option<String>,
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

/// Why a refund is refused: the status and the provider's words.
pub(super) type Refusal = (StatusCode, &'static str);

impl Sandbox {
    /// Opens a refund of the transaction `reference`: `amount` (minor
    /// units) or all that is left of it.
    pub(super) fn open_refund(
        &self,
        reference: &str,
        amount: Option<i64>,
        note: Option<String>,
    ) -> Result<SandboxRefund, Refusal> {
        let mut state = self.lock();
        let Some(tx) = state.transactions.get(reference) else {
            return Err((StatusCode::NOT_FOUND, "Transaction not found"));
        };
        if tx.status != "success" {
            return Err((
                StatusCode::BAD_REQUEST,
                "Cannot refund an unsuccessful transaction",
            ));
        }
        let (total, currency, transaction_id) = (tx.amount, tx.currency.clone(), tx.id);
        let promised: i64 = state
            .refunds
            .values()
            .filter(|r| r.transaction_reference == reference && r.status != "failed")
            .map(|r| r.amount)
            .sum();
        let amount = amount.unwrap_or(total - promised);
        if amount <= 0 || promised + amount > total {
            return Err((
                StatusCode::BAD_REQUEST,
                "Refund amount cannot be more than the transaction amount",
            ));
        }
        state.next_id += 1;
        let refund = SandboxRefund {
            id: state.next_id,
            transaction_reference: reference.to_owned(),
            transaction_id,
            amount,
            currency,
            status: "pending".into(),
            merchant_note: note,
        };
        state.refunds.insert(refund.id, refund.clone());
        drop(state);
        if let Some(after) = self.inner.refund_settle {
            let (sandbox, id) = (self.clone(), refund.id);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                sandbox.settle_refund(id, "processed", true);
            });
        }
        Ok(refund)
    }

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
            && self.inner.dialect == ConnectorName::Paystack
            && let Some(sender) = &self.inner.webhooks
        {
            sender.send_in_background(refund.webhook_body().to_string());
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
    if let Some(response) = sandbox.admit(req, Operation::Refund).await {
        return response;
    }
    let Ok(Json(body)) = body else {
        return paystack::error(StatusCode::BAD_REQUEST, "Invalid request body");
    };
    match sandbox.open_refund(&body.transaction, body.amount, body.merchant_note) {
        Ok(refund) => Json(json!({
            "status": true,
            "message": "Refund has been queued for processing",
            "data": refund.view(),
        }))
        .into_response(),
        Err((status, message)) => paystack::error(status, message),
    }
}

#[handler]
pub async fn fetch(req: &Request, Data(sandbox): Data<&Sandbox>, Path(id): Path<i64>) -> Response {
    if !sandbox.authorized(req) {
        return sandbox.unauthorized();
    }
    let refund = {
        let mut state = sandbox.lock();
        state.stats.refund_lookups += 1;
        state.refunds.get(&id).map(SandboxRefund::view)
    };
    match refund {
        Some(data) => Json(json!({"status": true, "message": "Refund retrieved", "data": data}))
            .into_response(),
        None => paystack::error(StatusCode::NOT_FOUND, "Refund not found"),
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
        return sandbox.unauthorized();
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
    /// `processed` or `failed` in either dialect (Flutterwave reports them
    /// as `completed` and `failed`).
    status: String,
    /// Announce it by webhook (default), or stay quiet for reconciliation.
    #[serde(default = "super::control::yes")]
    notify: bool,
    /// `paystack` or `flutterwave`; default: the dialect asked.
    provider: Option<String>,
}

#[handler]
pub async fn force(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Path(id): Path<i64>,
    Json(body): Json<OutcomeBody>,
) -> Response {
    let sandbox = match sandbox.control_target(req, body.provider.as_deref()) {
        Ok(target) => target,
        Err(response) => return *response,
    };
    if !matches!(body.status.as_str(), "processed" | "failed") {
        return sandbox.refuse(StatusCode::BAD_REQUEST, "status: processed or failed");
    }
    match sandbox.settle_refund(id, &body.status, body.notify) {
        Some(refund) => match sandbox.inner.dialect {
            ConnectorName::Paystack => Json(refund.view()).into_response(),
            ConnectorName::Flutterwave => {
                Json(flutterwave::RefundView::of(&refund)).into_response()
            }
        },
        None => sandbox.refuse(StatusCode::NOT_FOUND, "Refund not found"),
    }
}
