//! The HTTP transport every connector shares: bearer secret key, a connect
//! timeout, one time budget per call (retries included), jittered retries,
//! and the metrics. What a connector adds is its dialect: the paths, the
//! bodies, and how its answer envelope is read (the `decode` of
//! [`Transport::call`]).
//!
//! How an answer is classified, whatever the dialect:
//! - 400 and 422 are the provider refusing the request itself: `decode`
//!   reads the dialect's envelope and says [`ProviderError::Rejected`], a
//!   final answer;
//! - any other 4xx (401, 403, 404, …) is the provider refusing *us* (bad
//!   key, wrong base URL): [`ProviderError::Unavailable`], an outage to fix;
//! - 5xx, 429 and connection errors are [`ProviderError::Unavailable`], and
//!   no answer within the budget is [`ProviderError::Timeout`]; these are
//!   retried within the budget, except that a write ([`Retry::UntilSent`])
//!   is never repeated once the request may have reached the provider.

use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::{StatusCode, Url};

use super::ProviderError;
use crate::secret::Secret;

const ATTEMPTS: u32 = 3;
const BASE_BACKOFF: Duration = Duration::from_millis(100);

/// When a call may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// A read: repeated on any failure within the budget.
    Freely,
    /// A write: repeated only while the request cannot have left (the
    /// connection was refused), since the provider might act on it twice or
    /// answer the repeat differently.
    UntilSent,
}

/// The operations a connector's calls are timed by.
const OPERATIONS: [&str; 5] = [
    "initialize",
    "verify",
    "refund",
    "find_refund",
    "list_transactions",
];

/// One connector's HTTP client.
pub(super) struct Transport {
    /// The connector's name, for metrics.
    connector: &'static str,
    base: Url,
    secret_key: Secret,
    http: reqwest::Client,
    /// Budget for one call including its retries.
    timeout: Duration,
}

