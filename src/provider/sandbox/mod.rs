//! The built-in sandbox provider: a simulator of both connectors' APIs that
//! stands in for the real providers in development, tests and load tests.
//! It speaks Paystack at its base and Flutterwave under `/flutterwave`; each
//! dialect has its own transactions, refunds, faults and counts.
//!
//! Paystack, at the base:
//! - `POST /transaction/initialize`, `GET /transaction/verify/{reference}`:
//!   Paystack's shapes, bearer secret key. Initialize is idempotent per
//!   reference (same parameters → the same transaction).
//! - `GET /checkout/{access_code}`: a page where a person clicks Pay or
//!   Decline; the form posts `outcome=success|failed` back to the same path,
//!   which redirects to the initialize's `callback_url` when it had one
//!   (`?trxref=…&reference=…`).
//! - `POST /refund`, `GET /refund/{id}`, `GET /refund?transaction=`:
//!   Paystack's refunds. A refund is `pending` until it settles — after
//!   the configured delay, or when a test settles it — and is then
//!   announced with a signed `refund.processed` / `refund.failed` webhook.
//! - Webhooks signed with `x-paystack-signature` (HMAC of the body with the
//!   secret key), posted to the configured webhook URL.
//!
//! Flutterwave (v3), under `/flutterwave` (its own file, `flutterwave.rs`):
//! - `POST /flutterwave/v3/payments` (amounts in major units, idempotent per
//!   `tx_ref`), `GET /flutterwave/v3/transactions/verify_by_reference?tx_ref=`,
//!   the same checkout page at `/flutterwave/checkout/{code}` (redirecting
//!   with `?status=successful|failed&tx_ref=…&transaction_id=…`),
//!   `POST /flutterwave/v3/transactions/{id}/refund`,
//!   `GET /flutterwave/v3/refunds/{id}`, `GET /flutterwave/v3/refunds?page=`.
//! - Webhooks `{"event": "charge.completed", "data": {…}}` with the header
//!   `verif-hash: <hash>`, where the hash is the sandbox's secret key (so
//!   `FLUTTERWAVE_WEBHOOK_HASH` defaults to the sandbox key), posted to the
//!   Paystack webhook URL with its last path segment replaced by
//!   `flutterwave` (`…/v1/webhooks/sandbox` → `…/v1/webhooks/flutterwave`).
//!   A cancelled checkout and refunds send none (Flutterwave's body is not
//!   signed, so payorch would only record them; reconciliation finds
//!   refunds settled).
//!
//! `/_control/…`, in each dialect (`/flutterwave/_control/…` for
//! Flutterwave): hooks for tests — force an outcome (and the amount the
//! provider will report), settle a refund, make the next N calls fail with
//! 500 or hang, count what was asked, and fire a burst of webhooks. The
//! base's hooks reach the Flutterwave state too when asked with
//! `"provider": "flutterwave"` in the body (faults, outcomes, refund
//! outcomes, bursts) or `?provider=flutterwave` (stats).
//!
//! State is in memory, bounded by [`MAX_TRANSACTIONS`] per dialect.

mod burst;
mod checkout;
mod flutterwave;
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
    web::{Data, Json, Path, Query},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::{config::Secret, provider::routing::ConnectorName};

/// Beyond this many transactions a dialect refuses new ones (429).
pub const MAX_TRANSACTIONS: usize = 1_000_000;

/// How long a "hang" fault holds a request: past any sane client timeout.
const HANG: Duration = Duration::from_secs(30);

/// One dialect's simulator; the Paystack one (what [`Sandbox::new`] makes)
/// carries the Flutterwave one and serves it under `/flutterwave`.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    /// Which provider this simulates: its paths, shapes, words and webhooks.
    dialect: ConnectorName,
    secret: Secret,
    /// Where settled transactions are announced, as the provider does.
    webhooks: Option<webhooks::WebhookSender>,
    /// Where the sandbox is reachable from a browser: checkout links start here.
    public_base: String,
    /// Refunds settle as processed this long after they are asked for;
    /// `None`: only when a test settles them.
    refund_settle: Option<Duration>,
    state: Mutex<State>,
    /// The Flutterwave dialect, on the Paystack sandbox only.
    flutterwave: Option<Sandbox>,
}

