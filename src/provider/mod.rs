//! Payment connectors. [`PaymentProvider`] is what the rest of payorch
//! sees of one; [`paystack`] and [`flutterwave`] implement it, each in its
//! own file, for the real provider and for the built-in [`sandbox`], which
//! speaks both dialects. [`Connectors`] holds the enabled ones, each behind
//! its circuit [`breaker`], and the [`routing`] rules that choose one for a
//! payment. [`listing`] holds what a connector's paged listings give:
//! every transaction in a window, for settlement reconciliation.

pub mod breaker;
pub mod calls;
pub mod flutterwave;
pub mod listing;
pub mod paystack;
pub mod routing;
pub mod sandbox;
mod transport;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use self::listing::{ListedTransaction, Listing, MAX_LISTING_PAGES, MAX_REFUND_PAGES};
use self::{
    breaker::{Breaker, BreakerSettings, BreakerState},
    routing::{ConnectorName, Routing},
};
use crate::{
    domain::webhook::{Action, ProviderEvent},
    domain::{Amount, Currency, Email, PaymentEvent, Reference, RefundReport},
    secret::Secret,
};

/// What payorch asks a provider to start.
#[derive(Debug, Clone)]
pub struct InitializeRequest {
    pub reference: Reference,
    pub amount: Amount,
    pub currency: Currency,
    pub email: Email,
    pub callback_url: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

/// The provider's transaction, ready for the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub authorization_url: String,
    pub access_code: String,
}

/// How a connector reports a charge, in payorch's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeStatus {
    Succeeded,
    Failed,
    /// One declined attempt on a checkout that stays payable (Flutterwave:
    /// the customer may try again under the same reference). Not final:
    /// on a poll it reads as pending, and a webhook naming it is recorded,
    /// not applied.
    Declined,
    /// Not decided yet (or abandoned on the provider's page: the customer
    /// can still pay, so on a poll it is not final).
    Pending,
}

/// A charge as the provider reports it, in minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeReport {
    pub provider_transaction_id: Option<i64>,
    pub status: ChargeStatus,
    /// The provider's own status word, for logs.
    pub status_word: String,
    pub amount: i64,
    pub currency: String,
    pub gateway_response: Option<String>,
}

impl ChargeReport {
    /// The state-machine event this report means. An amount or currency
    /// that payorch cannot even represent is reported as a mismatch by
    /// the state machine, never trusted.
    pub fn event(&self) -> Result<PaymentEvent, ProviderError> {
        match self.status {
            ChargeStatus::Succeeded => {
                let amount = Amount::new(self.amount).map_err(|e| {
                    ProviderError::Unavailable(format!("provider reported a bad amount: {e}"))
                })?;
                let currency = Currency::parse(&self.currency).map_err(|e| {
                    ProviderError::Unavailable(format!("provider reported a bad currency: {e}"))
                })?;
                Ok(PaymentEvent::ChargeSucceeded { amount, currency })
            }
            ChargeStatus::Failed => Ok(PaymentEvent::ChargeFailed),
            ChargeStatus::Declined | ChargeStatus::Pending => Ok(PaymentEvent::ChargePending),
        }
    }
}

/// A refund payorch asks the provider to make.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    /// payorch's own refund id: sent along (Paystack's `merchant_note`) so
    /// the refund can be found again if its answer is lost.
    pub refund_id: Uuid,
    /// The payment's reference at the provider.
    pub reference: Reference,
    pub amount: Amount,
    pub currency: Currency,
    pub reason: Option<String>,
}

/// A refund as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRefund {
    pub provider_refund_id: String,
    pub report: RefundReport,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    /// The provider understood and refused (its 400 or 422): retrying will
    /// not help.
    #[error("rejected by the provider: {0}")]
    Rejected(String),
    /// The provider failed or could not be reached (5xx, connection), or
    /// refused us rather than the request (401, 403, 404: our configuration).
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// No answer within the configured timeout.
    #[error("provider timed out")]
    Timeout,
    /// The connector's circuit breaker is open: not asked at all.
    #[error("connector {0} is failing (its circuit breaker is open)")]
    CircuitOpen(&'static str),
}

