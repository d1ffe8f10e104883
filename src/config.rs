//! The one typed configuration, read from the environment once at startup.
//!
//! Every variable of DESIGN.md's table has its default here. A bad value is a
//! [`ConfigError`] that names the variable; `main` prints it as one line and
//! exits with status 2. Secrets are held in [`Secret`], which never prints.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use ipnet::IpNet;
use reqwest::Url;

use crate::{
    provider::{
        breaker::BreakerSettings,
        routing::{ConnectorName, Routing},
    },
    ratelimit::RateLimits,
};

/// A value that must never reach a log line or a response.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where `payorch sandbox` posts webhooks unless told otherwise.
pub const DEFAULT_SANDBOX_WEBHOOK_URL: &str = "http://127.0.0.1:8080/v1/webhooks/sandbox";

/// A well-known sandbox key for tests and scripts, which configure it
/// themselves (`PAYSTACK_SECRET_KEY`). Nothing uses it by default: without a
/// configured key the sandbox uses one generated for the installation.
pub const SANDBOX_SECRET_KEY: &str = "sk_test_payorch_sandbox";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Sandbox,
    Paystack,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Sandbox => "sandbox",
            ProviderKind::Paystack => "paystack",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A database URL whose password is hidden when printed.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }

    /// `host:port` for Postgres or the file for SQLite: what an operator needs
    /// to see in an error, without the credentials.
    pub fn location(&self) -> String {
        match Url::parse(&self.0) {
            Ok(url) if !self.is_sqlite() => format!(
                "{}:{}",
                url.host_str().unwrap_or("localhost"),
                url.port().unwrap_or(5432)
            ),
            _ => self
                .0
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:")
                .split('?')
                .next()
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.location())
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("sqlite:") {
            return Ok(DatabaseUrl(s.to_owned()));
        }
        let url = Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
        match url.scheme() {
            "postgres" | "postgresql" if url.host_str().is_some() => Ok(DatabaseUrl(s.to_owned())),
            "postgres" | "postgresql" => Err("a postgres URL needs a host".into()),
            other => Err(format!(
                "unsupported scheme `{other}` (use postgres://… or sqlite://…)"
            )),
        }
    }
}

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
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests can pass their own values.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env(&lookup);
        let provider_named = env.raw("PAYORCH_PROVIDER").is_some();
        let provider = match env.raw("PAYORCH_PROVIDER").as_deref() {
            None | Some("sandbox") => ProviderKind::Sandbox,
            Some("paystack") => ProviderKind::Paystack,
            Some(other) => {
                return Err(ConfigError {
                    var: "PAYORCH_PROVIDER",
                    message: format!("`{other}` is not one of sandbox, paystack"),
                });
            }
        };
        let providers = env.list::<ConnectorName>("PAYORCH_PROVIDERS")?;
        let providers = if providers.is_empty() {
            vec![ConnectorName::Paystack]
        } else {
            providers
        };
        if let Some(twice) = providers
            .iter()
            .enumerate()
            .find_map(|(i, c)| providers[..i].contains(c).then_some(c))
        {
            return Err(ConfigError {
                var: "PAYORCH_PROVIDERS",
                message: format!("`{twice}` is listed twice"),
            });
        }
        let routing: Routing = env.or("PAYORCH_ROUTING", "")?;
        if let Some(disabled) = routing.unknown_to(&providers) {
            return Err(ConfigError {
                var: "PAYORCH_ROUTING",
                message: format!("names `{disabled}`, which PAYORCH_PROVIDERS does not enable"),
            });
        }
        // With real providers, every enabled connector needs its URL and keys.
        let live = provider == ProviderKind::Paystack;
        let required = |connector: ConnectorName, var: &'static str| -> Result<(), ConfigError> {
            if live && providers.contains(&connector) && env.raw(var).is_none() {
                return Err(ConfigError {
                    var,
                    message: format!(
                        "required when PAYORCH_PROVIDER=paystack enables {connector} (PAYORCH_PROVIDERS)"
                    ),
                });
            }
            Ok(())
        };
        required(ConnectorName::Paystack, "PAYSTACK_BASE_URL")?;
        required(ConnectorName::Paystack, "PAYSTACK_SECRET_KEY")?;
        required(ConnectorName::Flutterwave, "FLUTTERWAVE_BASE_URL")?;
        required(ConnectorName::Flutterwave, "FLUTTERWAVE_SECRET_KEY")?;
        required(ConnectorName::Flutterwave, "FLUTTERWAVE_WEBHOOK_HASH")?;
        let paystack_base_url: Option<Url> = env.optional("PAYSTACK_BASE_URL")?;
        let flutterwave_base_url: Option<Url> = env.optional("FLUTTERWAVE_BASE_URL")?;
        let paystack_secret_key = env.secret("PAYSTACK_SECRET_KEY")?;
        let flutterwave_secret_key = env.secret("FLUTTERWAVE_SECRET_KEY")?;
        let flutterwave_webhook_hash = env.secret("FLUTTERWAVE_WEBHOOK_HASH")?;
        let breaker = BreakerSettings {
            failures: env.or("PAYORCH_BREAKER_FAILURES", "5")?,
            open_for: Duration::from_millis(env.or("PAYORCH_BREAKER_OPEN_MS", "5000")?),
        };
        if breaker.failures == 0 {
            return Err(ConfigError {
                var: "PAYORCH_BREAKER_FAILURES",
                message: "must be at least 1".into(),
            });
        }
        let log_format = match env.raw("PAYORCH_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError {
                    var: "PAYORCH_LOG_FORMAT",
                    message: format!("`{other}` is not one of text, json"),
                });
            }
        };
        let redis_url = env.raw("REDIS_URL").filter(|u| !u.is_empty());
        if let Some(url) = &redis_url {
            redis::Client::open(url.as_str()).map_err(|e| ConfigError {
                var: "REDIS_URL",
                message: format!("not a Redis URL ({e})"),
            })?;
        }
        let amqp_url = env.raw("AMQP_URL").filter(|u| !u.is_empty());
        if let Some(url) = &amqp_url {
            url.parse::<lapin::uri::AMQPUri>()
                .map_err(|e| ConfigError {
                    var: "AMQP_URL",
                    message: format!("not an AMQP URL ({e})"),
                })?;
        }

        let provider_timeout =
            Duration::from_millis(env.or("PAYORCH_PROVIDER_TIMEOUT_MS", "10000")?);
        let idempotency_lock = Duration::from_secs(env.or("PAYORCH_IDEMPOTENCY_LOCK_SECS", "60")?);
        let db_acquire_timeout =
            Duration::from_millis(env.or("PAYORCH_DB_ACQUIRE_TIMEOUT_MS", "3000")?);
        // A key's lock must outlive the request it guards (a provider call
        // per connector it may fail over to, and its wait for a database
        // connection), or a retry could take over a request still running.
        let longest_request = provider_timeout * providers.len() as u32 + db_acquire_timeout;
        if idempotency_lock <= longest_request {
            return Err(ConfigError {
                var: "PAYORCH_IDEMPOTENCY_LOCK_SECS",
                message: format!(
                    "must exceed PAYORCH_PROVIDER_TIMEOUT_MS × the connectors in \
                     PAYORCH_PROVIDERS + PAYORCH_DB_ACQUIRE_TIMEOUT_MS ({} ms)",
                    longest_request.as_millis()
                ),
            });
        }

        let cfg = Config {
            http_addr: env.or("PAYORCH_HTTP_ADDR", "127.0.0.1:8080")?,
            database_url: env.or("DATABASE_URL", "sqlite://payorch.db?mode=rwc")?,
            redis_url: redis_url.map(Secret),
            amqp_url: amqp_url.map(Secret),
            provider,
            provider_named,
            paystack_base_url,
            paystack_secret_key,
            providers,
            routing,
            flutterwave_base_url,
            flutterwave_secret_key,
            flutterwave_webhook_hash,
            breaker,
            rate_limits: env.or("PAYORCH_RATE_LIMITS", RateLimits::DEFAULT)?,
            trusted_proxies: env.list("PAYORCH_TRUSTED_PROXIES")?,
            queue_prefix: env.prefix("PAYORCH_QUEUE_PREFIX")?,
            redis_prefix: env.prefix("PAYORCH_REDIS_PREFIX")?,
            sandbox_addr: env.or("PAYORCH_SANDBOX_ADDR", "127.0.0.1:8090")?,
            sandbox_webhook_url: env.optional("PAYORCH_SANDBOX_WEBHOOK_URL")?,
            metrics_addr: env.optional("PAYORCH_METRICS_ADDR")?,
            auto_migrate: env.bool("PAYORCH_AUTO_MIGRATE", true)?,
            log_format,
            redis_timeout: Duration::from_millis(env.or("PAYORCH_REDIS_TIMEOUT_MS", "50")?),
            db_acquire_timeout,
            db_max_connections: env.or("PAYORCH_DB_MAX_CONNECTIONS", "20")?,
            provider_timeout,
            idempotency_lock,
            actor_idle: Duration::from_millis(env.or("PAYORCH_ACTOR_IDLE_MS", "60000")?),
            actor_mailbox: env.or("PAYORCH_ACTOR_MAILBOX", "64")?,
            auth_cache_ttl: Duration::from_millis(env.or("PAYORCH_AUTH_CACHE_MS", "5000")?),
            retry_policy: env.delays(
                "PAYORCH_WEBHOOK_RETRY_DELAYS_MS",
                &[1_000, 5_000, 30_000, 120_000, 600_000],
            )?,
            event_retry_policy: env.delays(
                "PAYORCH_EVENT_RETRY_DELAYS_MS",
                &[
                    5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000,
                ],
            )?,
            event_timeout: Duration::from_millis(env.or("PAYORCH_EVENT_TIMEOUT_MS", "10000")?),
            allow_private_endpoints: env.bool("PAYORCH_ALLOW_PRIVATE_ENDPOINTS", false)?,
            worker_prefetch: env.or("PAYORCH_WORKER_PREFETCH", "128")?,
            worker_batch: env.or::<usize>("PAYORCH_WORKER_BATCH", "64")?.max(1),
            reconcile_after: Duration::from_secs(env.or("PAYORCH_RECONCILE_AFTER_S", "900")?),
            abandon_after: Duration::from_secs(env.or("PAYORCH_ABANDON_AFTER_S", "86400")?),
            reconcile_every: Duration::from_secs(
                env.or::<u64>("PAYORCH_RECONCILE_EVERY_S", "60")?.max(1),
            ),
            webhook_retention: Duration::from_secs(
                86_400 * env.or::<u64>("PAYORCH_WEBHOOK_RETENTION_DAYS", "30")?,
            ),
            event_retention: Duration::from_secs(
                86_400 * env.or::<u64>("PAYORCH_EVENT_RETENTION_DAYS", "30")?,
            ),
            sandbox_refund_settle: match env
                .or::<u64>("PAYORCH_SANDBOX_REFUND_SETTLE_MS", "1000")?
            {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
        };
        Ok(cfg)
    }

    /// A deployment with real infrastructure that forgot to name its
    /// provider must not quietly take payments in the sandbox: `serve`,
    /// `worker`, `reconcile` and `sandbox` refuse to start (management
    /// commands such as `migrate` do not call a provider and need not say).
    pub fn check_provider_named(&self) -> Result<(), ConfigError> {
        if self.provider_named || self.is_embedded() {
            return Ok(());
        }
        Err(ConfigError {
            var: "PAYORCH_PROVIDER",
            message: "must be set when PostgreSQL, Redis or RabbitMQ is configured: \
                      `paystack`, or `sandbox` for a test installation"
                .into(),
        })
    }

    /// Whether merchant endpoints may resolve to loopback, private,
    /// link-local or unspecified addresses: when allowed, and always in
    /// embedded mode (a developer's receiver runs on their machine).
    pub fn allows_private_endpoints(&self) -> bool {
        self.allow_private_endpoints || self.is_embedded()
    }

    /// No outside system configured: SQLite, in-process queue, local limiter,
    /// sandbox provider. `serve` says so and creates a dev API key.
    pub fn is_embedded(&self) -> bool {
        self.database_url.is_sqlite() && self.redis_url.is_none() && self.amqp_url.is_none()
    }
}

