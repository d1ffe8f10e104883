//! RabbitMQ with publisher confirms, one [`AmqpQueue`] per queue kind
//! (`webhooks`, `events`) under the configured prefix. By concern:
//!
//! - [`topology`]: the exchange, main, retry-tier and parking queues,
//!   declared idempotently on connect;
//! - [`publisher`]: the confirm-mode publishing lanes; a publish is `Ok` only
//!   after the broker's ack;
//! - [`consumer`]: the broker's side of the one consumer loop
//!   (`crate::queue::consumer`): sessions, batching, acknowledgements;
//! - [`dead_letters`]: reading and replaying the parking queue.
//!
//! Here: where a message goes as the one policy (`crate::queue::settle`)
//! settles it — a retry tier, the parking queue, or nowhere. A broken
//! connection is dropped and made again on the next use.

mod consumer;
mod dead_letters;
mod publisher;
mod topology;

use std::{sync::Arc, time::Duration};

use lapin::{
    options::QueueDeclareOptions,
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use tokio::sync::Mutex;

pub use consumer::{LINGER, decode};
pub use topology::{DELIVERY_LIMIT, Names};

use super::{Disposition, Envelope, QueueError, RetryPolicy, Settlement};

const ROUTING_KEY: &str = "webhook";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct AmqpQueue {
    url: String,
    names: Names,
    pub retry: RetryPolicy,
    /// Retries wait up to this much longer, at random (per-message TTL).
    jitter_percent: u32,
    /// Making the publishing connection: one task at a time.
    publisher: Arc<Mutex<()>>,
    /// The publishing channels once made, read per publish without waiting
    /// in line; written only under `publisher`.
    ready: Arc<std::sync::Mutex<Option<Arc<publisher::Publishers>>>>,
}

fn unavailable(err: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(err.to_string())
}

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in pairs {
        table.insert(ShortString::from(*key), value.clone());
    }
    table
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

impl AmqpQueue {
    pub fn new(url: &str, prefix: &str, retry: RetryPolicy) -> AmqpQueue {
        AmqpQueue {
            url: url.to_owned(),
            names: Names::new(prefix),
            retry,
            jitter_percent: 0,
            publisher: Arc::default(),
            ready: Arc::default(),
        }
    }

    /// The same broker, another queue kind under the prefix (`events`),
    /// whose retries wait up to `jitter_percent` % longer at random.
    pub fn of_kind(self, kind: &str, jitter_percent: u32) -> AmqpQueue {
        AmqpQueue {
            names: self.names.of_same_prefix(kind),
            jitter_percent,
            ..self
        }
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    pub async fn publish(&self, envelope: &Envelope) -> Result<(), QueueError> {
        self.send(&self.names.exchange, ROUTING_KEY, envelope).await
    }

    pub async fn park(&self, envelope: &Envelope) -> Result<(), QueueError> {
        self.send("", &self.names.dead, envelope).await
    }

    /// Sends the message to the retry tier for its attempt, or parks it
    /// after the last one. The caller acks the original afterwards.
    pub async fn retry(&self, envelope: &Envelope, reason: &str) -> Result<(), QueueError> {
        self.requeue(envelope, &Disposition::Retry(reason.to_owned()))
            .await
    }

    /// Publishes `envelope` where `disposition` sends a consumed message.
    pub async fn requeue(
        &self,
        envelope: &Envelope,
        disposition: &Disposition,
    ) -> Result<(), QueueError> {
        let settlement = Settlement::of(disposition, envelope.attempt, &self.retry);
        self.carry_out(envelope, &settlement).await
    }

    /// Publishes `envelope` where `settlement` sends it: a retry tier, the
    /// parking queue, or nowhere.
    async fn carry_out(
        &self,
        envelope: &Envelope,
        settlement: &Settlement,
    ) -> Result<(), QueueError> {
        match (settlement, settlement.moved(envelope)) {
            (Settlement::ToTier { delay, .. }, Some(moved)) => {
                self.send_to_tier(*delay, &moved).await
            }
            (Settlement::Park { .. }, Some(moved)) => self.park(&moved).await,
            _ => Ok(()),
        }
    }

    async fn send_to_tier(&self, delay: Duration, envelope: &Envelope) -> Result<(), QueueError> {
        let expiration = (self.jitter_percent > 0).then(|| {
            super::jittered(delay, self.jitter_percent)
                .as_millis()
                .to_string()
        });
        self.send_with("", &self.names.retry(delay), envelope, expiration)
            .await
    }

    pub async fn check(&self) -> Result<(), QueueError> {
        self.publishers().await.map(drop)
    }

    /// Messages ready in each of this prefix's queues (tests, operators).
    /// Messages waiting (the main queue and the retry tiers) and parked.
    pub async fn counts(&self) -> Result<(u64, u64), QueueError> {
        let (waiting, dead, _) = self.status().await?;
        Ok((waiting, dead))
    }

    /// Messages waiting (ready or to be retried), parked, and the
    /// consumers of the main queue: one connection, one passive declare
    /// per queue.
    pub async fn status(&self) -> Result<(u64, u64, u64), QueueError> {
        let declared = match self.channel_on_publishing_connection().await {
            // A process that publishes already has a connection: a channel
            // on it costs a round trip, a new connection a handshake.
            Some(channel) => {
                let declared = self.declare_passively(&channel).await;
                let _ = channel.close(200, "depths read".into()).await;
                declared?
            }
            None => self.declared().await?,
        };
        let count = |keep: &dyn Fn(&str) -> bool| -> u64 {
            declared
                .iter()
                .filter(|(name, _, _)| keep(name))
                .map(|(_, n, _)| u64::from(*n))
                .sum()
        };
        let dead = count(&|name| name == self.names.dead);
        let waiting = count(&|name| name != self.names.dead);
        let consumers = declared
            .iter()
            .find(|(name, _, _)| *name == self.names.main)
            .map_or(0, |(_, _, c)| u64::from(*c));
        Ok((waiting, dead, consumers))
    }

    pub async fn depths(&self) -> Result<Vec<(String, u32)>, QueueError> {
        Ok(self
            .declared()
            .await?
            .into_iter()
            .map(|(name, messages, _)| (name, messages))
            .collect())
    }

    /// Each of the queue's queues: name, messages, consumers.
    async fn declared(&self) -> Result<Vec<(String, u32, u32)>, QueueError> {
        let conn = self.connect().await?;
        let channel = conn.create_channel().await.map_err(unavailable)?;
        let declared = self.declare_passively(&channel).await;
        let _ = conn.close(200, "depths read".into()).await;
        declared
    }

    /// Each of the queue's queues on `channel`: name, messages, consumers.
    async fn declare_passively(
        &self,
        channel: &lapin::Channel,
    ) -> Result<Vec<(String, u32, u32)>, QueueError> {
        let mut names = vec![self.names.main.clone(), self.names.dead.clone()];
        names.extend(self.retry.delays.iter().map(|d| self.names.retry(*d)));
        let mut declared = Vec::new();
        for name in names {
            let queue = channel
                .queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
            declared.push((name, queue.message_count(), queue.consumer_count()));
        }
        Ok(declared)
    }
}