impl ProviderError {
    /// Whether the connector itself is sick (unreachable, timing out,
    /// failing): what opens its breaker and makes initialize fail over. A
    /// refusal of the request is an answer, from a healthy connector.
    pub fn is_outage(&self) -> bool {
        !matches!(self, ProviderError::Rejected(_))
    }

    /// A short word for the audit trail and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::Rejected(_) => "rejected",
            ProviderError::Unavailable(_) => "unavailable",
            ProviderError::Timeout => "timeout",
            ProviderError::CircuitOpen(_) => "breaker_open",
        }
    }
}

/// A payment connector: one provider's API (initialize, verify, refunds)
/// and its webhooks (how they are authenticated, read and acted on).
/// Everything provider-specific — request shapes, amount units, status
/// words, the webhook proof — stays behind this trait, in the connector's
/// own file.
#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// The connector's name: stored on payments, used in webhook paths,
    /// routing rules and metrics.
    fn name(&self) -> &'static str;

    /// Starts a transaction. Safe to repeat with the same reference: the
    /// provider deduplicates on it.
    async fn initialize(&self, request: &InitializeRequest) -> Result<Checkout, ProviderError>;

    /// Asks for the current state of a transaction.
    async fn verify(&self, reference: &Reference) -> Result<ChargeReport, ProviderError>;

    /// Asks for the provider's transaction `transaction_id` (one attempt,
    /// where the provider keeps several under a reference), which a webhook
    /// named as one of `reference`'s. `None`: the provider reports it under
    /// another reference, so it is not this payment's. A connector without
    /// such a look-up asks by reference.
    async fn verify_transaction(
        &self,
        reference: &Reference,
        transaction_id: i64,
    ) -> Result<Option<ChargeReport>, ProviderError> {
        let _ = transaction_id;
        self.verify(reference).await.map(Some)
    }

    /// Asks for a refund. Never repeated by the client once the request may
    /// have reached the provider: a lost answer is found with
    /// [`Self::find_refund`], never by asking twice.
    async fn refund(&self, request: &RefundRequest) -> Result<ProviderRefund, ProviderError>;

    /// The provider's refund for payorch's `refund_id` on the transaction
    /// `reference`: fetched by the provider's id when known, otherwise found
    /// among the transaction's refunds, every page of them (at most
    /// [`MAX_REFUND_PAGES`]), by payorch's refund id sent along at
    /// creation. A refund the provider reports under another transaction,
    /// or with another note than payorch's id, is not this one. `None` if
    /// the provider has none; a search cut short fails (`Unavailable`),
    /// since "none" would fail a refund that may exist.
    async fn find_refund(
        &self,
        reference: &Reference,
        refund_id: Uuid,
        provider_refund_id: Option<&str>,
    ) -> Result<Option<ProviderRefund>, ProviderError>;

    /// Every transaction the provider opened in `[from, until)` (start
    /// included, end not, so consecutive windows never overlap), from every
    /// page of its listing, newest first, each once; a checkout with several
    /// attempts lists each (a paid attempt shows even when a later one was
    /// declined). Also says how many pages (provider calls) it took. The
    /// window is filtered exactly here whatever the provider's own
    /// granularity. A listing longer than [`MAX_LISTING_PAGES`] fails
    /// (`Unavailable`) rather than answer short: split the window. Each page
    /// has the connector's whole request timeout; calls through [`Guarded`]
    /// count toward its breaker as one call, like verify.
    async fn list_transactions(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Listing, ProviderError>;

    /// The request header that carries a webhook's proof of origin.
    fn webhook_header(&self) -> &'static str;

    /// Whether `proof` (the [`Self::webhook_header`] value) proves that
    /// `body` comes from the provider. Compared in constant time.
    fn webhook_authentic(&self, proof: Option<&str>, body: &[u8]) -> bool;

    /// Reads an authentic webhook body; `Err` says why it cannot be used.
    fn parse_webhook(&self, body: &[u8]) -> Result<ProviderEvent, String>;

    /// What an event (as [`Self::parse_webhook`] read it) asks of payorch,
    /// or why it cannot be used (it is then parked for an operator).
    fn webhook_action(&self, event: &ProviderEvent) -> Result<Action, String>;
}