#[derive(Default)]
struct State {
    transactions: HashMap<String, Transaction>,
    by_access_code: HashMap<String, String>,
    /// Transaction id → reference (Flutterwave refunds name the id).
    by_id: HashMap<i64, String>,
    next_id: i64,
    refunds: HashMap<i64, refunds::SandboxRefund>,
    faults: HashMap<Operation, Fault>,
    stats: Stats,
}

impl State {
    fn insert(&mut self, tx: Transaction) {
        self.by_access_code
            .insert(tx.access_code.clone(), tx.reference.clone());
        self.by_id.insert(tx.id, tx.reference.clone());
        self.transactions.insert(tx.reference.clone(), tx);
        self.stats.transactions += 1;
    }
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

/// A transaction, in minor units and Paystack's status words whatever the
/// dialect; the Flutterwave dialect translates at its edge.
#[derive(Debug, Clone, Serialize)]
struct Transaction {
    id: i64,
    reference: String,
    amount: i64,
    currency: String,
    email: String,
    /// `ongoing` until the customer acts, then `success`, `failed` or
    /// `abandoned`.
    status: String,
    access_code: String,
    paid_at: Option<DateTime<Utc>>,
    gateway_response: String,
    /// What verify and webhooks report, when a test forces a different amount.
    reported_amount: Option<i64>,
    reported_currency: Option<String>,
    /// Where the checkout sends the customer once they decided (Paystack's
    /// `callback_url`, Flutterwave's `redirect_url`).
    callback_url: Option<String>,
}

impl Transaction {
    /// The transaction in Paystack's shape.
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

/// What an initialize asks for, in minor units, whichever dialect.
struct Opening {
    reference: String,
    amount: i64,
    currency: String,
    email: String,
    callback_url: Option<String>,
}

/// Why an initialize opens nothing.
enum OpenRefusal {
    /// The reference is held by a transaction with other parameters.
    Conflict,
    /// [`MAX_TRANSACTIONS`] reached.
    Full,
}

/// The Flutterwave sibling's webhook URL: `url` with its last path segment
/// replaced by `flutterwave`.
fn flutterwave_webhook_url(url: &str) -> String {
    if let Ok(mut parsed) = reqwest::Url::parse(url) {
        let replaced = parsed
            .path_segments_mut()
            .map(|mut segments| {
                segments.pop_if_empty().pop().push("flutterwave");
            })
            .is_ok();
        if replaced {
            return parsed.to_string();
        }
    }
    match url.rsplit_once('/') {
        Some((head, _)) => format!("{head}/flutterwave"),
        None => url.to_owned(),
    }
}

impl Sandbox {
    /// `webhook_url`: where to post the Paystack dialect's webhooks after a
    /// checkout (the Flutterwave dialect's go to the URL derived from it,
    /// see the module doc); `None` sends none.
    pub fn new(
        secret: Secret,
        public_base: impl Into<String>,
        webhook_url: Option<String>,
    ) -> Sandbox {
        let public_base = public_base.into().trim_end_matches('/').to_owned();
        let flutterwave = Sandbox::dialect(
            ConnectorName::Flutterwave,
            secret.clone(),
            format!("{public_base}/flutterwave"),
            webhook_url.as_deref().map(flutterwave_webhook_url),
            None,
        );
        Sandbox::dialect(
            ConnectorName::Paystack,
            secret,
            public_base,
            webhook_url,
            Some(flutterwave),
        )
    }

    fn dialect(
        dialect: ConnectorName,
        secret: Secret,
        public_base: String,
        webhook_url: Option<String>,
        flutterwave: Option<Sandbox>,
    ) -> Sandbox {
        // Distinct id ranges, so a log line names its dialect.
        let first_id = match dialect {
            ConnectorName::Paystack => 1_000_000,
            ConnectorName::Flutterwave => 7_000_000,
        };
        Sandbox {
            inner: Arc::new(Inner {
                dialect,
                webhooks: webhook_url
                    .map(|url| webhooks::WebhookSender::new(url, dialect, secret.clone())),
                secret,
                public_base,
                refund_settle: Some(refunds::DEFAULT_SETTLE),
                state: Mutex::new(State {
                    next_id: first_id,
                    ..State::default()
                }),
                flutterwave,
            }),
        }
    }

