//! The built-in sandbox provider: a Paystack-compatible simulator that
//! stands in for the real provider in development, tests and load tests.
//!
//! - `POST /transaction/initialize`, `GET /transaction/verify/{reference}`:
//!   Paystack's shapes, bearer secret key. Initialize is idempotent per
//!   reference (same parameters → the same transaction).
//! - `GET /checkout/{access_code}`: a page where a person clicks Pay or
//!   Decline; the form posts `outcome=success|failed` back to the same path,
//!   which redirects to the initialize's `callback_url` when it had one.
//! - `POST /refund`, `GET /refund/{id}`, `GET /refund?transaction=`:
//!   Paystack's refunds. A refund is `pending` until it settles — after
//!   the configured delay, or when a test settles it — and is then
//!   announced with a signed `refund.processed` / `refund.failed` webhook.
//! - `/_control/…`: hooks for tests — force an outcome (and the amount the
//!   provider will report), settle a refund, make the next N calls fail
//!   with 500 or hang, and count what was asked.
//!
//! State is in memory, bounded by [`MAX_TRANSACTIONS`].

mod burst;
mod checkout;
mod refunds;
mod webhooks;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route, handler,
    http::StatusCode,
    web::{Data, Json, Path},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Beyond this many transactions the sandbox refuses new ones (429).
pub const MAX_TRANSACTIONS: usize = 1_000_000;

/// How long a "hang" fault holds a request: past any sane client timeout.
const HANG: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    secret: Secret,
    /// Where settled transactions are announced, signed like Paystack does.
    webhooks: Option<webhooks::WebhookSender>,
    /// Where the sandbox is reachable from a browser: checkout links start here.
    public_base: String,
    /// Refunds settle as processed this long after they are asked for;
    /// `None`: only when a test settles them.
    refund_settle: Option<Duration>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    transactions: HashMap<String, Transaction>,
    by_access_code: HashMap<String, String>,
    next_id: i64,
    refunds: HashMap<i64, refunds::SandboxRefund>,
    faults: HashMap<Operation, Fault>,
    stats: Stats,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    pub initialize_calls: u64,
    pub verify_calls: u64,
    pub transactions: u64,
    #[serde(default)]
    pub refund_calls: u64,
    #[serde(default)]
    pub refund_lookups: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Initialize,
    Verify,
    Refund,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// Answer 500.
    Error,
    /// Hold the request past the client's timeout.
    Hang,
    /// Answer 400 "Duplicate Transaction Reference", as Paystack does when
    /// asked to initialize a reference it already holds.
    Duplicate,
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    mode: FaultMode,
    remaining: u32,
}

#[derive(Debug, Clone, Serialize)]
struct Transaction {
    id: i64,
    reference: String,
    amount: i64,
    currency: String,
    email: String,
    /// Paystack's words: `ongoing` until the customer acts, then `success`,
    /// `failed` or `abandoned`.
    status: String,
    access_code: String,
    paid_at: Option<DateTime<Utc>>,
    gateway_response: String,
    /// What verify and webhooks report, when a test forces a different amount.
    reported_amount: Option<i64>,
    reported_currency: Option<String>,
    /// Where the checkout sends the customer once they decided, as Paystack
    /// does (with `?trxref=…&reference=…`).
    callback_url: Option<String>,
}

impl Transaction {
    fn report(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "reference": self.reference,
            "status": self.status,
            "amount": self.reported_amount.unwrap_or(self.amount),
            "currency": self.reported_currency.as_deref().unwrap_or(&self.currency),
            "paid_at": self.paid_at,
            "gateway_response": self.gateway_response,
        })
    }
}

impl Transaction {
    /// The event announcing this transaction's outcome, in Paystack's shape.
    fn webhook_body(&self) -> serde_json::Value {
        let event = match self.status.as_str() {
            "success" => "charge.success",
            "failed" => "charge.failed",
            _ => "charge.abandoned",
        };
        json!({"event": event, "data": self.report()})
    }
}

impl Sandbox {
    /// `webhook_url`: where to post `charge.success` / `charge.failed` after
    /// a checkout; `None` sends none.
    pub fn new(
        secret: Secret,
        public_base: impl Into<String>,
        webhook_url: Option<String>,
    ) -> Sandbox {
        Sandbox {
            inner: Arc::new(Inner {
                webhooks: webhook_url.map(|url| webhooks::WebhookSender::new(url, secret.clone())),
                secret,
                public_base: public_base.into().trim_end_matches('/').to_owned(),
                refund_settle: Some(refunds::DEFAULT_SETTLE),
                state: Mutex::new(State {
                    next_id: 1_000_000,
                    ..State::default()
                }),
            }),
        }
    }

