//! The sandbox's outgoing webhooks, proven as each provider proves them —
//! Paystack: `x-paystack-signature`, hex HMAC-SHA512 of the body with the
//! secret key; Flutterwave: `verif-hash`, the pre-shared hash itself — and
//! retried with backoff until the orchestrator answers 2xx, as a real
//! provider does.

use std::time::Duration;

use crate::{
    provider::{flutterwave, paystack, routing::ConnectorName},
    secret::Secret,
};

const ATTEMPTS: u32 = 8;

#[derive(Clone)]
pub struct WebhookSender {
    url: String,
    dialect: ConnectorName,
    /// Paystack's HMAC key, or Flutterwave's hash.
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
    pub fn new(url: String, dialect: ConnectorName, secret: Secret) -> WebhookSender {
        crate::install_crypto_provider();
        WebhookSender {
            url,
            dialect,
            secret,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("building the sandbox webhook client"),
        }
    }

    /// The header the proof travels in.
    fn header(&self) -> &'static str {
        match self.dialect {
            ConnectorName::Paystack => paystack::SIGNATURE_HEADER,
            ConnectorName::Flutterwave => flutterwave::HASH_HEADER,
        }
    }

    /// The proof of origin the provider would send with `body`.
    pub fn proof(&self, body: &[u8]) -> String {
        match self.dialect {
            ConnectorName::Paystack => {
                paystack::sign_webhook(self.secret.expose().as_bytes(), body)
            }
            ConnectorName::Flutterwave => self.secret.expose().to_owned(),
        }
    }

    pub fn send_in_background(&self, body: String) {
        let sender = self.clone();
        tokio::spawn(async move {
            let body = body.into_bytes();
            let proof = sender.proof(&body);
            let outcome = sender.deliver(body, &proof).await;
            if outcome != Delivered::Accepted {
                tracing::warn!(?outcome, url = sender.url, "sandbox webhook not delivered");
            }
        });
    }

    /// Posts `body` with `proof`, retrying 5xx and network errors.
    pub async fn deliver(&self, body: Vec<u8>, proof: &str) -> Delivered {
        let mut pause = Duration::from_millis(100);
        for _ in 0..ATTEMPTS {
            let sent = self
                .http
                .post(&self.url)
                .header("content-type", "application/json")
                .header(self.header(), proof)
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

/// A proof that is not the right one: its first two characters changed.
pub fn forged(proof: &str) -> String {
    let head = if proof.starts_with("00") { "11" } else { "00" };
    let rest: String = proof.chars().skip(2).collect();
    format!("{head}{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_proofs_always_differ() {
        for proof in ["", "0", "00", "00ab", "abcdef", "ñandú"] {
            assert_ne!(forged(proof), proof, "{proof:?}");
        }
        assert_eq!(forged("abcdef").len(), 6);
    }

    #[test]
    fn each_dialect_proves_its_own_way() {
        let secret = Secret::new("sk_test");
        let hmac = WebhookSender::new("http://h".into(), ConnectorName::Paystack, secret.clone());
        let hash = WebhookSender::new("http://h".into(), ConnectorName::Flutterwave, secret);
        assert!(paystack::verify_signature(
            b"sk_test",
            b"{}",
            &hmac.proof(b"{}")
        ));
        assert_eq!(hmac.header(), "x-paystack-signature");
        assert!(flutterwave::hash_matches(
            "sk_test",
            Some(hash.proof(b"{}").as_str())
        ));
        assert_eq!(hash.header(), "verif-hash");
    }
}