    /// Refunds settle after `settle`, or only by control call (`None`), in
    /// every dialect. Call before the sandbox is shared.
    pub fn with_refund_settle(mut self, settle: Option<Duration>) -> Sandbox {
        let inner =
            Arc::get_mut(&mut self.inner).expect("the sandbox is configured before it is shared");
        inner.refund_settle = settle;
        inner.flutterwave = inner
            .flutterwave
            .take()
            .map(|sibling| sibling.with_refund_settle(settle));
        self
    }

    /// This dialect's counts (Paystack's, for the sandbox [`Sandbox::new`]
    /// makes).
    pub fn stats(&self) -> Stats {
        self.lock().stats
    }

    /// The counts of the dialect `provider` speaks, if this sandbox has it.
    pub fn stats_of(&self, provider: ConnectorName) -> Option<Stats> {
        self.of(provider).map(Sandbox::stats)
    }

    /// The dialect `provider`: this one, or its Flutterwave sibling.
    fn of(&self, provider: ConnectorName) -> Option<&Sandbox> {
        if self.inner.dialect == provider {
            return Some(self);
        }
        self.inner
            .flutterwave
            .as_ref()
            .filter(|s| s.inner.dialect == provider)
    }

    /// The dialect a control call names (`None`: this one), if this
    /// sandbox reaches it.
    fn of_named(&self, provider: Option<&str>) -> Option<&Sandbox> {
        match provider {
            None => Some(self),
            Some(name) => self.of(name.parse().ok()?),
        }
    }

    /// The answer to a control call naming a dialect out of reach.
    fn unknown_provider(&self) -> Response {
        self.refuse(
            StatusCode::BAD_REQUEST,
            "provider: paystack or flutterwave (from the base)",
        )
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

    /// An error answer in this dialect's envelope.
    fn refuse(&self, status: StatusCode, message: &str) -> Response {
        match self.inner.dialect {
            ConnectorName::Paystack => paystack_error(status, message),
            ConnectorName::Flutterwave => flutterwave::error(status, message),
        }
    }

    fn unauthorized(&self) -> Response {
        self.refuse(StatusCode::UNAUTHORIZED, "Invalid key")
    }

    /// A transaction as this dialect reports it.
    fn report_response(&self, tx: &Transaction) -> Response {
        match self.inner.dialect {
            ConnectorName::Paystack => Json(tx.report()).into_response(),
            ConnectorName::Flutterwave => {
                Json(flutterwave::TransactionView::of(tx)).into_response()
            }
        }
    }

    /// The webhook announcing `tx`'s outcome in this dialect, if it has one.
    fn webhook_body(&self, tx: &Transaction) -> Option<String> {
        match self.inner.dialect {
            ConnectorName::Paystack => Some(tx.webhook_body().to_string()),
            ConnectorName::Flutterwave => flutterwave::webhook_body(tx),
        }
    }

    /// `tx`'s status in this dialect's words.
    fn status_word<'a>(&self, tx: &'a Transaction) -> &'a str {
        match self.inner.dialect {
            ConnectorName::Paystack => &tx.status,
            ConnectorName::Flutterwave => flutterwave::status_word(&tx.status),
        }
    }

    /// The sandbox's routes, to mount at its base path: this dialect's, and
    /// the Flutterwave sibling's under `/flutterwave`.
    pub fn routes(&self) -> impl Endpoint + use<> {
        let mut route = self.dialect_routes();
        if let Some(sibling) = &self.inner.flutterwave {
            route = route.nest(
                "/flutterwave",
                sibling.dialect_routes().data(sibling.clone()),
            );
        }
        route.data(self.clone())
    }