    /// Refunds settle after `settle`, or only by control call (`None`).
    /// Call before the sandbox is shared.
    pub fn with_refund_settle(mut self, settle: Option<Duration>) -> Sandbox {
        Arc::get_mut(&mut self.inner)
            .expect("the sandbox is configured before it is shared")
            .refund_settle = settle;
        self
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Consumes one pending fault for `operation`, if any.
    fn take_fault(&self, operation: Operation) -> Option<FaultMode> {
        let mut state = self.lock();
        let fault = state.faults.get_mut(&operation)?;
        if fault.remaining == 0 {
            return None;
        }
        fault.remaining -= 1;
        Some(fault.mode)
    }

    fn authorized(&self, req: &Request) -> bool {
        let expected = format!("Bearer {}", self.inner.secret.expose());
        req.headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())))
    }

    /// The sandbox's routes, to mount at its base path.
    pub fn routes(&self) -> impl Endpoint + use<> {
        Route::new()
            .at("/transaction/initialize", poem::post(initialize))
            .at("/transaction/verify/:reference", poem::get(verify))
            .at(
                "/checkout/:access_code",
                poem::get(checkout::page).post(checkout::submit),
            )
            .at("/refund", poem::post(refunds::create).get(refunds::list))
            .at("/refund/:id", poem::get(refunds::fetch))
            .at("/_control/refunds/:id/outcome", poem::post(refunds::force))
            .at("/_control/faults", poem::post(set_fault))
            .at(
                "/_control/transactions/:reference/outcome",
                poem::post(force_outcome),
            )
            .at("/_control/stats", poem::get(stats))
            .at("/_control/burst", poem::post(burst::burst))
            .data(self.clone())
    }

    /// Settles a transaction as the customer (or a test) decided, and
    /// announces it by webhook. Only an `ongoing` transaction changes: a
    /// provider does not re-decide.
    fn settle(&self, reference: &str, outcome: &str) -> Option<Transaction> {
        let (tx, changed) = self.settle_quietly(reference, outcome)?;
        if changed && let Some(sender) = &self.inner.webhooks {
            sender.send_in_background(tx.webhook_body());
        }
        Some(tx)
    }

    fn settle_quietly(&self, reference: &str, outcome: &str) -> Option<(Transaction, bool)> {
        let mut state = self.lock();
        let tx = state.transactions.get_mut(reference)?;
        let changed = tx.status == "ongoing";
        if changed {
            tx.status = outcome.to_owned();
            tx.gateway_response = match outcome {
                "success" => "Approved",
                "failed" => "Declined",
                _ => "Abandoned",
            }
            .to_owned();
            if outcome == "success" {
                tx.paid_at = Some(Utc::now());
            }
        }
        Some((tx.clone(), changed))
    }
}

fn paystack_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"status": false, "message": message}))).into_response()
}

fn unauthorized() -> Response {
    paystack_error(StatusCode::UNAUTHORIZED, "Invalid key")
}

