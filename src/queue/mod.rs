//! The webhook queue: one facade, [`WebhookQueue`], over RabbitMQ ([`amqp`],
//! used whenever `AMQP_URL` is set) and a table in payorch's own database
//! ([`table`], the in-process queue otherwise). Both are durable: a message
//! is published only once the broker confirmed it or its row committed.
//!
//! Both sides of the queue go through the facade: [`WebhookQueue::publish`]
//! (and `park`) on ingest, [`WebhookQueue::consume`] in the worker, with one
//! contract — the handler's [`Disposition`] acknowledges a message, sends it
//! to the retry tier for its attempt number (each tier its own delay, so a
//! long delay never holds up a short one), or parks it for an operator.
//! After the last tier a message is parked, never dropped.
//!
//! A message is a versioned, tagged [`QueueMessage`]; its identity (the
//! event's dedup key) travels as the AMQP `message_id`, and the attempt
//! count and reasons as headers (columns in the table).

pub mod amqp;
pub mod table;

use std::{future::Future, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
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

/// Retry tiers: the delay before each further attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub delays: Vec<Duration>,
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`, or `None`: park it.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        self.delays.get(attempt as usize).copied()
    }

    /// The delay before attempt `attempt + 1`, at least `not_before`: the
    /// shortest tier that is (or the longest there is). `None`: park it.
    pub fn tier_at_least(&self, attempt: u32, not_before: Duration) -> Option<Duration> {
        let own = self.delay_after(attempt)?;
        let wanted = own.max(not_before);
        Some(
            self.delays
                .iter()
                .copied()
                .filter(|d| *d >= wanted)
                .min()
                .or_else(|| self.delays.iter().copied().max())
                .unwrap_or(own),
        )
    }
}

/// `delay` lengthened by up to `percent` %, at random (spreads the retries
/// of many messages that failed together).
pub fn jittered(delay: Duration, percent: u32) -> Duration {
    if percent == 0 {
        return delay;
    }
    let extra = rand::random_range(0..=percent) as f64 / 100.0;
    delay.mul_f64(1.0 + extra)
}

/// The provider webhooks' queue.
pub const WEBHOOKS: &str = "webhooks";
/// The merchant events' delivery queue.
pub const EVENTS: &str = "events";
/// Event delivery retries are lengthened by up to this much, at random.
pub const EVENT_RETRY_JITTER_PERCENT: u32 = 20;

/// The queue, its backend chosen once from the configuration.
#[derive(Clone)]
pub enum WebhookQueue {
    Amqp(amqp::AmqpQueue),
    Table(table::TableQueue),
}

/// Where the queues live, resolved once at start: RabbitMQ, or the table
/// in payorch's own database.
#[derive(Clone)]
pub enum QueueBackend {
    /// The broker at this URL.
    Amqp(String),
    /// The `queued_messages` table in this database.
    Table(DatabaseConnection),
}

impl WebhookQueue {
    /// The provider webhooks' queue under `prefix`, retried on `retry`.
    pub fn webhooks(backend: &QueueBackend, prefix: &str, retry: RetryPolicy) -> WebhookQueue {
        WebhookQueue::of_kind(backend, prefix, WEBHOOKS, retry, 0)
    }

    /// The merchant events' delivery queue, beside the webhook queue on the
    /// same backend: its own retry schedule, with jitter.
    pub fn events(backend: &QueueBackend, prefix: &str, retry: RetryPolicy) -> WebhookQueue {
        WebhookQueue::of_kind(backend, prefix, EVENTS, retry, EVENT_RETRY_JITTER_PERCENT)
    }

    fn of_kind(
        backend: &QueueBackend,
        prefix: &str,
        kind: &str,
        retry: RetryPolicy,
        jitter_percent: u32,
    ) -> WebhookQueue {
        match backend {
            QueueBackend::Amqp(url) => WebhookQueue::Amqp(
                amqp::AmqpQueue::new(url, prefix, retry).of_kind(kind, jitter_percent),
            ),
            QueueBackend::Table(db) => WebhookQueue::Table(
                table::TableQueue::new(db.clone(), prefix, retry).of_kind(kind, jitter_percent),
            ),
        }
    }

    /// Puts a message on the main queue; `Ok` only once it is safe (broker
    /// confirmed, or its row committed).
    pub async fn publish(&self, envelope: &Envelope) -> Result<(), QueueError> {
        match self {
            WebhookQueue::Amqp(queue) => queue.publish(envelope).await,
            WebhookQueue::Table(queue) => queue.publish(envelope).await,
        }
    }

    /// Sends `envelope`, a message not taken from the queue (a part split
    /// off another), where `disposition` says, as if it had been consumed:
    /// nowhere (`Ack`), a retry tier, the first tier uncounted, or parked.
    pub async fn requeue(
        &self,
        envelope: &Envelope,
        disposition: &Disposition,
    ) -> Result<(), QueueError> {
        match self {
            WebhookQueue::Amqp(queue) => queue.settle_new(envelope, disposition).await,
            WebhookQueue::Table(queue) => queue.settle_new(envelope, disposition).await,
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
            WebhookQueue::Table(queue) => queue.park_new(&parked).await,
        }
    }

    /// Consumes until `shutdown`, at most `prefetch` messages in hand,
    /// settling each by what `handle` decides; then stops taking messages,
    /// finishes those it holds, and returns. A message is acknowledged only
    /// after its handler returned, so a crash redelivers it; a handler that
    /// panics sends its message to the retry tier (and so, in the end, to
    /// the dead letters) instead of holding it forever.
    pub async fn consume<H, F>(&self, prefetch: u16, shutdown: impl Future<Output = ()>, handle: H)
    where
        H: Fn(Envelope) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Disposition> + Send + 'static,
    {
        let handle = move |envelope: Envelope| {
            use futures_util::FutureExt;
            let key = envelope.message.dedup_key().to_owned();
            std::panic::AssertUnwindSafe(handle(envelope))
                .catch_unwind()
                .map(move |outcome| {
                    outcome.unwrap_or_else(|_| {
                        tracing::error!(
                            dedup_key = key,
                            "webhook handling panicked; retrying it later"
                        );
                        Disposition::Retry("handling panicked".into())
                    })
                })
        };
        match self {
            WebhookQueue::Amqp(queue) => queue.consume(prefetch, shutdown, handle).await,
            WebhookQueue::Table(queue) => queue.consume(prefetch, shutdown, handle).await,
        }
    }

    /// Like [`Self::consume`], but `handle` takes what is in hand, up to
    /// `batch` messages (RabbitMQ; the queue table hands over one at a
    /// time), and decides each; a batch is acknowledged once every message
    /// in it is settled. A handler that panics sends its whole batch to
    /// the retry tier.
    pub async fn consume_batches<H, F>(
        &self,
        prefetch: u16,
        batch: usize,
        shutdown: impl Future<Output = ()>,
        handle: H,
    ) where
        H: Fn(Vec<Envelope>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Vec<Disposition>> + Send + 'static,
    {
        let handle = move |envelopes: Vec<Envelope>| {
            use futures_util::FutureExt;
            let count = envelopes.len();
            std::panic::AssertUnwindSafe(handle(envelopes))
                .catch_unwind()
                .map(move |outcome| {
                    outcome.unwrap_or_else(|_| {
                        tracing::error!(
                            count,
                            "webhook batch handling panicked; retrying it later"
                        );
                        vec![Disposition::Retry("handling panicked".into()); count]
                    })
                })
        };
        match self {
            WebhookQueue::Amqp(queue) => {
                queue
                    .consume_batches(prefetch, batch, shutdown, handle)
                    .await
            }
            WebhookQueue::Table(queue) => {
                queue
                    .consume(prefetch, shutdown, move |envelope| {
                        let handled = handle(vec![envelope]);
                        async move {
                            handled
                                .await
                                .pop()
                                .unwrap_or_else(|| Disposition::Retry("no disposition".into()))
                        }
                    })
                    .await
            }
        }
    }

    /// Up to `limit` parked messages, without removing them.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<Envelope>, QueueError> {
        match self {
            WebhookQueue::Amqp(queue) => queue.dead_letters(limit).await,
            WebhookQueue::Table(queue) => queue.dead_letters(limit).await,
        }
    }

    /// Moves parked messages back to the main queue with a fresh attempt
    /// count: all of them, or the one whose identity is `only`.
    pub async fn replay(&self, only: Option<&str>) -> Result<usize, QueueError> {
        match self {
            WebhookQueue::Amqp(queue) => queue.replay(only).await,
            WebhookQueue::Table(queue) => queue.replay(only).await,
        }
    }

    /// Whether the backend can take messages now (readiness).
    pub async fn check(&self) -> Result<(), QueueError> {
        match self {
            WebhookQueue::Amqp(queue) => queue.check().await,
            WebhookQueue::Table(queue) => queue.check().await,
        }
    }
}
