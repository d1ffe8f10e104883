//! Time limits that depend on each other: the provider call budget, the
//! wait for a database connection, and the Idempotency-Key lock, which must
//! outlast the longest request it guards.

use std::time::Duration;

use super::{ConfigError, env::Env};

/// `PAYORCH_PROVIDER_TIMEOUT_MS`, `PAYORCH_IDEMPOTENCY_LOCK_SECS`,
/// `PAYORCH_DB_ACQUIRE_TIMEOUT_MS`, checked together.
pub(super) struct RequestLimits {
    pub(super) provider_timeout: Duration,
    pub(super) idempotency_lock: Duration,
    pub(super) db_acquire_timeout: Duration,
}

impl RequestLimits {
    /// `connectors`: how many connectors one request may fail over to.
    pub(super) fn read<F: Fn(&str) -> Option<String>>(
        env: &Env<'_, F>,
        connectors: usize,
    ) -> Result<RequestLimits, ConfigError> {
        let provider_timeout =
            Duration::from_millis(env.or("PAYORCH_PROVIDER_TIMEOUT_MS", "10000")?);
        let idempotency_lock = Duration::from_secs(env.or("PAYORCH_IDEMPOTENCY_LOCK_SECS", "60")?);
        let db_acquire_timeout =
            Duration::from_millis(env.or("PAYORCH_DB_ACQUIRE_TIMEOUT_MS", "3000")?);
        // A key's lock must outlive the request it guards (a provider call
        // per connector it may fail over to, and its wait for a database
        // connection), or a retry could take over a request still running.
        let longest_request = provider_timeout * connectors as u32 + db_acquire_timeout;
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
        Ok(RequestLimits {
            provider_timeout,
            idempotency_lock,
            db_acquire_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_vars::config;

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
}
