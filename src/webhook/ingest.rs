//! The ingest path of `POST /v1/webhooks/{provider}`: signature, one parse,
//! queue, answer. Nothing else happens here — no payment lookup, no
//! provider — so a burst is acknowledged as fast as the queue confirms.
//! What the worker needs (identity, reference, figures) is parsed here once
//! and travels with the message; an authentic body payorch cannot use is
//! parked on arrival, for an operator.

use chrono::Utc;

use super::{
    event::{self, ReceivedWebhook},
    signature,
};
use crate::{
    config::Secret,
    queue::{Envelope, QueueError, QueueMessage, WebhookQueue},
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

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no such webhook provider")]
    UnknownProvider,
    #[error("the webhook signature is missing or wrong")]
    InvalidSignature,
    /// Not safely queued: the provider must retry.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl WebhookIngest {
    pub async fn receive(
        &self,
        provider: &str,
        signature_header: Option<&str>,
        body: &[u8],
        request_id: Option<String>,
    ) -> Result<Received, IngestError> {
        if provider != self.provider {
            return Err(IngestError::UnknownProvider);
        }
        let signed = signature_header
            .is_some_and(|given| signature::verify(self.secret.expose().as_bytes(), body, given));
        if !signed {
            metrics::counter!("payorch_webhooks_rejected_total", "reason" => "signature")
                .increment(1);
            return Err(IngestError::InvalidSignature);
        }
        let received_at = Utc::now();
        let (message, unusable) = match event::parse(body) {
            Ok((event, payload)) => {
                let webhook = ReceivedWebhook {
                    provider: provider.to_owned(),
                    event,
                    payload,
                    received_at,
                    request_id,
                };
                let unusable = webhook.action().err();
                (QueueMessage::WebhookV2(webhook), unusable)
            }
            Err(reason) => (
                QueueMessage::WebhookV1 {
                    provider: provider.to_owned(),
                    dedup_key: format!("unparsable:{}", uuid::Uuid::now_v7()),
                    body: String::from_utf8_lossy(body).into_owned(),
                    received_at,
                    request_id,
                },
                Some(format!("unparsable: {reason}")),
            ),
        };
        let envelope = Envelope {
            message,
            attempt: 0,
            reason: None,
        };
        let queued = match unusable {
            None => self
                .queue
                .publish(&envelope)
                .await
                .map(|()| Received::Queued),
            Some(reason) => {
                tracing::warn!(reason, "signed webhook cannot be used; parking it");
                self.queue
                    .park(&envelope, &reason)
                    .await
                    .map(|()| Received::Parked)
            }
        };
        queued.map_err(|err| {
            tracing::warn!(error = %err, "webhook not queued; the provider will retry");
            IngestError::Queue(err)
        })
    }
}
