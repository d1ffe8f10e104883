//! The ingest path of `POST /v1/webhooks/{provider}`: the connector's proof
//! of origin, one parse by the connector, queue, answer. Nothing else happens here — no payment lookup, no
//! provider — so a burst is acknowledged as fast as the queue confirms.
//! What the worker needs (identity, reference, figures) is parsed here once
//! and travels with the message; an authentic body payorch cannot use is
//! parked on arrival, for an operator.

use std::sync::Arc;

use chrono::Utc;

use crate::{
    domain::webhook::{RawJson, ReceivedWebhook},
    provider::Connectors,
    queue::{Envelope, QueueError, QueueMessage, WebhookQueue},
};

/// Largest webhook body accepted.
pub const MAX_BODY: usize = 256 * 1024;

#[derive(Clone)]
pub struct WebhookIngest {
    /// The enabled connectors: each reads its own webhooks.
    pub connectors: Arc<Connectors>,
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
    /// `provider`: the path's connector name (`sandbox` is the Paystack
    /// dialect); `header`: the request's headers, by name.
    pub async fn receive(
        &self,
        provider: &str,
        header: impl Fn(&str) -> Option<String>,
        body: &[u8],
        request_id: Option<String>,
    ) -> Result<Received, IngestError> {
        let connector = self
            .connectors
            .get(provider)
            .ok_or(IngestError::UnknownProvider)?;
        let proof = header(connector.webhook_header());
        if !connector.webhook_authentic(proof.as_deref(), body) {
            metrics::counter!("payorch_webhooks_rejected_total", "reason" => "signature")
                .increment(1);
            return Err(IngestError::InvalidSignature);
        }
        let received_at = Utc::now();
        let parsed = std::str::from_utf8(body)
            .map_err(|e| format!("not a provider event: {e}"))
            .and_then(|text| Ok((connector.parse_webhook(body)?, text)));
        let (message, unusable) = match parsed {
            Ok((event, text)) => {
                let unusable = connector.webhook_action(&event).err();
                let webhook = ReceivedWebhook {
                    provider: provider.to_owned(),
                    event,
                    payload: RawJson::new(text.to_owned()),
                    received_at,
                    request_id,
                };
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
