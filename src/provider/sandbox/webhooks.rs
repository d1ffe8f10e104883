//! The sandbox's outgoing webhooks: signed with `x-paystack-signature`
//! (hex HMAC-SHA512 of the body with the secret key) and retried with
//! backoff until the orchestrator answers 2xx, as a real provider does.

use std::time::Duration;

use crate::{config::Secret, webhook::signature};

const ATTEMPTS: u32 = 8;

#[derive(Clone)]
pub struct WebhookSender {
    url: String,
    secret: Secret,
    http: reqwest::Client,
}

/// How one delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    Accepted,
    /// Refused for good (4xx): a provider stops retrying too.
    Refused(u16),
    GaveUp,
}

impl WebhookSender {
    pub fn new(url: String, secret: Secret) -> WebhookSender {
        crate::install_crypto_provider();
        WebhookSender {
            url,
            secret,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("building the sandbox webhook client"),
        }
    }

    pub fn sign(&self, body: &[u8]) -> String {
        signature::sign(self.secret.expose().as_bytes(), body)
    }

    pub fn send_in_background(&self, event: serde_json::Value) {
        let sender = self.clone();
        tokio::spawn(async move {
            let body = event.to_string().into_bytes();
            let signature = sender.sign(&body);
            let outcome = sender.deliver(body, &signature).await;
            if outcome != Delivered::Accepted {
                tracing::warn!(?outcome, url = sender.url, "sandbox webhook not delivered");
            }
        });
    }

    /// Posts `body` with `signature`, retrying 5xx and network errors.
    pub async fn deliver(&self, body: Vec<u8>, signature: &str) -> Delivered {
        let mut pause = Duration::from_millis(100);
        for _ in 0..ATTEMPTS {
            let sent = self
                .http
                .post(&self.url)
                .header("content-type", "application/json")
                .header("x-paystack-signature", signature)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => return Delivered::Accepted,
                Ok(response) if response.status().is_client_error() => {
                    return Delivered::Refused(response.status().as_u16());
                }
                _ => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
        Delivered::GaveUp
    }
}