    /// This dialect's API, its checkout page and its test hooks.
    fn dialect_routes(&self) -> Route {
        let api = match self.inner.dialect {
            ConnectorName::Paystack => Route::new()
                .at("/transaction/initialize", poem::post(initialize))
                .at("/transaction/verify/:reference", poem::get(verify))
                .at("/refund", poem::post(refunds::create).get(refunds::list))
                .at("/refund/:id", poem::get(refunds::fetch)),
            ConnectorName::Flutterwave => flutterwave::api_routes(),
        };
        api.at(
            "/checkout/:access_code",
            poem::get(checkout::page).post(checkout::submit),
        )
        .at("/_control/refunds/:id/outcome", poem::post(refunds::force))
        .at("/_control/faults", poem::post(set_fault))
        .at(
            "/_control/transactions/:reference/outcome",
            poem::post(force_outcome),
        )
        .at("/_control/stats", poem::get(stats))
        .at("/_control/burst", poem::post(burst::burst))
    }

    /// Opens a transaction, or finds the one the reference already names
    /// when the parameters are the same (a repeated initialize).
    fn open(&self, opening: Opening) -> Result<Transaction, OpenRefusal> {
        let mut state = self.lock();
        if let Some(existing) = state.transactions.get(&opening.reference) {
            let same = existing.amount == opening.amount
                && existing.currency == opening.currency
                && existing.email == opening.email;
            return if same {
                Ok(existing.clone())
            } else {
                Err(OpenRefusal::Conflict)
            };
        }
        if state.transactions.len() >= MAX_TRANSACTIONS {
            return Err(OpenRefusal::Full);
        }
        state.next_id += 1;
        let tx = Transaction {
            id: state.next_id,
            reference: opening.reference,
            amount: opening.amount,
            currency: opening.currency,
            email: opening.email,
            status: "ongoing".into(),
            access_code: format!("ac_{}", uuid::Uuid::new_v4().simple()),
            paid_at: None,
            gateway_response: "Pending".into(),
            reported_amount: None,
            reported_currency: None,
            callback_url: opening.callback_url,
        };
        state.insert(tx.clone());
        Ok(tx)
    }

