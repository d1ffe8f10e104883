//! What the queue carries: a versioned, tagged [`QueueMessage`] in an
//! [`Envelope`] with its delivery history, and what a handler decides
//! about it ([`Disposition`]). The queue reads none of the payloads: a
//! webhook's body is webhook ingest's to read back (its `queued` module),
//! an event delivery the deliverer's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::webhook::ReceivedWebhook;

/// What travels through the queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type")]
pub enum QueueMessage {
    /// A verified webhook as raw text, read by the consumer: authentic
    /// bodies payorch could not parse (parked on receipt), and messages
    /// queued before `webhook.v2` existed.
    #[serde(rename = "webhook.v1")]
    WebhookV1 {
        provider: String,
        /// The event identity (see `crate::domain::webhook`).
        dedup_key: String,
        /// The raw body as received.
        body: String,
        received_at: DateTime<Utc>,
        /// The ingest request's id, to follow one event through the logs.
        request_id: Option<String>,
    },
    /// A verified webhook, parsed once on receipt.
    #[serde(rename = "webhook.v2")]
    WebhookV2(ReceivedWebhook),
    /// One merchant event for one endpoint (the events queue).
    #[serde(rename = "event_delivery.v1")]
    EventDelivery(EventDelivery),
}

/// What the events queue carries: an event, the endpoints it goes to, and
/// its body (the merchant's own data; the endpoints' secrets stay in the
/// database). The relay queues one message per event for all its
/// endpoints; a delivery that fails is queued again for its endpoint alone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventDelivery {
    /// `{event_id}` (several endpoints) or `{event_id}:{endpoint_id}`: the
    /// message identity.
    pub key: String,
    pub event_id: String,
    pub endpoints: Vec<uuid::Uuid>,
    pub queued_at: DateTime<Utc>,
    /// The body as stored; absent: read it from the event log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Times this delivery was put off since its last attempt (its
    /// merchant's share of the deliverer was in use, its endpoint busy):
    /// past a limit, a deferral counts as an attempt.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deferred: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl EventDelivery {
    pub fn new(event_id: &str, endpoints: Vec<uuid::Uuid>, body: Option<String>) -> EventDelivery {
        let key = match endpoints.as_slice() {
            [one] => format!("{event_id}:{one}"),
            _ => event_id.to_owned(),
        };
        EventDelivery {
            key,
            event_id: event_id.to_owned(),
            endpoints,
            queued_at: Utc::now(),
            body,
            deferred: 0,
        }
    }
}

impl QueueMessage {
    pub fn dedup_key(&self) -> &str {
        match self {
            QueueMessage::WebhookV1 { dedup_key, .. } => dedup_key,
            QueueMessage::WebhookV2(webhook) => &webhook.event.dedup_key,
            QueueMessage::EventDelivery(delivery) => &delivery.key,
        }
    }

    pub fn provider(&self) -> &str {
        match self {
            QueueMessage::WebhookV1 { provider, .. } => provider,
            QueueMessage::WebhookV2(webhook) => &webhook.provider,
            QueueMessage::EventDelivery(_) => "payorch",
        }
    }

    pub fn received_at(&self) -> DateTime<Utc> {
        match self {
            QueueMessage::WebhookV1 { received_at, .. } => *received_at,
            QueueMessage::WebhookV2(webhook) => webhook.received_at,
            QueueMessage::EventDelivery(delivery) => delivery.queued_at,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            QueueMessage::WebhookV1 { request_id, .. } => request_id.as_deref(),
            QueueMessage::WebhookV2(webhook) => webhook.request_id.as_deref(),
            QueueMessage::EventDelivery(_) => None,
        }
    }
}

/// A message with its delivery history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub message: QueueMessage,
    /// Attempts made so far (0 on first delivery).
    pub attempt: u32,
    /// Why it was last retried or parked.
    pub reason: Option<String>,
}

/// What becomes of a consumed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done (applied, a duplicate, or nothing to do): acknowledge.
    Ack,
    /// Not now (unknown reference, database trouble): the retry tier.
    Retry(String),
    /// Never (unusable): the dead-letter queue, for an operator.
    Park(String),
    /// Like `Retry`, but not before this long (a receiver's `Retry-After`):
    /// the first tier at least this long and at least the attempt's own.
    RetryNotBefore(String, Duration),
    /// Not now and not counted as an attempt (its destination is busy):
    /// back after the first retry delay.
    Defer(String),
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    #[error("the broker did not confirm in time")]
    Timeout,
    #[error("the broker refused the message")]
    Nacked,
    #[error("the broker could not route the message to a queue")]
    Unroutable,
    #[error("the queue table: {0}")]
    Database(#[from] sea_orm::DbErr),
}