/// A connector behind its circuit breaker: every call asks the breaker
/// first and tells it how the call went.
pub struct Guarded {
    client: Arc<dyn PaymentProvider>,
    breaker: Breaker,
    /// Where its calls are recorded: set when it joins its [`Connectors`].
    calls: std::sync::OnceLock<Arc<calls::CallLog>>,
}

impl Guarded {
    pub fn new(client: Arc<dyn PaymentProvider>, settings: BreakerSettings) -> Guarded {
        let breaker = Breaker::new(client.name(), settings);
        Guarded {
            client,
            breaker,
            calls: std::sync::OnceLock::new(),
        }
    }

    pub fn breaker(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Whether its breaker would refuse a call now.
    pub fn refuses(&self) -> bool {
        self.breaker.refuses()
    }

    /// Runs `call` (the `operation`, about the payment `reference`) if the
    /// breaker lets it, and records how it went.
    async fn guard<T>(
        &self,
        operation: &'static str,
        reference: Option<&Reference>,
        call: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let started_at = Utc::now();
        let Some(permit) = self.breaker.permit() else {
            let refused = ProviderError::CircuitOpen(self.client.name());
            self.record(
                operation,
                reference,
                started_at,
                Duration::ZERO,
                Err(refused.clone()),
            );
            return Err(refused);
        };
        let started = std::time::Instant::now();
        let result = call.await;
        let spent = started.elapsed();
        crate::timing::RequestClock::add_provider(spent);
        permit.record(!result.as_ref().is_err_and(ProviderError::is_outage));
        let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
        self.record(operation, reference, started_at, spent, outcome);
        result
    }

    fn record(
        &self,
        operation: &'static str,
        reference: Option<&Reference>,
        started_at: DateTime<Utc>,
        duration: Duration,
        outcome: Result<(), ProviderError>,
    ) {
        if let Some(log) = self.calls.get() {
            log.add(calls::Call {
                connector: self.client.name(),
                operation,
                reference: reference.map(|r| r.as_str().to_owned()),
                started_at,
                duration,
                outcome,
            });
        }
    }
}

#[async_trait]
impl PaymentProvider for Guarded {
    fn name(&self) -> &'static str {
        self.client.name()
    }

    async fn initialize(&self, request: &InitializeRequest) -> Result<Checkout, ProviderError> {
        self.guard(
            "initialize",
            Some(&request.reference),
            self.client.initialize(request),
        )
        .await
    }

    async fn verify(&self, reference: &Reference) -> Result<ChargeReport, ProviderError> {
        self.guard("verify", Some(reference), self.client.verify(reference))
            .await
    }

    async fn verify_transaction(
        &self,
        reference: &Reference,
        transaction_id: i64,
    ) -> Result<Option<ChargeReport>, ProviderError> {
        self.guard(
            "verify",
            Some(reference),
            self.client.verify_transaction(reference, transaction_id),
        )
        .await
    }

    async fn refund(&self, request: &RefundRequest) -> Result<ProviderRefund, ProviderError> {
        self.guard(
            "refund",
            Some(&request.reference),
            self.client.refund(request),
        )
        .await
    }

    async fn find_refund(
        &self,
        reference: &Reference,
        refund_id: Uuid,
        provider_refund_id: Option<&str>,
    ) -> Result<Option<ProviderRefund>, ProviderError> {
        self.guard(
            "find_refund",
            Some(reference),
            self.client
                .find_refund(reference, refund_id, provider_refund_id),
        )
        .await
    }

    async fn list_transactions(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Listing, ProviderError> {
        self.guard(
            "list_transactions",
            None,
            self.client.list_transactions(from, until),
        )
        .await
    }

    fn webhook_header(&self) -> &'static str {
        self.client.webhook_header()
    }