    /// Settles a transaction as the customer (or a test) decided, and
    /// announces it by webhook. Only an `ongoing` transaction changes: a
    /// provider does not re-decide.
    fn settle(&self, reference: &str, outcome: &str) -> Option<Transaction> {
        let (tx, changed) = self.settle_quietly(reference, outcome)?;
        if changed
            && let Some(sender) = &self.inner.webhooks
            && let Some(body) = self.webhook_body(&tx)
        {
            sender.send_in_background(body);
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

/// Applies a pending fault: `Some(response)` ends the request there.
async fn fault(sandbox: &Sandbox, operation: Operation) -> Option<Response> {
    match sandbox.take_fault(operation)? {
        FaultMode::Error => Some(sandbox.refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "sandbox: injected failure",
        )),
        FaultMode::Hang => {
            tokio::time::sleep(HANG).await;
            Some(sandbox.refuse(StatusCode::GATEWAY_TIMEOUT, "sandbox: injected hang"))
        }
        FaultMode::Duplicate => Some(sandbox.refuse(
            StatusCode::BAD_REQUEST,
            match sandbox.inner.dialect {
                ConnectorName::Paystack => "Duplicate Transaction Reference",
                ConnectorName::Flutterwave => "Duplicate transaction reference (tx_ref)",
            },
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
        return sandbox.unauthorized();
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
            paystack_error(StatusCode::BAD_REQUEST, "Duplicate Transaction Reference")
        }
        Err(OpenRefusal::Full) => paystack_error(StatusCode::TOO_MANY_REQUESTS, "sandbox is full"),
    }
}

#[handler]
async fn verify(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Path(reference): Path<String>,
) -> Response {
    if !sandbox.authorized(req) {
        return sandbox.unauthorized();
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
    /// `paystack` or `flutterwave`; default: the dialect asked.
    provider: Option<String>,
}

#[handler]
async fn set_fault(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Json(body): Json<FaultBody>,
) -> Response {
    if !sandbox.authorized(req) {
        return sandbox.unauthorized();
    }
    let Some(target) = sandbox.of_named(body.provider.as_deref()) else {
        return sandbox.unknown_provider();
    };
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
struct OutcomeBody {
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
        return sandbox.unauthorized();
    }
    let Some(sandbox) = sandbox.of_named(body.provider.as_deref()) else {
        return sandbox.unknown_provider();
    };
    if !matches!(body.status.as_str(), "success" | "failed" | "abandoned") {
        return sandbox.refuse(
            StatusCode::BAD_REQUEST,
            "status: success, failed or abandoned",
        );
    }
    {
        let mut state = sandbox.lock();
        let Some(tx) = state.transactions.get_mut(&reference) else {
            return sandbox.refuse(StatusCode::NOT_FOUND, "Transaction reference not found");
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
        Some(tx) => sandbox.report_response(&tx),
        None => sandbox.refuse(StatusCode::NOT_FOUND, "Transaction reference not found"),
    }
}

#[derive(Deserialize)]
struct StatsQuery {
    /// `paystack` or `flutterwave`; default: the dialect asked.
    provider: Option<String>,
}

#[handler]
async fn stats(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Query(query): Query<StatsQuery>,
) -> Response {
    if !sandbox.authorized(req) {
        return sandbox.unauthorized();
    }
    match sandbox.of_named(query.provider.as_deref()) {
        Some(target) => Json(target.stats()).into_response(),
        None => sandbox.unknown_provider(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flutterwave_webhooks_go_next_to_the_paystack_ones() {
        assert_eq!(
            flutterwave_webhook_url("http://h:8080/v1/webhooks/sandbox"),
            "http://h:8080/v1/webhooks/flutterwave"
        );
        assert_eq!(
            flutterwave_webhook_url("http://h/v1/webhooks/sandbox/"),
            "http://h/v1/webhooks/flutterwave"
        );
        assert_eq!(flutterwave_webhook_url("http://h"), "http://h/flutterwave");
        assert_eq!(
            flutterwave_webhook_url("no-scheme/x"),
            "no-scheme/flutterwave"
        );
    }

    #[test]
    fn the_base_reaches_either_dialect() {
        let sandbox = Sandbox::new(Secret::new("sk"), "http://h/sandbox/", None);
        assert_eq!(sandbox.inner.public_base, "http://h/sandbox");
        let flutterwave = sandbox.of(ConnectorName::Flutterwave).unwrap();
        assert_eq!(
            flutterwave.inner.public_base,
            "http://h/sandbox/flutterwave"
        );
        assert!(std::ptr::eq(
            sandbox.of(ConnectorName::Paystack).unwrap(),
            &sandbox
        ));
        assert!(flutterwave.of(ConnectorName::Paystack).is_none());
        assert!(sandbox.of_named(Some("stripe")).is_none());
        assert_eq!(
            sandbox.stats_of(ConnectorName::Flutterwave),
            Some(Stats::default())
        );
    }

    #[test]
    fn each_dialect_holds_its_own_transactions() {
        let sandbox = Sandbox::new(Secret::new("sk"), "http://h", None).with_refund_settle(None);
        let opening = || Opening {
            reference: "r-1".into(),
            amount: 500,
            currency: "NGN".into(),
            email: "a@b.c".into(),
            callback_url: None,
        };
        let first = sandbox.open(opening()).ok().unwrap();
        let again = sandbox.open(opening()).ok().unwrap();
        assert_eq!(first.access_code, again.access_code, "idempotent");
        let other = Opening {
            amount: 600,
            ..opening()
        };
        assert!(matches!(sandbox.open(other), Err(OpenRefusal::Conflict)));
        let flutterwave = sandbox.of(ConnectorName::Flutterwave).unwrap();
        let theirs = flutterwave.open(opening()).ok().unwrap();
        assert_ne!(theirs.id, first.id);
        assert_eq!(sandbox.stats().transactions, 1);
        assert_eq!(flutterwave.stats().transactions, 1);
        assert!(flutterwave.inner.refund_settle.is_none());
    }
}