/// Applies a pending fault: `Some(response)` ends the request there.
async fn fault(sandbox: &Sandbox, operation: Operation) -> Option<Response> {
    match sandbox.take_fault(operation)? {
        FaultMode::Error => Some(paystack_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "sandbox: injected failure",
        )),
        FaultMode::Hang => {
            tokio::time::sleep(HANG).await;
            Some(paystack_error(
                StatusCode::GATEWAY_TIMEOUT,
                "sandbox: injected hang",
            ))
        }
        FaultMode::Duplicate => Some(paystack_error(
            StatusCode::BAD_REQUEST,
            "Duplicate Transaction Reference",
        )),
    }
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
    if !sandbox.authorized(req) {
        return unauthorized();
    }
    sandbox.lock().stats.initialize_calls += 1;
    if let Some(response) = fault(sandbox, Operation::Initialize).await {
        return response;
    }
    let Ok(Json(body)) = body else {
        return paystack_error(StatusCode::BAD_REQUEST, "Invalid request body");
    };
    // Paystack accepts the amount as a number or a numeric string.
    let amount = match &body.amount {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    };
    let Some(amount) = amount.filter(|a| *a > 0) else {
        return paystack_error(StatusCode::BAD_REQUEST, "Invalid Amount Sent");
    };
    let currency = body.currency.unwrap_or_else(|| "NGN".into());
    let mut state = sandbox.lock();
    if let Some(existing) = state.transactions.get(&body.reference) {
        let same = existing.amount == amount
            && existing.currency == currency
            && existing.email == body.email;
        if !same {
            return paystack_error(StatusCode::BAD_REQUEST, "Duplicate Transaction Reference");
        }
        let access_code = existing.access_code.clone();
        drop(state);
        return initialized(sandbox, &body.reference, &access_code);
    }
    if state.transactions.len() >= MAX_TRANSACTIONS {
        return paystack_error(StatusCode::TOO_MANY_REQUESTS, "sandbox is full");
    }
    state.next_id += 1;
    let access_code = format!("ac_{}", uuid::Uuid::new_v4().simple());
    let tx = Transaction {
        id: state.next_id,
        reference: body.reference.clone(),
        amount,
        currency,
        email: body.email,
        status: "ongoing".into(),
        access_code: access_code.clone(),
        paid_at: None,
        gateway_response: "Pending".into(),
        reported_amount: None,
        reported_currency: None,
        callback_url: body.callback_url,
    };
    state
        .by_access_code
        .insert(access_code.clone(), body.reference.clone());
    state.transactions.insert(body.reference.clone(), tx);
    state.stats.transactions += 1;
    drop(state);
    initialized(sandbox, &body.reference, &access_code)
}

fn initialized(sandbox: &Sandbox, reference: &str, access_code: &str) -> Response {
    Json(json!({
        "status": true,
        "message": "Authorization URL created",
        "data": {
            "authorization_url": format!("{}/checkout/{access_code}", sandbox.inner.public_base),
            "access_code": access_code,
            "reference": reference,
        }
    }))
    .into_response()
}

#[handler]
async fn verify(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Path(reference): Path<String>,
) -> Response {
    if !sandbox.authorized(req) {
        return unauthorized();
    }
    sandbox.lock().stats.verify_calls += 1;
    if let Some(response) = fault(sandbox, Operation::Verify).await {
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
        None => paystack_error(StatusCode::BAD_REQUEST, "Transaction reference not found"),
    }
}

#[derive(Deserialize)]
struct FaultBody {
    operation: Operation,
    mode: FaultMode,
    count: u32,
}

#[handler]
async fn set_fault(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Json(body): Json<FaultBody>,
) -> Response {
    if !sandbox.authorized(req) {
        return unauthorized();
    }
    sandbox.lock().faults.insert(
        body.operation,
        Fault {
            mode: body.mode,
            remaining: body.count,
        },
    );
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct OutcomeBody {
    status: String,
    /// Report this amount instead of the initialized one (mismatch drills).
    amount: Option<i64>,
    currency: Option<String>,
    /// Send the webhook as a checkout would (default), or stay quiet so
    /// only a verify can find out.
    #[serde(default = "yes")]
    notify: bool,
}

fn yes() -> bool {
    true
}

#[handler]
async fn force_outcome(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Path(reference): Path<String>,
    Json(body): Json<OutcomeBody>,
) -> Response {
    if !sandbox.authorized(req) {
        return unauthorized();
    }
    if !matches!(body.status.as_str(), "success" | "failed" | "abandoned") {
        return paystack_error(
            StatusCode::BAD_REQUEST,
            "status: success, failed or abandoned",
        );
    }
    {
        let mut state = sandbox.lock();
        let Some(tx) = state.transactions.get_mut(&reference) else {
            return paystack_error(StatusCode::NOT_FOUND, "Transaction reference not found");
        };
        tx.reported_amount = body.amount;
        tx.reported_currency = body.currency;
    }
    let settled = if body.notify {
        sandbox.settle(&reference, &body.status)
    } else {
        sandbox
            .settle_quietly(&reference, &body.status)
            .map(|(tx, _)| tx)
    };
    match settled {
        Some(tx) => Json(tx.report()).into_response(),
        None => paystack_error(StatusCode::NOT_FOUND, "Transaction reference not found"),
    }
}

#[handler]
async fn stats(req: &Request, Data(sandbox): Data<&Sandbox>) -> Response {
    if !sandbox.authorized(req) {
        return unauthorized();
    }
    Json(sandbox.stats()).into_response()
}
