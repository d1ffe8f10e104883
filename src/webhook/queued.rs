//! Webhooks as the queue carries them, read back for the worker. Ingest
//! queues a verified webhook as `webhook.v2`, parsed once on receipt, or —
//! an authentic body payorch could not parse — as `webhook.v1` raw text,
//! parked. The queue carries both without reading them; this is where a
//! message becomes a [`ReceivedWebhook`] again.

use crate::{
    domain::webhook::{RawJson, ReceivedWebhook},
    queue::QueueMessage,
};

/// The webhook a queued message carries. A `webhook.v1` body is parsed
/// here, once: those predate other connectors, so they are all Paystack's
/// dialect.
pub fn received(message: QueueMessage) -> Result<ReceivedWebhook, String> {
    match message {
        QueueMessage::WebhookV2(webhook) => Ok(webhook),
        QueueMessage::EventDelivery(_) => Err("an event delivery, not a webhook".into()),
        QueueMessage::WebhookV1 {
            provider,
            body,
            received_at,
            request_id,
            ..
        } => {
            let event = crate::provider::paystack::parse_event(body.as_bytes())?;
            Ok(ReceivedWebhook {
                provider,
                event,
                payload: RawJson::new(body),
                received_at,
                request_id,
            })
        }
    }
}
