//! The webhook queue: one facade over RabbitMQ ([`amqp`], durable, used
//! whenever `AMQP_URL` is set) and an in-process queue ([`memory`], the
//! embedded default: same processing code, not durable across a crash).
//!
//! A message is a versioned, tagged [`QueueMessage`]; its identity (the
//! event's dedup key) travels as the AMQP `message_id`, and the attempt
//! count and reasons as headers. A failed attempt goes to the retry tier for
//! its attempt number (each tier a queue with its own delay, so a long delay
//! never holds up a short one) and comes back; after the last tier it is
//! parked in the dead-letter queue, never dropped.

pub mod amqp;
pub mod memory;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// What travels through the queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type")]
pub enum QueueMessage {
    /// A provider webhook whose signature was verified on receipt.
    #[serde(rename = "webhook.v1")]
    WebhookV1 {
        provider: String,
        /// The event identity (see `crate::webhook::event`).
        dedup_key: String,
        /// The raw body as received.
        body: String,
        received_at: DateTime<Utc>,
        /// The ingest request's id, to follow one event through the logs.
        request_id: Option<String>,
    },
}

impl QueueMessage {
    pub fn dedup_key(&self) -> &str {
        match self {
            QueueMessage::WebhookV1 { dedup_key, .. } => dedup_key,
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

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    #[error("the broker did not confirm in time")]
    Timeout,
    #[error("the broker refused the message")]
    Nacked,
    #[error("the in-process queue is full")]
    Full,
}

/// Retry tiers and the number of attempts before parking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub delays: Vec<Duration>,
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`, or `None`: park it.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        self.delays.get(attempt as usize).copied()
    }

    pub fn max_attempts(&self) -> u32 {
        self.delays.len() as u32 + 1
    }
}

/// Publishing side, chosen once from the configuration.
#[derive(Clone)]
pub enum WebhookQueue {
    Amqp(amqp::AmqpQueue),
    Memory(memory::MemoryQueue),
}

impl WebhookQueue {
    pub fn from_config(cfg: &Config) -> WebhookQueue {
        match &cfg.amqp_url {
            Some(url) => WebhookQueue::Amqp(amqp::AmqpQueue::new(
                url.expose(),
                &cfg.queue_prefix,
                cfg.retry_policy.clone(),
            )),
            None => WebhookQueue::Memory(memory::MemoryQueue::new(cfg.retry_policy.clone())),
        }
    }

    /// Puts a message on the main queue; `Ok` only once it is safe (broker
    /// confirmed, or the in-process queue took it).
    pub async fn publish(&self, envelope: &Envelope) -> Result<(), QueueError> {
        match self {
            WebhookQueue::Amqp(queue) => queue.publish(envelope).await,
            WebhookQueue::Memory(queue) => queue.publish(envelope.clone()),
        }
    }

    /// Parks a message in the dead-letter queue with `reason`.
    pub async fn park(&self, envelope: &Envelope, reason: &str) -> Result<(), QueueError> {
        let parked = Envelope {
            reason: Some(reason.to_owned()),
            ..envelope.clone()
        };
        match self {
            WebhookQueue::Amqp(queue) => queue.park(&parked).await,
            WebhookQueue::Memory(queue) => {
                queue.park(parked);
                Ok(())
            }
        }
    }

    /// Whether the backend can take messages now (readiness).
    pub async fn check(&self) -> Result<(), QueueError> {
        match self {
            WebhookQueue::Amqp(queue) => queue.check().await,
            WebhookQueue::Memory(_) => Ok(()),
        }
    }
}
