//! Publishing with confirms: a pool of confirm-mode channels on one
//! connection, made on first use and made again (with the topology
//! declared) once broken. A publish is `Ok` only after the broker's ack;
//! messages are persistent, and published `mandatory` so a message the
//! broker could not route is a failure, not a delivery.

use std::sync::Arc;

use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::AMQPValue,
};
use tokio::sync::Mutex;

use super::{AmqpQueue, CONFIRM_TIMEOUT, CONNECT_TIMEOUT, args, text, unavailable};
use crate::queue::{Envelope, QueueError};

/// Confirm-mode channels on one connection. A publish holds its channel
/// from `basic_publish` until its confirm: RabbitMQ returns an unroutable
/// `mandatory` message on its channel without naming the publish, and
/// confirms in batches, so on a channel shared by concurrent publishes
/// lapin could hand the return to another publish's confirm, and the lost
/// message's confirm would read as a clean ack.
pub(super) struct Publishers {
    conn: Connection,
    channels: Vec<Mutex<Channel>>,
    next: std::sync::atomic::AtomicUsize,
}

/// Publishes in flight at once per process.
const PUBLISH_CHANNELS: usize = 64;

impl Publishers {
    fn usable(&self) -> bool {
        self.conn.status().connected()
    }

    /// A free channel, or the next one in turn when all are busy.
    async fn channel(&self) -> tokio::sync::MutexGuard<'_, Channel> {
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for i in 0..self.channels.len() {
            if let Ok(guard) = self.channels[(start + i) % self.channels.len()].try_lock() {
                return guard;
            }
        }
        self.channels[start % self.channels.len()].lock().await
    }
}

impl AmqpQueue {
    /// The publishing channels, (re)made when missing or broken, within
    /// [`CONNECT_TIMEOUT`] (twice: connecting, then declaring): a broker
    /// that takes connections but does not answer makes a 503, not a hang.
    pub(super) async fn publishers(&self) -> Result<Arc<Publishers>, QueueError> {
        if let Some(publishers) = self.ready_publishers()
            && publishers.usable()
        {
            return Ok(publishers);
        }
        let _making = self.publisher.lock().await;
        if let Some(publishers) = self.ready_publishers()
            && publishers.usable()
        {
            return Ok(publishers);
        }
        *self.ready.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let made = tokio::time::timeout(2 * CONNECT_TIMEOUT, async {
            let conn = self.connect().await?;
            let mut channels = Vec::with_capacity(PUBLISH_CHANNELS);
            for _ in 0..PUBLISH_CHANNELS {
                let channel = conn.create_channel().await.map_err(unavailable)?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(unavailable)?;
                channels.push(Mutex::new(channel));
            }
            Ok::<_, QueueError>(Publishers {
                conn,
                channels,
                next: Default::default(),
            })
        })
        .await
        .map_err(|_| QueueError::Timeout)??;
        let publishers = Arc::new(made);
        *self.ready.lock().unwrap_or_else(|p| p.into_inner()) = Some(publishers.clone());
        Ok(publishers)
    }

    /// A fresh channel on the publishing connection, when this process has
    /// one up (never made for the asking: making it declares topology).
    pub(super) async fn channel_on_publishing_connection(&self) -> Option<Channel> {
        let publishers = self.ready_publishers().filter(|p| p.usable())?;
        publishers.conn.create_channel().await.ok()
    }

    fn ready_publishers(&self) -> Option<Arc<Publishers>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Drops `failed` so the next publish makes (and declares) anew, unless
    /// another publish already replaced it: publishes failing together on
    /// one pool rebuild it once.
    fn forget_publisher(&self, failed: &Arc<Publishers>) {
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        if ready
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, failed))
        {
            *ready = None;
        }
    }

    /// Publishes and waits for the broker's confirm. Published `mandatory`:
    /// the broker confirms a message it could not route to any queue (a
    /// deleted queue, a broken binding) too, but hands it back first — that
    /// is a failure, not a delivery. The publisher is then dropped, so the
    /// next publish reconnects and declares the topology again.
    pub(super) async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        envelope: &Envelope,
    ) -> Result<(), QueueError> {
        self.send_with(exchange, routing_key, envelope, None).await
    }

    /// [`Self::send`], with a per-message expiration (milliseconds) if set.
    pub(super) async fn send_with(
        &self,
        exchange: &str,
        routing_key: &str,
        envelope: &Envelope,
        expiration: Option<String>,
    ) -> Result<(), QueueError> {
        let mut props = properties(envelope);
        if let Some(ms) = expiration {
            props = props.with_expiration(ms.into());
        }
        let publishers = self.publishers().await?;
        let payload = serde_json::to_vec(&envelope.message).expect("a queue message serializes");
        let result = tokio::time::timeout(CONFIRM_TIMEOUT, async {
            let channel = publishers.channel().await;
            channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &payload,
                    props,
                )
                .await?
                .await
        })
        .await;
        match result {
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(_)))) => {
                tracing::warn!(
                    exchange,
                    routing_key,
                    "the broker could not route the message; declaring the topology again"
                );
                metrics::counter!("payorch_queue_unroutable_total").increment(1);
                self.forget_publisher(&publishers);
                Err(QueueError::Unroutable)
            }
            Ok(Ok(_)) => Err(QueueError::Nacked),
            Ok(Err(err)) => {
                self.forget_publisher(&publishers);
                Err(unavailable(err))
            }
            Err(_) => {
                self.forget_publisher(&publishers);
                Err(QueueError::Timeout)
            }
        }
    }
}

fn properties(envelope: &Envelope) -> BasicProperties {
    let mut headers = vec![(
        "x-attempt",
        AMQPValue::LongLongInt(i64::from(envelope.attempt)),
    )];
    if let Some(reason) = &envelope.reason {
        headers.push(("x-reason", text(reason)));
    }
    headers.push(("x-provider", text(envelope.message.provider())));
    BasicProperties::default()
        .with_message_id(envelope.message.dedup_key().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_headers(args(&headers))
}
