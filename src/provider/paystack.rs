//! A client for Paystack's transaction API (`/transaction/initialize`,
//! `/transaction/verify/:reference`, bearer secret key), with a connect
//! timeout, a total timeout and jittered retries. Verify only reads, so it is
//! retried on any failure. Initialize is retried only when the request never
//! left (connection refused): it carries payorch's own reference, so a
//! repeat cannot open a second transaction, but Paystack answers a repeated
//! reference with 400 "Duplicate Transaction Reference", which would hide
//! the first attempt's checkout link.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::json;

use uuid::Uuid;

use super::{
    ChargeReport, Checkout, InitializeRequest, PaymentProvider, ProviderError, ProviderRefund,
    RefundRequest,
};
use crate::{config::Secret, domain::Reference};

const ATTEMPTS: u32 = 3;
const BASE_BACKOFF: Duration = Duration::from_millis(100);

pub struct PaystackClient {
    name: &'static str,
    base: Url,
    secret_key: Secret,
    http: reqwest::Client,
    /// Budget for one call including its retries.
    timeout: Duration,
}

#[derive(Deserialize)]
struct Envelope<T> {
    status: bool,
    #[serde(default)]
    message: String,
    data: Option<T>,
}

#[derive(Deserialize)]
struct InitializeData {
    authorization_url: String,
    access_code: String,
}

/// A refund in Paystack's shape (`POST /refund`, `GET /refund/{id}`,
/// `GET /refund?transaction=`).
#[derive(Deserialize)]
struct RefundData {
    id: serde_json::Value,
    status: String,
    #[serde(default)]
    merchant_note: Option<String>,
}

impl RefundData {
    fn into_refund(self) -> ProviderRefund {
        ProviderRefund {
            provider_refund_id: match self.id {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            },
            report: ProviderRefund::report_of(&self.status),
        }
    }
}

#[derive(Deserialize)]
struct VerifyData {
    id: Option<i64>,
    status: String,
    amount: i64,
    currency: String,
    gateway_response: Option<String>,
}

impl PaystackClient {
    pub fn new(name: &'static str, base: Url, secret_key: Secret, timeout: Duration) -> Self {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2).min(timeout))
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()
            .expect("building the provider HTTP client");
        // A base without a trailing slash would lose its last segment in `join`.
        let base = if base.path().ends_with('/') {
            base
        } else {
            format!("{base}/")
                .parse()
                .expect("a URL with a slash is a URL")
        };
        PaystackClient {
            name,
            base,
            secret_key,
            http,
            timeout,
        }
    }

    /// Sends within the overall budget, retrying connection failures and,
    /// when `retry_sent`, also timeouts, 5xx and 429; returns the decoded
    /// `data` of a 2xx answer.
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        retry_sent: bool,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, ProviderError> {
        let started = Instant::now();
        let mut last_error = ProviderError::Timeout;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                let backoff = BASE_BACKOFF * 2u32.pow(attempt - 1);
                let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64);
                let pause = backoff + Duration::from_millis(jitter);
                if started.elapsed() + pause >= self.timeout {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            let remaining = self.timeout.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                break;
            }
            let (status, body) = match self.send_once(build(), remaining).await {
                Ok(answer) => answer,
                Err(failure) => {
                    last_error = failure.error;
                    if failure.sent && !retry_sent {
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
            let envelope: Envelope<T> = serde_json::from_slice(&body).map_err(|e| {
                ProviderError::Unavailable(format!("unreadable provider answer ({status}): {e}"))
            })?;
            return match (status.is_success() && envelope.status, envelope.data) {
                (true, Some(data)) => Ok(data),
                (true, None) => Err(ProviderError::Unavailable(
                    "provider answer without data".into(),
                )),
                (false, _) => Err(ProviderError::Rejected(if envelope.message.is_empty() {
                    format!("provider answered {status}")
                } else {
                    envelope.message
                })),
            };
        }
        Err(last_error)
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

impl PaystackClient {
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
}

/// Provider latency and errors, by operation and outcome.
fn observe<T>(operation: &'static str, started: Instant, result: &Result<T, ProviderError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(ProviderError::Rejected(_)) => "rejected",
        Err(ProviderError::Unavailable(_)) => "unavailable",
        Err(ProviderError::Timeout) => "timeout",
    };
    metrics::histogram!(
        "payorch_provider_request_duration_seconds",
        "operation" => operation,
        "outcome" => outcome,
    )
    .record(started.elapsed().as_secs_f64());
}

/// reqwest errors print the URL; ours carry no secret, but keep logs short.
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), url.path());
    }
    text
}