    fn webhook_authentic(&self, proof: Option<&str>, body: &[u8]) -> bool {
        self.client.webhook_authentic(proof, body)
    }

    fn parse_webhook(&self, body: &[u8]) -> Result<ProviderEvent, String> {
        self.client.parse_webhook(body)
    }

    fn webhook_action(&self, event: &ProviderEvent) -> Result<Action, String> {
        self.client.webhook_action(event)
    }
}

/// The enabled connectors, each behind its breaker, and the routing rules
/// that choose between them. Cheap to share (`Arc`).
pub struct Connectors {
    /// In `PAYORCH_PROVIDERS` order.
    enabled: Vec<(ConnectorName, Arc<Guarded>)>,
    routing: Routing,
    calls: Arc<calls::CallLog>,
}

impl Connectors {
    pub fn new(enabled: Vec<Arc<Guarded>>, routing: Routing) -> Connectors {
        let enabled = enabled
            .into_iter()
            .map(|c| {
                let name = ConnectorName::of_stored(c.name()).expect("connectors have known names");
                (name, c)
            })
            .collect::<Vec<_>>();
        // Every failover a route can make exists as a series from start.
        for (from, _) in &enabled {
            for (to, _) in enabled.iter().filter(|(to, _)| to != from) {
                metrics::counter!(
                    "payorch_connector_failovers_total",
                    "from" => from.as_str(),
                    "to" => to.as_str(),
                )
                .increment(0);
            }
        }
        let calls = Arc::new(calls::CallLog::default());
        for (_, connector) in &enabled {
            let _ = connector.calls.set(calls.clone());
        }
        Connectors {
            enabled,
            routing,
            calls,
        }
    }

    /// What the connectors' calls did.
    pub fn calls(&self) -> &calls::CallLog {
        &self.calls
    }

    /// The routing rules.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// One client alone, behind a breaker with the default settings, and
    /// no routing rules: for embedding and tests.
    pub fn single(client: Arc<dyn PaymentProvider>) -> Arc<Connectors> {
        let guarded = Guarded::new(client, BreakerSettings::default());
        Arc::new(Connectors::new(vec![Arc::new(guarded)], Routing::default()))
    }

    /// The connector a payment or webhook path names (`sandbox` is the
    /// Paystack dialect), if it is enabled.
    pub fn get(&self, name: &str) -> Option<Arc<dyn PaymentProvider>> {
        let wanted = ConnectorName::of_stored(name)?;
        self.enabled
            .iter()
            .find(|(n, _)| *n == wanted)
            .map(|(_, c)| c.clone() as Arc<dyn PaymentProvider>)
    }

    /// Every enabled connector, in `PAYORCH_PROVIDERS` order.
    pub fn enabled(&self) -> impl Iterator<Item = (ConnectorName, Arc<dyn PaymentProvider>)> + '_ {
        self.enabled
            .iter()
            .map(|(n, c)| (*n, c.clone() as Arc<dyn PaymentProvider>))
    }

    /// Whether `name` is enabled.
    pub fn is_enabled(&self, name: ConnectorName) -> bool {
        self.enabled.iter().any(|(n, _)| *n == name)
    }

    /// The connectors to try for a new payment in `currency`, first choice
    /// first; a pinned connector alone. Connectors whose breaker refuses
    /// calls go last, in their order: a payment is opened where it can be
    /// without first being sent to a connector known to be down.
    pub fn route(&self, currency: Currency, pinned: Option<ConnectorName>) -> Vec<ConnectorName> {
        if let Some(pinned) = pinned {
            return vec![pinned];
        }
        let names: Vec<ConnectorName> = self.enabled.iter().map(|(n, _)| *n).collect();
        let mut order: Vec<ConnectorName> = self
            .routing
            .route(currency, &names, &mut rand::rng())
            .into_iter()
            .filter(|n| names.contains(n))
            .collect();
        order.sort_by_key(|name| self.enabled.iter().any(|(n, c)| n == name && c.refuses()));
        order
    }

    /// Each enabled connector's breaker state, for `/readyz`.
    pub fn breakers(&self) -> Vec<(&'static str, BreakerState)> {
        self.enabled
            .iter()
            .map(|(n, c)| (n.as_str(), c.breaker()))
            .collect()
    }
}

