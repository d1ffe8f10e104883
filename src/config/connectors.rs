//! Which provider and connectors: `PAYORCH_PROVIDER` (the sandbox or real
//! providers), `PAYORCH_PROVIDERS` (the enabled connectors, in order),
//! `PAYORCH_ROUTING`, each connector's URL and keys (required with real
//! providers), and the circuit breaker. [`ConnectorSettings`] is what the
//! provider layer builds its connectors from.

use std::time::Duration;

use reqwest::Url;

use super::{Config, ConfigError, env::Env};
use crate::{
    provider::{
        ConnectorSettings,
        breaker::BreakerSettings,
        routing::{ConnectorName, Routing},
    },
    secret::Secret,
};

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

/// The connector variables, read and checked.
pub(super) struct Connectors {
    pub(super) provider: ProviderKind,
    pub(super) provider_named: bool,
    pub(super) providers: Vec<ConnectorName>,
    pub(super) routing: Routing,
    pub(super) paystack_base_url: Option<Url>,
    pub(super) paystack_secret_key: Option<Secret>,
    pub(super) flutterwave_base_url: Option<Url>,
    pub(super) flutterwave_secret_key: Option<Secret>,
    pub(super) flutterwave_webhook_hash: Option<Secret>,
    pub(super) breaker: BreakerSettings,
}

impl Connectors {
    pub(super) fn read<F: Fn(&str) -> Option<String>>(
        env: &Env<'_, F>,
    ) -> Result<Connectors, ConfigError> {
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
        Ok(Connectors {
            provider,
            provider_named,
            providers,
            routing,
            paystack_base_url,
            paystack_secret_key,
            flutterwave_base_url,
            flutterwave_secret_key,
            flutterwave_webhook_hash,
            breaker,
        })
    }
}

impl Config {
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
}

impl From<&Config> for ConnectorSettings {
    fn from(cfg: &Config) -> ConnectorSettings {
        ConnectorSettings {
            live: cfg.provider == ProviderKind::Paystack,
            providers: cfg.providers.clone(),
            routing: cfg.routing.clone(),
            breaker: cfg.breaker,
            timeout: cfg.provider_timeout,
            sandbox_addr: cfg.sandbox_addr,
            paystack_base_url: cfg.paystack_base_url.clone(),
            flutterwave_base_url: cfg.flutterwave_base_url.clone(),
            flutterwave_secret_key: cfg.flutterwave_secret_key.clone(),
            flutterwave_webhook_hash: cfg.flutterwave_webhook_hash.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_vars::config;

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
}
