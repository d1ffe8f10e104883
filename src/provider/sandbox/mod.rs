//! The built-in sandbox provider: a simulator of both connectors' APIs that
//! stands in for the real providers in development, tests and load tests.
//! It speaks Paystack at its base and Flutterwave under `/flutterwave`; each
//! dialect has its own transactions, refunds, faults and counts.
//!
//! Paystack, at the base (`paystack.rs`, its refunds in `refunds.rs`):
//! - `POST /transaction/initialize`, `GET /transaction/verify/{reference}`:
//!   Paystack's shapes, bearer secret key. Initialize is idempotent per
//!   reference (same parameters → the same transaction).
//! - `GET /checkout/{access_code}`: a page where a person clicks Pay or
//!   Decline; the form posts `outcome=success|failed` back to the same path,
//!   which redirects to the initialize's `callback_url` when it had one
//!   (`?trxref=…&reference=…`).
//! - `POST /refund`, `GET /refund/{id}`,
//!   `GET /refund?transaction=&page=&perPage=` (paged as Paystack's,
//!   `refund_listing.rs`): Paystack's refunds. A refund is `pending` until
//!   it settles — after the configured delay, or when a test settles it —
//!   and is then announced with a signed `refund.processed` /
//!   `refund.failed` webhook.
//! - `GET /transaction?from=&to=&page=&perPage=`: transactions opened in a
//!   date range, newest first, paged (`listing.rs`, as for Flutterwave's
//!   `GET /flutterwave/v3/transactions?from=&to=&page=`, which lists each
//!   attempt on a checkout as its own row).
//! - Webhooks signed with `x-paystack-signature` (HMAC of the body with the
//!   secret key), posted to the configured webhook URL.
//!
//! Flutterwave (v3), under `/flutterwave` (its own file, `flutterwave.rs`):
//! - `POST /flutterwave/v3/payments` (amounts in major units, idempotent per
//!   `tx_ref`), `GET /flutterwave/v3/transactions/verify_by_reference?tx_ref=`
//!   (the latest attempt), `GET /flutterwave/v3/transactions/{id}/verify`
//!   (one attempt), the same checkout page at `/flutterwave/checkout/{code}`
//!   (redirecting with `?status=successful|failed&tx_ref=…&transaction_id=…`),
//!   where each Pay or Decline is an attempt with its own id under the same
//!   `tx_ref` and a Decline leaves the checkout payable,
//!   `POST /flutterwave/v3/transactions/{id}/refund`,
//!   `GET /flutterwave/v3/refunds/{id}`,
//!   `GET /flutterwave/v3/refunds?id=&page=` (paged as Flutterwave's).
//! - Webhooks `{"event": "charge.completed", "data": {…}}` with the header
//!   `verif-hash: <hash>`, where the hash is the sandbox's secret key (so
//!   `FLUTTERWAVE_WEBHOOK_HASH` defaults to the sandbox key), posted to the
//!   Paystack webhook URL with its last path segment replaced by
//!   `flutterwave` (`…/v1/webhooks/sandbox` → `…/v1/webhooks/flutterwave`).
//!   A cancelled checkout and refunds send none (Flutterwave's body is not
//!   signed, so payorch would only record them; reconciliation finds
//!   refunds settled).
//!
//! `/_control/…` (`control.rs`), in each dialect (`/flutterwave/_control/…`
//! for Flutterwave): hooks for tests — force an outcome (and the amount the
//! provider will report), settle a refund, make the next N calls fail with
//! 500 or hang, or do their work and lose the answer (`error_after`), or
//! miss a refund that exists (`not_found` on refund look-ups), count what
//! was asked, fire a burst of webhooks, and list everything held
//! (`ledger.rs`: the provider's truth tests compare payorch against). The
//! base's hooks reach the Flutterwave state too when asked with
//! `"provider": "flutterwave"` in the body (faults, outcomes, refund
//! outcomes, bursts) or `?provider=flutterwave` (stats, ledger).
//!
//! State is in memory (`state.rs`), bounded by [`MAX_TRANSACTIONS`] per
//! dialect. Every API call but the checkout passes one gate first
//! (`admission.rs`): the key, a count in [`Stats`], then any injected fault.

mod admission;
mod burst;
mod checkout;
mod control;
mod flutterwave;
mod ledger;
mod listing;
mod paystack;
mod refund_listing;
mod refunds;
mod state;
mod webhooks;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use poem::{Endpoint, EndpointExt, IntoResponse, Response, Route, http::StatusCode, web::Json};

pub use self::state::{FaultMode, Operation, Stats};
use self::state::{State, Transaction};
use crate::{provider::routing::ConnectorName, secret::Secret};

/// Beyond this many transactions a dialect refuses new ones (429).
pub const MAX_TRANSACTIONS: usize = 1_000_000;

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

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An error answer in this dialect's envelope.
    fn refuse(&self, status: StatusCode, message: &str) -> Response {
        match self.inner.dialect {
            ConnectorName::Paystack => paystack::error(status, message),
            ConnectorName::Flutterwave => flutterwave::error(status, message),
        }
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

    /// `tx`'s status in this dialect's words, as its verify reports it
    /// (in Flutterwave's, the latest attempt's).
    fn status_word<'a>(&self, tx: &'a Transaction) -> &'a str {
        match self.inner.dialect {
            ConnectorName::Paystack => &tx.status,
            ConnectorName::Flutterwave => flutterwave::reported_status(tx),
        }
    }

    /// A refund's status (stored in Paystack's words) in this dialect's words.
    fn refund_word<'a>(&self, status: &'a str) -> &'a str {
        match self.inner.dialect {
            ConnectorName::Paystack => status,
            ConnectorName::Flutterwave => flutterwave::refund_word(status),
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
            ConnectorName::Paystack => paystack::api_routes()
                .at("/transaction", poem::get(listing::paystack_transactions))
                .at(
                    "/refund",
                    poem::post(paystack::create_refund).get(refund_listing::paystack_refunds),
                ),
            ConnectorName::Flutterwave => flutterwave::api_routes()
                .at(
                    "/v3/transactions",
                    poem::get(listing::flutterwave_transactions),
                )
                .at(
                    "/v3/refunds",
                    poem::get(refund_listing::flutterwave_refunds),
                ),
        };
        api.at(
            "/checkout/:access_code",
            poem::get(checkout::page).post(checkout::submit),
        )
        .at(
            "/_control/refunds/:id/outcome",
            poem::post(control::force_refund),
        )
        .at("/_control/faults", poem::post(control::set_fault))
        .at(
            "/_control/transactions/:reference/outcome",
            poem::post(control::force_outcome),
        )
        .at("/_control/stats", poem::get(control::stats))
        .at("/_control/ledger", poem::get(ledger::ledger))
        .at("/_control/burst", poem::post(burst::burst))
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
        assert_eq!(flutterwave.stats(), Stats::default());
    }
}
