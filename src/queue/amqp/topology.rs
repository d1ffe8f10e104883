//! The broker topology, declared idempotently on connect, all under the
//! configured prefix:
//!
//! - exchange `{p}.webhooks` (direct, durable) → quorum queue `{p}.webhooks`,
//!   which parks a message delivered [`DELIVERY_LIMIT`] times;
//! - one quorum retry queue per delay, `{p}.webhooks.retry.{ms}ms`: a
//!   message waits there for its TTL, then dead-letters back to the
//!   exchange (at least once);
//! - quorum parking queue `{p}.webhooks.dead` for messages past the last
//!   attempt.
//!
//! The events queue (`{p}.events…`) has the same shape.

use std::time::Duration;

use lapin::{
    Connection, ConnectionProperties, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::{AMQPValue, FieldTable},
};

use super::{AmqpQueue, CONNECT_TIMEOUT, ROUTING_KEY, args, text, unavailable};
use crate::queue::QueueError;

/// Exchange and queue names under one prefix.
#[derive(Debug, Clone)]
pub struct Names {
    pub exchange: String,
    pub main: String,
    pub dead: String,
    /// The configured prefix, shared by every queue kind.
    base: String,
    kind: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names::of_kind(prefix, crate::queue::WEBHOOKS)
    }

    /// The names of one queue kind (`webhooks`, `events`) under `prefix`.
    pub fn of_kind(prefix: &str, kind: &str) -> Names {
        Names {
            exchange: format!("{prefix}.{kind}"),
            main: format!("{prefix}.{kind}"),
            dead: format!("{prefix}.{kind}.dead"),
            base: prefix.to_owned(),
            kind: kind.to_owned(),
        }
    }

    /// The names of another queue kind under the same prefix.
    pub fn of_same_prefix(&self, kind: &str) -> Names {
        Names::of_kind(&self.base, kind)
    }

    pub fn retry(&self, delay: Duration) -> String {
        format!("{}.{}.retry.{}ms", self.base, self.kind, delay.as_millis())
    }
}

/// Deliveries of one message from the main queue (consumer crashes and
/// requeues) before RabbitMQ dead-letters it to the parking queue.
pub const DELIVERY_LIMIT: i64 = 50;

fn is_precondition_failed(err: &lapin::Error) -> bool {
    matches!(
        err.kind(),
        lapin::ErrorKind::ProtocolError(e)
            if matches!(e.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))
    )
}

impl AmqpQueue {
    /// A fresh connection with the topology declared.
    pub async fn connect(&self) -> Result<Connection, QueueError> {
        let connect = Connection::connect(&self.url, ConnectionProperties::default());
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| QueueError::Unavailable("connecting timed out".into()))?
            .map_err(unavailable)?;
        self.declare(&conn).await?;
        Ok(conn)
    }

    /// The queues and their arguments. Every queue is a replicated quorum
    /// queue. The main queue dead-letters to the parking queue a message
    /// delivered [`DELIVERY_LIMIT`] times (a message that keeps crashing its
    /// consumer) instead of RabbitMQ 4's silent drop after 20. Retry tiers
    /// hold a message for their delay, then dead-letter it back to the main
    /// queue, at least once (RabbitMQ ≥ 3.10).
    fn queues(&self) -> Vec<(String, FieldTable)> {
        let names = &self.names;
        let quorum = ("x-queue-type", text("quorum"));
        let mut queues = vec![
            (
                names.main.clone(),
                args(&[
                    quorum.clone(),
                    ("x-delivery-limit", AMQPValue::LongLongInt(DELIVERY_LIMIT)),
                    // The default exchange routes by queue name.
                    ("x-dead-letter-exchange", text("")),
                    ("x-dead-letter-routing-key", text(&names.dead)),
                    ("x-dead-letter-strategy", text("at-least-once")),
                    ("x-overflow", text("reject-publish")),
                ]),
            ),
            (
                names.dead.clone(),
                args(&[quorum.clone(), ("x-overflow", text("reject-publish"))]),
            ),
        ];
        for delay in &self.retry.delays {
            queues.push((
                names.retry(*delay),
                args(&[
                    quorum.clone(),
                    // The longest a jittered message waits; each message
                    // carries its own, shorter or equal, expiration.
                    (
                        "x-message-ttl",
                        AMQPValue::LongLongInt(
                            (delay.as_millis() as i64) * (100 + i64::from(self.jitter_percent))
                                / 100,
                        ),
                    ),
                    ("x-dead-letter-exchange", text(&names.exchange)),
                    ("x-dead-letter-routing-key", text(ROUTING_KEY)),
                    ("x-dead-letter-strategy", text("at-least-once")),
                    ("x-overflow", text("reject-publish")),
                ]),
            ));
        }
        queues
    }

    /// Declares the exchange, the queues and the binding. A queue that
    /// exists with other arguments (declared by an older payorch) is kept
    /// as it is, with a warning: RabbitMQ cannot change a queue's arguments
    /// in place (docs/operations.md says how to move it on).
    pub(super) async fn declare(&self, conn: &Connection) -> Result<(), QueueError> {
        let names = &self.names;
        let mut channel = conn.create_channel().await.map_err(unavailable)?;
        channel
            .exchange_declare(
                names.exchange.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        for (queue, arguments) in self.queues() {
            let declared = channel
                .queue_declare(queue.as_str().into(), durable, arguments)
                .await;
            match declared {
                Ok(_) => {}
                Err(err) if is_precondition_failed(&err) => {
                    // The broker closed the channel; the queue is there.
                    tracing::warn!(
                        queue,
                        error = %err,
                        "queue exists with other arguments than this version declares; \
                         keeping it (see docs/operations.md, \"Upgrading the queues\")"
                    );
                    channel = conn.create_channel().await.map_err(unavailable)?;
                }
                Err(err) => return Err(unavailable(err)),
            }
        }
        channel
            .queue_bind(
                names.main.as_str().into(),
                names.exchange.as_str().into(),
                ROUTING_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let _ = channel.close(200, "declared".into()).await;
        Ok(())
    }

    /// Deletes this prefix's exchange and queues, messages included (tests
    /// clean up after themselves with it; operators retiring a prefix).
    pub async fn delete_topology(&self) -> Result<(), QueueError> {
        let connect = Connection::connect(&self.url, ConnectionProperties::default());
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| QueueError::Timeout)?
            .map_err(unavailable)?;
        let channel = conn.create_channel().await.map_err(unavailable)?;
        let mut queues = vec![self.names.main.clone(), self.names.dead.clone()];
        queues.extend(self.retry.delays.iter().map(|d| self.names.retry(*d)));
        for queue in queues {
            channel
                .queue_delete(
                    queue.as_str().into(),
                    lapin::options::QueueDeleteOptions::default(),
                )
                .await
                .map_err(unavailable)?;
        }
        channel
            .exchange_delete(
                self.names.exchange.as_str().into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await
            .map_err(unavailable)?;
        let _ = conn.close(200, "topology deleted".into()).await;
        Ok(())
    }
}
