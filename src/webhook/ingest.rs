//! The ingest path of `POST /v1/webhooks/{provider}`: signature, identity,
//! queue, answer. Nothing else happens here — no database, no provider — so
//! a burst is acknowledged as fast as the broker confirms.

use chrono::Utc;

use super::{event, signature};
use crate::{
    config::Secret,
    error::ApiError,
    queue::{Envelope, QueueMessage, WebhookQueue},
};

/// Largest webhook body accepted.
pub const MAX_BODY: usize = 256 * 1024;

#[derive(Clone)]
pub struct WebhookIngest {
    /// The one provider this deployment talks to (`sandbox` or `paystack`).
    pub provider: &'static str,
    pub secret: Secret,
    pub queue: WebhookQueue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// On the queue for the workers.
    Queued,
    /// Authentic but unusable: parked for an operator, with the reason.
    Parked,
}

impl WebhookIngest {
    pub async fn receive(
        &self,
        provider: &str,
        signature_header: Option<&str>,
        body: &[u8],
        request_id: Option<String>,
    ) -> Result<Received, ApiError> {
        if provider != self.provider {
            return Err(ApiError::UnknownProvider);
        }
        let signed = signature_header
            .is_some_and(|given| signature::verify(self.secret.expose().as_bytes(), body, given));
        if !signed {
            metrics::counter!("payorch_webhooks_rejected_total", "reason" => "signature")
                .increment(1);
            return Err(ApiError::InvalidSignature);
        }
        let parsed = event::parse(body);
        let envelope = Envelope {
            message: QueueMessage::WebhookV1 {
                provider: provider.to_owned(),
                dedup_key: parsed
                    .as_ref()
                    .map(|e| e.dedup_key.clone())
                    .unwrap_or_else(|_| format!("unparsable:{}", uuid::Uuid::now_v7())),
                body: String::from_utf8_lossy(body).into_owned(),
                received_at: Utc::now(),
                request_id,
            },
            attempt: 0,
            reason: None,
        };
        let queued = match &parsed {
            Ok(_) => self
                .queue
                .publish(&envelope)
                .await
                .map(|()| Received::Queued),
            Err(reason) => {
                tracing::warn!(reason, "signed webhook could not be parsed; parking it");
                self.queue
                    .park(&envelope, &format!("unparsable: {reason}"))
                    .await
                    .map(|()| Received::Parked)
            }
        };
        queued.map_err(|err| {
            tracing::warn!(error = %err, "webhook not queued; the provider will retry");
            ApiError::Unavailable("the webhook queue")
        })
    }
}
