//! The test hooks under `/_control/…` in each dialect: make the next calls
//! of an operation fail, or succeed and lose their answer, or miss a refund
//! (`faults`), force a transaction's or a refund's outcome (in the
//! Flutterwave dialect, `attempt_only` declines one attempt and leaves the
//! checkout payable), and read the
//! counts (`stats`); bursts and the ledger have their own files.
//! Asked at the base, a hook reaches the Flutterwave dialect too when the
//! call names it: `"provider": "flutterwave"` in the body, or
//! `?provider=flutterwave` for stats.

use poem::{
    IntoResponse, Request, Response, handler,
    http::StatusCode,
    web::{Data, Json, Path, Query},
};
use serde::Deserialize;

use super::{
    Sandbox, flutterwave,
    state::{AfterDecline, Fault, FaultMode, Operation},
};
use crate::provider::routing::ConnectorName;

impl Sandbox {
    /// The dialect a control call is for (`None`: this one), once the call
    /// is authorized; otherwise the response that ends it (401, or 400 for
    /// a dialect this sandbox does not reach).
    pub(super) fn control_target(
        &self,
        req: &Request,
        provider: Option<&str>,
    ) -> Result<&Sandbox, Box<Response>> {
        if !self.authorized(req) {
            return Err(Box::new(self.unauthorized()));
        }
        let target = match provider {
            None => Some(self),
            Some(name) => name.parse().ok().and_then(|name| self.of(name)),
        };
        target.ok_or_else(|| {
            Box::new(self.refuse(
                StatusCode::BAD_REQUEST,
                "provider: paystack or flutterwave (from the base)",
            ))
        })
    }
}

#[derive(Deserialize)]
pub struct FaultBody {
    operation: Operation,
    mode: FaultMode,
    /// How many of the next calls it hits (default 1); 0 clears it.
    #[serde(default = "one")]
    count: u32,
    /// `paystack` or `flutterwave`; default: the dialect asked.
    provider: Option<String>,
}

#[handler]
pub async fn set_fault(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Json(body): Json<FaultBody>,
) -> Response {
    let target = match sandbox.control_target(req, body.provider.as_deref()) {
        Ok(target) => target,
        Err(response) => return *response,
    };
    if !body.mode.fits(body.operation) {
        return target.refuse(
            StatusCode::BAD_REQUEST,
            "mode: duplicate is for initialize, verify or refund; error_after for initialize or refund; not_found for refund_lookup",
        );
    }
    target.lock().faults.insert(
        body.operation,
        Fault {
            mode: body.mode,
            remaining: body.count,
        },
    );
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
pub struct OutcomeBody {
    /// `success`, `failed` or `abandoned` in either dialect (Flutterwave
    /// reports them as `successful`, `failed`, `cancelled`).
    status: String,
    /// Report this amount (minor units) instead of the initialized one
    /// (mismatch drills).
    amount: Option<i64>,
    currency: Option<String>,
    /// Send the webhook as a checkout would (default), or stay quiet so
    /// only a verify can find out.
    #[serde(default = "yes")]
    notify: bool,
    /// `paystack` or `flutterwave`; default: the dialect asked.
    provider: Option<String>,
    /// Flutterwave only, with `failed`: decline one attempt and leave the
    /// checkout payable (as its page's Decline does). Without it a decision
    /// closes the checkout, as it always did.
    #[serde(default)]
    attempt_only: bool,
}

/// The default of a control body's `notify`.
fn yes() -> bool {
    true
}

/// The default of a fault's `count`.
fn one() -> u32 {
    1
}

#[handler]
pub async fn force_outcome(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Path(reference): Path<String>,
    Json(body): Json<OutcomeBody>,
) -> Response {
    let sandbox = match sandbox.control_target(req, body.provider.as_deref()) {
        Ok(target) => target,
        Err(response) => return *response,
    };
    if !matches!(body.status.as_str(), "success" | "failed" | "abandoned") {
        return sandbox.refuse(
            StatusCode::BAD_REQUEST,
            "status: success, failed or abandoned",
        );
    }
    let after = match body.attempt_only {
        false => AfterDecline::Close,
        true if body.status == "failed" && sandbox.inner.dialect == ConnectorName::Flutterwave => {
            AfterDecline::KeepOpen
        }
        true => {
            return sandbox.refuse(
                StatusCode::BAD_REQUEST,
                "attempt_only: only with status failed, in the Flutterwave dialect",
            );
        }
    };
    {
        let mut state = sandbox.lock();
        let Some(tx) = state.transactions.get_mut(&reference) else {
            return sandbox.refuse(StatusCode::NOT_FOUND, "Transaction reference not found");
        };
        tx.reported_amount = body.amount;
        tx.reported_currency = body.currency;
    }
    let settled = if body.notify {
        sandbox.settle(&reference, &body.status, after)
    } else {
        sandbox
            .settle_quietly(&reference, &body.status, after)
            .map(|(tx, _)| tx)
    };
    match settled {
        Some(tx) => sandbox.report_response(&tx),
        None => sandbox.refuse(StatusCode::NOT_FOUND, "Transaction reference not found"),
    }
}

#[derive(Deserialize)]
pub struct StatsQuery {
    /// `paystack` or `flutterwave`; default: the dialect asked.
    provider: Option<String>,
}

#[handler]
pub async fn stats(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Query(query): Query<StatsQuery>,
) -> Response {
    match sandbox.control_target(req, query.provider.as_deref()) {
        Ok(target) => Json(target.stats()).into_response(),
        Err(response) => *response,
    }
}

#[derive(Deserialize)]
pub struct RefundOutcomeBody {
    /// `processed` or `failed` in either dialect (Flutterwave reports them
    /// as `completed` and `failed`).
    status: String,
    /// Announce it by webhook (default), or stay quiet for reconciliation.
    #[serde(default = "yes")]
    notify: bool,
    /// `paystack` or `flutterwave`; default: the dialect asked.
    provider: Option<String>,
}

#[handler]
pub async fn force_refund(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Path(id): Path<i64>,
    Json(body): Json<RefundOutcomeBody>,
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
