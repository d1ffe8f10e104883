//! Loading: [`Config::from_env`] reads every variable once, in a fixed
//! order (so the first bad one is the one reported), with the defaults of
//! DESIGN.md's table, and checks the outside systems' URLs.

use std::time::Duration;

use super::{Config, ConfigError, connectors::Connectors, env::Env, limits::RequestLimits};
use crate::{domain::LateSuccess, ratelimit::RateLimits, secret::Secret};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests can pass their own values.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env(&lookup);
        let connectors = Connectors::read(&env)?;
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
        let limits = RequestLimits::read(&env, connectors.providers.len())?;
        let reconcile_after = Duration::from_secs(env.or("PAYORCH_RECONCILE_AFTER_S", "900")?);
        // A sweep in another process must never judge a provider call
        // still in flight (a refund being sent, an initialize failing over).
        if reconcile_after <= limits.provider_timeout {
            return Err(ConfigError {
                var: "PAYORCH_RECONCILE_AFTER_S",
                message: format!(
                    "must be larger than PAYORCH_PROVIDER_TIMEOUT_MS ({} ms), so a sweep \
                     never judges a provider call still in flight",
                    limits.provider_timeout.as_millis()
                ),
            });
        }
        let late_success = match env.raw("PAYORCH_LATE_SUCCESS") {
            None => LateSuccess::default(),
            Some(value) => LateSuccess::parse(&value).ok_or_else(|| ConfigError {
                var: "PAYORCH_LATE_SUCCESS",
                message: format!("`{value}` is not one of review, refund"),
            })?,
        };
        let secrets_key = env.secret_parsed("PAYORCH_SECRETS_KEY")?;
        let secrets_key_previous = env.secret_parsed("PAYORCH_SECRETS_KEY_PREVIOUS")?;
        if secrets_key.is_none() && secrets_key_previous.is_some() {
            return Err(ConfigError {
                var: "PAYORCH_SECRETS_KEY_PREVIOUS",
                message: "is the key being retired: set PAYORCH_SECRETS_KEY to the new one".into(),
            });
        }

        Ok(Config {
            http_addr: env.or("PAYORCH_HTTP_ADDR", "127.0.0.1:8080")?,
            database_url: env.or("DATABASE_URL", "sqlite://payorch.db?mode=rwc")?,
            redis_url: redis_url.map(Secret::new),
            amqp_url: amqp_url.map(Secret::new),
            provider: connectors.provider,
            provider_named: connectors.provider_named,
            paystack_base_url: connectors.paystack_base_url,
            paystack_secret_key: connectors.paystack_secret_key,
            providers: connectors.providers,
            routing: connectors.routing,
            flutterwave_base_url: connectors.flutterwave_base_url,
            flutterwave_secret_key: connectors.flutterwave_secret_key,
            flutterwave_webhook_hash: connectors.flutterwave_webhook_hash,
            breaker: connectors.breaker,
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
            db_acquire_timeout: limits.db_acquire_timeout,
            db_max_connections: env.or("PAYORCH_DB_MAX_CONNECTIONS", "20")?,
            provider_timeout: limits.provider_timeout,
            idempotency_lock: limits.idempotency_lock,
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
            event_proxy: env.optional("PAYORCH_EVENT_PROXY")?,
            secrets_key,
            secrets_key_previous,
            worker_prefetch: env.or("PAYORCH_WORKER_PREFETCH", "128")?,
            worker_batch: env.or::<usize>("PAYORCH_WORKER_BATCH", "64")?.max(1),
            reconcile_after,
            abandon_after: Duration::from_secs(env.or("PAYORCH_ABANDON_AFTER_S", "86400")?),
            refund_review_after: Duration::from_secs(
                env.or("PAYORCH_REFUND_REVIEW_AFTER_S", "86400")?,
            ),
            late_success,
            settlement_every: Duration::from_secs(
                env.or::<u64>("PAYORCH_SETTLEMENT_EVERY_S", "86400")?
                    .max(60),
            ),
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProviderKind, test_vars::config};

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

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    #[test]
    fn outside_embedded_mode_the_secrets_key_is_required() {
        let postgres = ("DATABASE_URL", "postgres://u@db.internal/pay");
        let err = config(&[postgres])
            .unwrap()
            .check_secrets_key()
            .unwrap_err();
        assert_eq!(err.var, "PAYORCH_SECRETS_KEY");
        config(&[]).unwrap().check_secrets_key().unwrap();
        let cfg = config(&[
            postgres,
            ("PAYORCH_SECRETS_KEY", KEY_A),
            ("PAYORCH_SECRETS_KEY_PREVIOUS", KEY_B),
        ])
        .unwrap();
        cfg.check_secrets_key().unwrap();
        assert_ne!(
            cfg.secrets_key.as_ref().unwrap().id(),
            cfg.secrets_key_previous.as_ref().unwrap().id()
        );
        let printed = format!("{cfg:?}");
        assert!(!printed.contains(KEY_A) && !printed.contains(KEY_B));
    }

    #[test]
    fn a_malformed_secrets_key_is_not_repeated_in_the_error() {
        let short = "c2hvcnQgYnV0IHNlY3JldA==";
        let err = config(&[("PAYORCH_SECRETS_KEY", short)]).unwrap_err();
        assert_eq!(err.var, "PAYORCH_SECRETS_KEY");
        assert!(!err.to_string().contains(short), "{err}");
    }

    #[test]
    fn embedded_mode_keeps_its_key_beside_the_database() {
        let cfg = config(&[("DATABASE_URL", "sqlite:///var/lib/payorch/p.db?mode=rwc")]).unwrap();
        assert_eq!(
            cfg.embedded_key_file(),
            std::path::PathBuf::from("/var/lib/payorch/p.db.secrets-key")
        );
        assert_eq!(
            config(&[]).unwrap().embedded_key_file(),
            std::path::PathBuf::from("payorch.db.secrets-key")
        );
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
            ("PAYORCH_LATE_SUCCESS", "ignore"),
            ("PAYORCH_RECONCILE_AFTER_S", "10"),
            ("PAYORCH_RECONCILE_AFTER_S", "0"),
            ("PAYORCH_EVENT_PROXY", "proxy.internal:3128"),
            ("PAYORCH_EVENT_PROXY", "socks5://proxy.internal:1080"),
            ("PAYORCH_SECRETS_KEY", "not base64!"),
            ("PAYORCH_SECRETS_KEY", "c2hvcnQ="),
            ("PAYORCH_SECRETS_KEY", ""),
            ("PAYORCH_SECRETS_KEY_PREVIOUS", KEY_B),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{value}");
            assert!(err.to_string().starts_with(&format!("invalid {var}: ")));
        }
    }
}