impl Transport {
    pub(super) fn new(
        connector: &'static str,
        base: Url,
        secret_key: Secret,
        timeout: Duration,
    ) -> Transport {
        crate::install_crypto_provider();
        Transport::register_known_series(connector);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2).min(timeout))
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()
            .expect("building the provider HTTP client");
        Transport {
            connector,
            base,
            secret_key,
            http,
            timeout,
        }
    }

    /// `segments` appended to the base URL, each percent-encoded: an id
    /// from a provider answer cannot reach another path or host.
    pub(super) fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("provider base URLs are http(s)")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// When a call (or a sequence of calls sharing one budget) started now
    /// must be done.
    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// Sends the request `build` makes within the budget, retrying as
    /// `retry` allows, and reads a 2xx, 400 or 422 answer with `decode`
    /// (status, body). Records the call's latency and outcome as
    /// `operation`.
    pub(super) async fn call<T>(
        &self,
        operation: &'static str,
        retry: Retry,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        decode: impl Fn(StatusCode, &[u8]) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        self.call_until(self.deadline(), operation, retry, build, decode)
            .await
    }

    /// [`Self::call`] within what is left until `deadline`: an operation
    /// that makes several calls stays within one budget.
    pub(super) async fn call_until<T>(
        &self,
        deadline: Instant,
        operation: &'static str,
        retry: Retry,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        decode: impl Fn(StatusCode, &[u8]) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let started = Instant::now();
        let result = self.attempts(deadline, retry, build, decode).await;
        self.observe(operation, started, &result);
        result
    }

    async fn attempts<T>(
        &self,
        deadline: Instant,
        retry: Retry,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        decode: impl Fn(StatusCode, &[u8]) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let mut last_error = ProviderError::Timeout;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                let backoff = BASE_BACKOFF * 2u32.pow(attempt - 1);
                let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64);
                let pause = backoff + Duration::from_millis(jitter);
                if Instant::now() + pause >= deadline {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let (status, body) = match self.send_once(build(&self.http), remaining).await {
                Ok(answer) => answer,
                Err(failure) => {
                    last_error = failure.error;
                    if failure.sent && retry == Retry::UntilSent {
                        break;
                    }
                    continue;
                }
            };
            // Only a refusal of the request itself is the payment's fate; a
            // refusal of us (bad key, wrong URL) is an outage to fix.
            let refused_request = matches!(
                status,
                StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
            );
            if status.is_client_error() && !refused_request {
                return Err(ProviderError::Unavailable(format!(
                    "provider answered {status}"
                )));
            }
            return decode(status, &body);
        }
        Err(last_error)
    }

    /// One attempt: the status and body of an answer worth decoding, or a
    /// failure worth retrying (transport error, 5xx, 429).
    async fn send_once(
        &self,
        request: reqwest::RequestBuilder,
        remaining: Duration,
    ) -> Result<(StatusCode, Vec<u8>), Failure> {
        let response = request
            .bearer_auth(self.secret_key.expose())
            .timeout(remaining)
            .send()
            .await
            .map_err(Failure::of)?;
        let status = response.status();
        let body = response.bytes().await.map_err(Failure::of)?.to_vec();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure {
                error: ProviderError::Unavailable(format!("provider answered {status}")),
                sent: true,
            });
        }
        Ok((status, body))
    }

    /// Provider latency and errors, by connector, operation and outcome.
    /// Registers this connector's request histogram of every operation and
    /// outcome, empty, so dashboards see the series before the first call.
    fn register_known_series(connector: &'static str) {
        for operation in OPERATIONS {
            for outcome in ["ok", "rejected", "unavailable", "timeout"] {
                let _ = metrics::histogram!(
                    "payorch_provider_request_duration_seconds",
                    "connector" => connector,
                    "operation" => operation,
                    "outcome" => outcome,
                );
            }
        }
    }

    fn observe<T>(
        &self,
        operation: &'static str,
        started: Instant,
        result: &Result<T, ProviderError>,
    ) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(err) => err.kind(),
        };
        metrics::histogram!(
            "payorch_provider_request_duration_seconds",
            "connector" => self.connector,
            "operation" => operation,
            "outcome" => outcome,
        )
        .record(started.elapsed().as_secs_f64());
    }
}

/// A failed attempt, and whether the request may have reached the provider.
struct Failure {
    error: ProviderError,
    sent: bool,
}

impl Failure {
    fn of(err: reqwest::Error) -> Failure {
        Failure {
            sent: !err.is_connect(),
            error: if err.is_timeout() {
                ProviderError::Timeout
            } else {
                ProviderError::Unavailable(without_url(&err))
            },
        }
    }
}

/// reqwest errors print the URL; ours carry no secret, but keep logs short.
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), url.path());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(base: &str) -> Transport {
        Transport::new(
            "test",
            base.parse().unwrap(),
            Secret::new("sk"),
            Duration::from_secs(1),
        )
    }

    #[test]
    fn endpoints_keep_the_base_path_with_or_without_a_trailing_slash() {
        for base in ["http://h/sandbox", "http://h/sandbox/"] {
            assert_eq!(
                transport(base)
                    .endpoint(&["transaction", "verify", "r-1"])
                    .as_str(),
                "http://h/sandbox/transaction/verify/r-1"
            );
        }
        assert_eq!(
            transport("http://h").endpoint(&["v3", "payments"]).as_str(),
            "http://h/v3/payments"
        );
    }

    #[test]
    fn segments_cannot_leave_the_base() {
        let url = transport("http://h/base/").endpoint(&["refund", "http://evil/x?y#z"]);
        assert_eq!(url.host_str(), Some("h"));
        assert!(url.path().starts_with("/base/refund/"), "{url}");
        assert_eq!(url.query(), None);
        let up = transport("http://h/base/").endpoint(&["refund", ".."]);
        assert!(up.path().starts_with("/base/"), "{up}");
    }
}