/// What the connectors are made from: the configuration's connector
/// variables (`From<&Config>` is in `config`, which sits above this module).
#[derive(Debug, Clone)]
pub struct ConnectorSettings {
    /// Real providers (`PAYORCH_PROVIDER=paystack`): every enabled
    /// connector has its base URL; otherwise a missing one is the sandbox.
    pub live: bool,
    /// The enabled connectors, in order.
    pub providers: Vec<ConnectorName>,
    pub routing: Routing,
    pub breaker: BreakerSettings,
    /// Budget for one provider call, retries included.
    pub timeout: Duration,
    /// Where `payorch sandbox` listens, when it is not mounted.
    pub sandbox_addr: SocketAddr,
    pub paystack_base_url: Option<reqwest::Url>,
    pub flutterwave_base_url: Option<reqwest::Url>,
    pub flutterwave_secret_key: Option<Secret>,
    pub flutterwave_webhook_hash: Option<Secret>,
}

/// The connectors `cfg` enables (a `&Config`, or its [`ConnectorSettings`]),
/// calling the real providers or the sandbox.
/// `secret`: the Paystack dialect's key (configured or the sandbox's);
/// `sandbox_base`: where the sandbox listens when it is mounted on the
/// API's own listener.
pub fn from_config(
    cfg: impl Into<ConnectorSettings>,
    secret: Secret,
    sandbox_base: Option<reqwest::Url>,
) -> Arc<Connectors> {
    let cfg: ConnectorSettings = cfg.into();
    let sandbox = || {
        sandbox_base.clone().unwrap_or_else(|| {
            format!("http://{}/", cfg.sandbox_addr)
                .parse()
                .expect("a socket address makes a URL")
        })
    };
    let live = cfg.live;
    let enabled = cfg
        .providers
        .iter()
        .map(|name| {
            let client: Arc<dyn PaymentProvider> = match name {
                ConnectorName::Paystack => Arc::new(paystack::PaystackClient::new(
                    "paystack",
                    cfg.paystack_base_url.clone().unwrap_or_else(|| {
                        assert!(!live, "config requires PAYSTACK_BASE_URL");
                        sandbox()
                    }),
                    secret.clone(),
                    cfg.timeout,
                )),
                ConnectorName::Flutterwave => Arc::new(flutterwave::FlutterwaveClient::new(
                    cfg.flutterwave_base_url.clone().unwrap_or_else(|| {
                        assert!(!live, "config requires FLUTTERWAVE_BASE_URL");
                        sandbox()
                            .join("flutterwave/")
                            .expect("a relative path joins")
                    }),
                    cfg.flutterwave_secret_key
                        .clone()
                        .unwrap_or_else(|| secret.clone()),
                    cfg.flutterwave_webhook_hash
                        .clone()
                        .unwrap_or_else(|| secret.clone()),
                    cfg.timeout,
                )),
            };
            Arc::new(Guarded::new(client, cfg.breaker))
        })
        .collect();
    Arc::new(Connectors::new(enabled, cfg.routing.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: ChargeStatus) -> ChargeReport {
        ChargeReport {
            provider_transaction_id: Some(1),
            status,
            status_word: String::new(),
            amount: 0,
            currency: "NGN".into(),
            gateway_response: None,
        }
    }

    #[test]
    fn a_declined_attempt_reads_as_pending_never_as_failed() {
        assert_eq!(
            report(ChargeStatus::Declined).event(),
            Ok(PaymentEvent::ChargePending)
        );
        assert_eq!(
            report(ChargeStatus::Failed).event(),
            Ok(PaymentEvent::ChargeFailed)
        );
        assert_eq!(
            report(ChargeStatus::Pending).event(),
            Ok(PaymentEvent::ChargePending)
        );
    }
}
