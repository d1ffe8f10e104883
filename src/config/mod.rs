//! The one typed configuration, read from the environment once at startup.
//!
//! Every variable of DESIGN.md's table has its default here. A bad value is a
//! [`ConfigError`] that names the variable; `main` prints it as one line and
//! exits with status 2. Secrets are held in [`Secret`], which never prints.
//!
//! [`Config`] and its error are here; reading them is split by concern:
//! [`env`] (parsing one variable), [`load`] (every variable, in order),
//! [`connectors`] (provider, connectors, routing, breaker), [`limits`]
//! (time limits checked against each other) and [`database_url`].
//! The configuration sits above the modules whose settings it holds
//! (provider, rate limits, queue retry policies, the event proxy); they do
//! not import it.

mod connectors;
mod database_url;
mod env;
mod event_proxy;
mod limits;
mod load;

use std::{net::SocketAddr, time::Duration};

use ipnet::IpNet;
use reqwest::Url;

pub use self::{
    connectors::{DEFAULT_SANDBOX_WEBHOOK_URL, ProviderKind, SANDBOX_SECRET_KEY},
    database_url::DatabaseUrl,
    event_proxy::EventProxy,
    load::LogFormat,
};
use crate::sealing::SealingKey;
pub use crate::secret::Secret;
use crate::{
    provider::{
        breaker::BreakerSettings,
        routing::{ConnectorName, Routing},
    },
    ratelimit::RateLimits,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub http_addr: SocketAddr,
    pub database_url: DatabaseUrl,
    pub redis_url: Option<Secret>,
    pub amqp_url: Option<Secret>,
    pub provider: ProviderKind,
    /// `PAYORCH_PROVIDER` was set (see [`Config::check_provider_named`]).
    pub provider_named: bool,
    /// `None`: the sandbox mounted on the API's own listener at `/sandbox`.
    pub paystack_base_url: Option<Url>,
    /// `None` only with the sandbox: the installation's generated key
    /// ([`crate::store::settings::sandbox_secret`]).
    pub paystack_secret_key: Option<Secret>,
    /// `PAYORCH_PROVIDERS`: the enabled connectors, in order.
    pub providers: Vec<ConnectorName>,
    /// `PAYORCH_ROUTING`, checked against [`Config::providers`].
    pub routing: Routing,
    /// `None`: the sandbox's Flutterwave dialect.
    pub flutterwave_base_url: Option<Url>,
    /// `None` only with the sandbox: the Paystack dialect's key.
    pub flutterwave_secret_key: Option<Secret>,
    /// `verif-hash` of Flutterwave's webhooks. `None` only with the
    /// sandbox: the Paystack dialect's key.
    pub flutterwave_webhook_hash: Option<Secret>,
    /// `PAYORCH_BREAKER_FAILURES`, `PAYORCH_BREAKER_OPEN_MS`.
    pub breaker: BreakerSettings,
    pub rate_limits: RateLimits,
    pub trusted_proxies: Vec<IpNet>,
    pub queue_prefix: String,
    pub redis_prefix: String,
    pub sandbox_addr: SocketAddr,
    /// Where the sandbox posts its webhooks. Unset: the API's own
    /// `/v1/webhooks/sandbox` when mounted in `serve`, otherwise
    /// [`DEFAULT_SANDBOX_WEBHOOK_URL`].
    pub sandbox_webhook_url: Option<Url>,
    pub metrics_addr: Option<SocketAddr>,
    pub auto_migrate: bool,
    pub log_format: LogFormat,
    /// Upper bound for one rate-limit call to Redis before the local limiter decides.
    pub redis_timeout: Duration,
    /// How long a request may wait for a pooled database connection.
    pub db_acquire_timeout: Duration,
    pub db_max_connections: u32,
    /// Budget for one provider call, retries included.
    pub provider_timeout: Duration,
    /// How long an in-flight Idempotency-Key blocks a concurrent retry (409);
    /// after a crash the key is usable again once this has passed.
    pub idempotency_lock: Duration,
    /// A payment actor with no message for this long stops and frees its memory.
    pub actor_idle: Duration,
    /// Messages one payment actor may hold; beyond it the API answers 503.
    pub actor_mailbox: usize,
    /// How long a known-good API key is trusted without a lookup (and so
    /// the longest a revoked key keeps working).
    pub auth_cache_ttl: Duration,
    /// Delays between webhook processing attempts; after the last, the
    /// message is parked in the dead-letter queue.
    pub retry_policy: crate::queue::RetryPolicy,
    /// Delays between merchant event delivery attempts (each lengthened by
    /// up to 20 % at random); after the last, the delivery is `failed`.
    pub event_retry_policy: crate::queue::RetryPolicy,
    /// Budget for one delivery attempt to a merchant endpoint.
    pub event_timeout: Duration,
    /// `PAYORCH_ALLOW_PRIVATE_ENDPOINTS`: endpoints on loopback and private
    /// networks are allowed (see [`Config::allows_private_endpoints`]).
    pub allow_private_endpoints: bool,
    /// `PAYORCH_EVENT_PROXY`: the proxy merchant event deliveries go
    /// through; `None`: they connect directly (never through a proxy of
    /// the environment).
    pub event_proxy: Option<EventProxy>,
    /// `PAYORCH_SECRETS_KEY`: seals webhook endpoint secrets at rest.
    /// `None`: embedded mode's key file ([`Config::embedded_key_file`]);
    /// outside embedded mode, [`Config::check_secrets_key`] refuses it.
    pub secrets_key: Option<SealingKey>,
    /// `PAYORCH_SECRETS_KEY_PREVIOUS`: the key being retired, still
    /// opening what it sealed until `payorch secrets rotate` has run.
    pub secrets_key_previous: Option<SealingKey>,
    /// Unacknowledged messages one worker holds at most.
    pub worker_prefetch: u16,
    /// `PAYORCH_WORKER_BATCH`: webhooks a worker applies in one
    /// transaction at most (RabbitMQ; at most the prefetch).
    pub worker_batch: usize,
    /// Reconciliation: payments pending (and refunds pending) longer than
    /// this are asked about at the provider.
    pub reconcile_after: Duration,
    /// A payment pending longer than this, and not paid at the provider,
    /// is abandoned.
    pub abandon_after: Duration,
    /// `PAYORCH_REFUND_REVIEW_AFTER_S`: a sent refund the provider still
    /// cannot find this long after it was created goes to review (until
    /// then it is looked up again at every sweep; it is never failed).
    pub refund_review_after: Duration,
    /// `PAYORCH_LATE_SUCCESS`: what payorch does with a payment paid after
    /// it was `failed` or `abandoned` (a review, or a review and a refund).
    pub late_success: crate::domain::LateSuccess,
    /// `PAYORCH_SETTLEMENT_EVERY_S`: how often a worker runs a settlement
    /// pass over the connectors' transaction listings.
    pub settlement_every: Duration,
    /// How often a worker runs a reconciliation sweep.
    pub reconcile_every: Duration,
    /// Processed provider webhooks are kept this long.
    pub webhook_retention: Duration,
    /// Merchant events (and their delivery attempts) are kept this long.
    pub event_retention: Duration,
    /// The sandbox settles a refund this long after it is asked for;
    /// `None` (0): only when a test settles it.
    pub sandbox_refund_settle: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl Config {
    /// Whether merchant endpoints may resolve to loopback, private,
    /// link-local or unspecified addresses: when allowed, and always in
    /// embedded mode (a developer's receiver runs on their machine).
    pub fn allows_private_endpoints(&self) -> bool {
        self.allow_private_endpoints || self.is_embedded()
    }

    /// Outside embedded mode, `PAYORCH_SECRETS_KEY` must be set: a key
    /// that lives only beside the database would travel with its backups.
    pub fn check_secrets_key(&self) -> Result<(), ConfigError> {
        if self.secrets_key.is_some() || self.is_embedded() {
            return Ok(());
        }
        Err(ConfigError {
            var: "PAYORCH_SECRETS_KEY",
            message: "must be set when PostgreSQL, Redis or RabbitMQ is configured: 32 random \
                      bytes, base64 (`openssl rand -base64 32`); it seals webhook endpoint \
                      secrets at rest"
                .into(),
        })
    }

    /// Embedded mode's secrets key: a file beside the SQLite database
    /// (`payorch.db` → `payorch.db.secrets-key`).
    pub fn embedded_key_file(&self) -> std::path::PathBuf {
        let database = self.database_url.location();
        let database = if database.is_empty() || database.starts_with(':') {
            "payorch.db".to_owned()
        } else {
            database
        };
        std::path::PathBuf::from(format!("{database}.secrets-key"))
    }

    /// No outside system configured: SQLite, in-process queue, local limiter,
    /// sandbox provider. `serve` says so and creates a dev API key.
    pub fn is_embedded(&self) -> bool {
        self.database_url.is_sqlite() && self.redis_url.is_none() && self.amqp_url.is_none()
    }
}

#[cfg(test)]
mod test_vars {
    use std::collections::HashMap;

    use super::{Config, ConfigError};

    /// The configuration from exactly `vars`.
    pub(super) fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }
}