struct Env<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> Env<'_, F> {
    fn raw(&self, var: &str) -> Option<String> {
        (self.0)(var)
    }

    fn parse<T: FromStr>(&self, var: &'static str, value: &str) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        value.trim().parse().map_err(|e| ConfigError {
            var,
            message: format!("`{value}`: {e}"),
        })
    }

    fn or<T: FromStr>(&self, var: &'static str, default: &str) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        let value = self.raw(var).unwrap_or_else(|| default.to_owned());
        self.parse(var, &value)
    }

    fn optional<T: FromStr>(&self, var: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.raw(var).filter(|v| !v.trim().is_empty()) {
            Some(value) => self.parse(var, &value).map(Some),
            None => Ok(None),
        }
    }

    /// A secret that, when set, is not empty.
    fn secret(&self, var: &'static str) -> Result<Option<Secret>, ConfigError> {
        match self.raw(var) {
            Some(value) if value.is_empty() => Err(ConfigError {
                var,
                message: "must not be empty".into(),
            }),
            value => Ok(value.map(Secret)),
        }
    }

    fn list<T: FromStr>(&self, var: &'static str) -> Result<Vec<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.raw(var)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| self.parse(var, item))
            .collect()
    }

    /// A comma-separated list of delays in milliseconds, `default` if unset.
    fn delays(
        &self,
        var: &'static str,
        default: &[u64],
    ) -> Result<crate::queue::RetryPolicy, ConfigError> {
        let ms = self.list::<u64>(var)?;
        let ms = if ms.is_empty() { default.to_vec() } else { ms };
        Ok(crate::queue::RetryPolicy {
            delays: ms.into_iter().map(Duration::from_millis).collect(),
        })
    }

    fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(var).as_deref().map(str::trim) {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(ConfigError {
                var,
                message: format!("`{other}` is not true or false"),
            }),
        }
    }

    /// Queue and key prefixes end up in broker and Redis names: keep them plain.
    fn prefix(&self, var: &'static str) -> Result<String, ConfigError> {
        let value = self.raw(var).unwrap_or_else(|| "payorch".into());
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if value.is_empty() || value.len() > 64 || !value.chars().all(plain) {
            return Err(ConfigError {
                var,
                message: format!("`{value}` must be 1 to 64 of A-Z a-z 0-9 _ - ."),
            });
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn nothing_configured_is_the_embedded_mode() {
        let cfg = config(&[]).unwrap();
        assert!(cfg.is_embedded());
        cfg.check_provider_named().unwrap();
        assert_eq!(cfg.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(cfg.database_url.expose(), "sqlite://payorch.db?mode=rwc");
        assert_eq!(cfg.provider, ProviderKind::Sandbox);
        assert!(
            cfg.paystack_secret_key.is_none(),
            "no constant key: the installation generates one"
        );
        assert_eq!(cfg.queue_prefix, "payorch");
        assert_eq!(cfg.redis_prefix, "payorch");
        assert_eq!(cfg.sandbox_addr.to_string(), "127.0.0.1:8090");
        assert!(cfg.auto_migrate);
        assert_eq!(cfg.redis_timeout, Duration::from_millis(50));
    }

    #[test]
    fn each_outside_system_is_chosen_on_its_own() {
        let cfg = config(&[
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("PAYORCH_PROVIDER", "sandbox"),
        ])
        .unwrap();
        assert!(cfg.database_url.is_sqlite());
        assert!(cfg.redis_url.is_some() && cfg.amqp_url.is_none());
        assert!(!cfg.is_embedded());
    }

    #[test]
    fn outside_embedded_mode_the_provider_must_be_named() {
        for system in [
            ("DATABASE_URL", "postgres://db.internal/pay"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        ] {
            let err = config(&[system])
                .unwrap()
                .check_provider_named()
                .unwrap_err();
            assert_eq!(err.var, "PAYORCH_PROVIDER", "{system:?}");
            let cfg = config(&[system, ("PAYORCH_PROVIDER", "sandbox")]).unwrap();
            assert_eq!(cfg.provider, ProviderKind::Sandbox);
            cfg.check_provider_named().unwrap();
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("DATABASE_URL", "mysql://x"),
            ("DATABASE_URL", "not a url"),
            ("PAYORCH_RATE_LIMITS", "initialize=abc"),
            ("PAYORCH_HTTP_ADDR", "localhost"),
            ("PAYORCH_PROVIDER", "stripe"),
            ("PAYORCH_AUTO_MIGRATE", "maybe"),
            ("PAYORCH_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("PAYORCH_QUEUE_PREFIX", "a b"),
            ("REDIS_URL", "http://x"),
            ("AMQP_URL", "http://x"),
            ("PAYORCH_LOG_FORMAT", "xml"),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{value}");
            assert!(err.to_string().starts_with(&format!("invalid {var}: ")));
        }
    }

    #[test]
    fn an_idempotency_lock_shorter_than_the_provider_timeout_is_refused() {
        let err = config(&[
            ("PAYORCH_IDEMPOTENCY_LOCK_SECS", "8"),
            ("PAYORCH_PROVIDER_TIMEOUT_MS", "5000"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "PAYORCH_IDEMPOTENCY_LOCK_SECS");
        let cfg = config(&[
            ("PAYORCH_IDEMPOTENCY_LOCK_SECS", "9"),
            ("PAYORCH_PROVIDER_TIMEOUT_MS", "5000"),
        ])
        .unwrap();
        assert_eq!(cfg.idempotency_lock, Duration::from_secs(9));
    }

    #[test]
    fn paystack_needs_its_url_and_key() {
        let err = config(&[("PAYORCH_PROVIDER", "paystack")]).unwrap_err();
        assert_eq!(err.var, "PAYSTACK_BASE_URL");
        let err = config(&[
            ("PAYORCH_PROVIDER", "paystack"),
            ("PAYSTACK_BASE_URL", "https://api.paystack.co"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "PAYSTACK_SECRET_KEY");
    }

    #[test]
    fn bad_connector_configuration_names_its_variable() {
        for (env, var, says) in [
            (
                vec![("PAYORCH_PROVIDERS", "paystack,stripe")],
                "PAYORCH_PROVIDERS",
                "not a connector",
            ),
            (
                vec![("PAYORCH_PROVIDERS", "paystack,paystack")],
                "PAYORCH_PROVIDERS",
                "twice",
            ),
            (
                vec![
                    ("PAYORCH_PROVIDERS", "paystack,flutterwave"),
                    ("PAYORCH_ROUTING", "NGN=paystack:70.5,flutterwave:29.5"),
                ],
                "PAYORCH_ROUTING",
                "whole number",
            ),
            (
                vec![("PAYORCH_ROUTING", "NGN=paystack:70,flutterwave:30")],
                "PAYORCH_ROUTING",
                "does not enable",
            ),
            (
                vec![("PAYORCH_BREAKER_FAILURES", "0")],
                "PAYORCH_BREAKER_FAILURES",
                "at least 1",
            ),
            (
                vec![
                    ("PAYORCH_PROVIDER", "paystack"),
                    ("PAYORCH_PROVIDERS", "flutterwave"),
                ],
                "FLUTTERWAVE_BASE_URL",
                "required",
            ),
        ] {
            let err = config(&env).unwrap_err();
            assert_eq!(err.var, var, "{env:?}");
            assert!(err.message.contains(says), "{env:?}: {}", err.message);
        }
    }

    #[test]
    fn connectors_default_to_paystack_and_routing_is_checked_against_them() {
        let cfg = config(&[]).unwrap();
        assert_eq!(cfg.providers, [ConnectorName::Paystack]);
        let cfg = config(&[
            ("PAYORCH_PROVIDERS", "flutterwave, paystack"),
            (
                "PAYORCH_ROUTING",
                "NGN=paystack:70,flutterwave:30;*=flutterwave",
            ),
        ])
        .unwrap();
        assert_eq!(
            cfg.providers,
            [ConnectorName::Flutterwave, ConnectorName::Paystack]
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let cfg = config(&[
            ("PAYSTACK_SECRET_KEY", "sk_live_very_secret"),
            ("DATABASE_URL", "postgres://u:hunter2@db.internal:6543/pay"),
            ("PAYORCH_PROVIDER", "sandbox"),
        ])
        .unwrap();
        let printed = format!("{cfg:?}");
        assert!(!printed.contains("sk_live_very_secret"));
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("db.internal:6543"));
    }
}