#[async_trait]
impl PaymentProvider for PaystackClient {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn initialize(&self, request: &InitializeRequest) -> Result<Checkout, ProviderError> {
        let url = self
            .base
            .join("transaction/initialize")
            .expect("static path");
        let mut body = json!({
            "reference": request.reference.as_str(),
            "amount": request.amount.get(),
            "currency": request.currency.as_str(),
            "email": request.email.as_str(),
        });
        if let Some(callback) = &request.callback_url {
            body["callback_url"] = json!(callback);
        }
        if let Some(metadata) = &request.metadata {
            body["metadata"] = metadata.clone();
        }
        let started = Instant::now();
        let result = self
            .call(false, || self.http.post(url.clone()).json(&body))
            .await;
        observe("initialize", started, &result);
        let data: InitializeData = result?;
        Ok(Checkout {
            authorization_url: data.authorization_url,
            access_code: data.access_code,
        })
    }

    async fn verify(&self, reference: &Reference) -> Result<ChargeReport, ProviderError> {
        let url = self
            .base
            .join("transaction/verify/")
            .and_then(|u| u.join(reference.as_str()))
            .expect("references are URL-safe");
        let started = Instant::now();
        let result = self.call(true, || self.http.get(url.clone())).await;
        observe("verify", started, &result);
        let data: VerifyData = result?;
        Ok(ChargeReport {
            provider_transaction_id: data.id,
            status: data.status,
            amount: data.amount,
            currency: data.currency,
            gateway_response: data.gateway_response,
        })
    }

    async fn refund(&self, request: &RefundRequest) -> Result<ProviderRefund, ProviderError> {
        let url = self.base.join("refund").expect("static path");
        let mut body = json!({
            "transaction": request.reference.as_str(),
            "amount": request.amount.get(),
            "currency": request.currency.as_str(),
            "merchant_note": request.refund_id.to_string(),
        });
        if let Some(reason) = &request.reason {
            body["customer_note"] = json!(reason);
        }
        let started = Instant::now();
        // Like initialize: retried only while nothing was sent.
        let result = self
            .call(false, || self.http.post(url.clone()).json(&body))
            .await;
        observe("refund", started, &result);
        let data: RefundData = result?;
        Ok(data.into_refund())
    }

    async fn find_refund(
        &self,
        reference: &Reference,
        refund_id: Uuid,
        provider_refund_id: Option<&str>,
    ) -> Result<Option<ProviderRefund>, ProviderError> {
        let started = Instant::now();
        let result = match provider_refund_id {
            Some(id) => {
                let url = self
                    .base
                    .join("refund/")
                    .and_then(|u| u.join(id))
                    .map_err(|e| ProviderError::Unavailable(format!("refund id: {e}")))?;
                self.call::<RefundData>(true, || self.http.get(url.clone()))
                    .await
                    .map(|data| Some(data.into_refund()))
            }
            None => {
                let mut url = self.base.join("refund").expect("static path");
                url.query_pairs_mut()
                    .append_pair("transaction", reference.as_str());
                let ours = refund_id.to_string();
                self.call::<Vec<RefundData>>(true, || self.http.get(url.clone()))
                    .await
                    .map(|refunds| {
                        refunds
                            .into_iter()
                            .find(|r| r.merchant_note.as_deref() == Some(ours.as_str()))
                            .map(RefundData::into_refund)
                    })
            }
        };
        observe("find_refund", started, &result);
        result
    }
}
