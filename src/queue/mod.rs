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
//! One rule, one place: what a disposition does is decided once
//! ([`settle`]), and one consumer loop ([`consumer`]) serves both
//! backends; each backend only stores and moves messages.
//!
//! A message is a versioned, tagged [`QueueMessage`] ([`message`]); its
//! identity (the event's dedup key) travels as the AMQP `message_id`, and
//! the attempt count and reasons as headers (columns in the table). The
//! queue reads no payload: it imports nothing of the configuration, the
//! connectors or webhook ingest, which build on it.

pub mod amqp;
pub mod consumer;
pub mod message;
pub mod settle;
pub mod table;

use std::future::Future;

use sea_orm::DatabaseConnection;

pub use consumer::{Decision, Intake};
pub use message::{Disposition, Envelope, EventDelivery, QueueError, QueueMessage};
pub use settle::{RetryPolicy, Settlement, jittered};

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
            WebhookQueue::Amqp(queue) => queue.requeue(envelope, disposition).await,
            WebhookQueue::Table(queue) => queue.requeue(envelope, disposition).await,
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

    /// Consumes until `shutdown`, one message at a time and up to
    /// `prefetch` at once, settling each by what `handle` decides; then
    /// stops taking messages, finishes those it holds, and returns. A
    /// message is acknowledged only after its handler returned and its
    /// next home (if any) is safe, so a crash redelivers it; a handler that
    /// panics sends its message to the retry tier (and so, in the end, to
    /// the dead letters) instead of holding it forever.
    pub async fn consume<H, F>(&self, prefetch: u16, shutdown: impl Future<Output = ()>, handle: H)
    where
        H: Fn(Envelope) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Disposition> + Send + 'static,
    {
        self.consume_with(
            Intake::singly(prefetch),
            shutdown,
            consumer::one_at_a_time(handle),
        )
        .await;
    }

    /// Like [`Self::consume`], but `handle` takes what is in hand, up to
    /// `batch` messages (RabbitMQ, waiting at most [`amqp::LINGER`] after
    /// the first; the queue table hands over one at a time, up to
    /// `prefetch` at once), and decides each; a batch is acknowledged once
    /// every message in it is settled. A handler that panics sends its
    /// whole batch to the retry tier.
    pub async fn consume_batches<H, F>(
        &self,
        prefetch: u16,
        batch: usize,
        shutdown: impl Future<Output = ()>,
        handle: H,
    ) where
        H: Fn(Vec<Envelope>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Vec<Decision>> + Send + 'static,
    {
        let intake = match self {
            WebhookQueue::Amqp(_) => Intake::batched(prefetch, batch),
            WebhookQueue::Table(_) => Intake::singly(prefetch),
        };
        self.consume_with(intake, shutdown, handle).await;
    }

    /// The consumer loop ([`consumer`]) on this backend.
    pub async fn consume_with<H, F>(
        &self,
        intake: Intake,
        shutdown: impl Future<Output = ()>,
        handle: H,
    ) where
        H: Fn(Vec<Envelope>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Vec<Decision>> + Send + 'static,
    {
        match self {
            WebhookQueue::Amqp(queue) => queue.consume(intake, shutdown, handle).await,
            WebhookQueue::Table(queue) => queue.consume_with(intake, shutdown, handle).await,
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

    /// Messages waiting (ready or to be retried) and parked.
    pub async fn counts(&self) -> Result<(u64, u64), QueueError> {
        match self {
            WebhookQueue::Amqp(queue) => queue.counts().await,
            WebhookQueue::Table(queue) => queue.depths().await,
        }
    }

    /// Messages waiting and parked, and how many consumers are connected
    /// (RabbitMQ knows; the queue table has no connections: `None`).
    pub async fn status(&self) -> Result<(u64, u64, Option<u64>), QueueError> {
        match self {
            WebhookQueue::Amqp(queue) => {
                let (waiting, dead, consumers) = queue.status().await?;
                Ok((waiting, dead, Some(consumers)))
            }
            WebhookQueue::Table(queue) => {
                let (waiting, dead) = queue.depths().await?;
                Ok((waiting, dead, None))
            }
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
