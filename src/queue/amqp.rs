//! RabbitMQ with publisher confirms. Topology, declared idempotently on
//! connect, all under the configured prefix:
//!
//! - exchange `{p}.webhooks` (direct, durable) → quorum queue `{p}.webhooks`,
//!   which parks a message delivered [`DELIVERY_LIMIT`] times;
//! - one quorum retry queue per delay, `{p}.webhooks.retry.{ms}ms`: a
//!   message waits there for its TTL, then dead-letters back to the
//!   exchange (at least once);
//! - quorum parking queue `{p}.webhooks.dead` for messages past the last
//!   attempt.
//!
//! Messages are persistent; a publish is `Ok` only after the broker's ack.
//! A broken connection is dropped and made again on the next use.

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
        BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
        QueueBindOptions, QueueDeclareOptions,
    },
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use tokio::{sync::Mutex, task::JoinSet};

use super::{Disposition, Envelope, QueueError, QueueMessage, RetryPolicy};

const ROUTING_KEY: &str = "webhook";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a worker holding fewer messages than a batch waits for more:
/// the most a lone webhook is delayed by batching.
pub const LINGER: Duration = Duration::from_millis(2);

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
    ready: Arc<std::sync::Mutex<Option<Arc<Publishers>>>>,
}

/// Confirm-mode channels on one connection. A publish holds its channel
/// from `basic_publish` until its confirm: RabbitMQ returns an unroutable
/// `mandatory` message on its channel without naming the publish, and
/// confirms in batches, so on a channel shared by concurrent publishes
/// lapin could hand the return to another publish's confirm, and the lost
/// message's confirm would read as a clean ack.
struct Publishers {
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
        Names::of_kind(prefix, super::WEBHOOKS)
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
            names: Names::of_kind(&self.names.base, kind),
            jitter_percent,
            ..self
        }
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

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
    async fn declare(&self, conn: &Connection) -> Result<(), QueueError> {
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

    /// The publishing channels, (re)made when missing or broken, within
    /// [`CONNECT_TIMEOUT`] (twice: connecting, then declaring): a broker
    /// that takes connections but does not answer makes a 503, not a hang.
    async fn publishers(&self) -> Result<Arc<Publishers>, QueueError> {
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
    async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        envelope: &Envelope,
    ) -> Result<(), QueueError> {
        self.send_with(exchange, routing_key, envelope, None).await
    }

    /// [`Self::send`], with a per-message expiration (milliseconds) if set.
    async fn send_with(
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

    pub async fn publish(&self, envelope: &Envelope) -> Result<(), QueueError> {
        self.send(&self.names.exchange, ROUTING_KEY, envelope).await
    }

    pub async fn park(&self, envelope: &Envelope) -> Result<(), QueueError> {
        self.send("", &self.names.dead, envelope).await
    }

    /// Sends the message to the retry tier for its attempt, or parks it
    /// after the last one. The caller acks the original afterwards.
    pub async fn retry(&self, envelope: &Envelope, reason: &str) -> Result<(), QueueError> {
        self.retry_not_before(envelope, reason, Duration::ZERO)
            .await
    }

    /// [`Self::retry`] into the first tier at least `not_before` long.
    pub async fn retry_not_before(
        &self,
        envelope: &Envelope,
        reason: &str,
        not_before: Duration,
    ) -> Result<(), QueueError> {
        let next = Envelope {
            message: envelope.message.clone(),
            attempt: envelope.attempt + 1,
            reason: Some(reason.to_owned()),
        };
        match self.retry.tier_at_least(envelope.attempt, not_before) {
            Some(delay) => self.send_to_tier(delay, &next).await,
            None => {
                self.park(&Envelope {
                    attempt: envelope.attempt,
                    ..next
                })
                .await
            }
        }
    }

    /// Back to the first retry tier, the attempt count unchanged.
    pub async fn defer(&self, envelope: &Envelope, reason: &str) -> Result<(), QueueError> {
        let Some(first) = self.retry.delays.first().copied() else {
            return self.park(envelope).await;
        };
        let again = Envelope {
            reason: Some(reason.to_owned()),
            ..envelope.clone()
        };
        self.send_to_tier(first, &again).await
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

    /// A consuming channel with `prefetch` unacknowledged messages at most.
    pub async fn consumer_channel(
        &self,
        prefetch: u16,
    ) -> Result<(Connection, Channel), QueueError> {
        let conn = self.connect().await?;
        let channel = conn.create_channel().await.map_err(unavailable)?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        Ok((conn, channel))
    }

    /// Messages ready in each of this prefix's queues (tests, operators).
    pub async fn depths(&self) -> Result<Vec<(String, u32)>, QueueError> {
        let conn = self.connect().await?;
        let channel = conn.create_channel().await.map_err(unavailable)?;
        let mut names = vec![self.names.main.clone(), self.names.dead.clone()];
        names.extend(self.retry.delays.iter().map(|d| self.names.retry(*d)));
        let mut depths = Vec::new();
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
            depths.push((name, queue.message_count()));
        }
        let _ = conn.close(200, "depths read".into()).await;
        Ok(depths)
    }
}

impl AmqpQueue {
    /// Consumes the main queue until `shutdown` (see
    /// [`super::WebhookQueue::consume`]): bounded prefetch, reconnect with
    /// backoff, ack only after the handler's outcome is settled. What is
    /// not acknowledged goes back to the queue for other workers if this
    /// process dies.
    pub async fn consume<H, F>(&self, prefetch: u16, shutdown: impl Future<Output = ()>, handle: H)
    where
        H: Fn(Envelope) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Disposition> + Send + 'static,
    {
        tokio::pin!(shutdown);
        let mut session = Session::new(prefetch);
        loop {
            let Some((conn, channel, mut consumer)) = self.open(&mut session, &mut shutdown).await
            else {
                return;
            };
            let mut in_flight = JoinSet::new();
            let stopping = loop {
                tokio::select! {
                    _ = &mut shutdown => break true,
                    next = consumer.next() => match next {
                        Some(Ok(delivery)) => {
                            let queue = self.clone();
                            let handle = handle.clone();
                            in_flight.spawn(async move { queue.handle_delivery(delivery, handle).await });
                        }
                        Some(Err(err)) => {
                            tracing::warn!(error = %err, "consumer failed; reconnecting");
                            break false;
                        }
                        None => break false,
                    },
                    Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                }
            };
            if stopping {
                tracing::info!(
                    held = in_flight.len(),
                    "worker stopping: finishing held messages"
                );
                session.cancel(&channel).await;
            }
            while in_flight.join_next().await.is_some() {}
            let _ = conn.close(200, "worker done".into()).await;
            if stopping {
                tracing::info!("worker stopped");
                return;
            }
        }
    }

    /// Consumes the main queue until `shutdown` a batch at a time (see
    /// [`super::WebhookQueue::consume_batches`]): what arrived, up to
    /// `batch` messages, waiting at most [`LINGER`] for more once one is
    /// in hand. A batch is settled before the next is taken, so its last
    /// delivery tag acknowledges it whole (`multiple`).
    pub async fn consume_batches<H, F>(
        &self,
        prefetch: u16,
        batch: usize,
        shutdown: impl Future<Output = ()>,
        handle: H,
    ) where
        H: Fn(Vec<Envelope>) -> F,
        F: Future<Output = Vec<Disposition>>,
    {
        tokio::pin!(shutdown);
        let batch = batch.clamp(1, usize::from(prefetch.max(1)));
        let mut session = Session::new(prefetch);
        loop {
            let Some((conn, channel, mut consumer)) = self.open(&mut session, &mut shutdown).await
            else {
                return;
            };
            let stopping = loop {
                let first = tokio::select! {
                    _ = &mut shutdown => break true,
                    next = consumer.next() => next,
                };
                let mut deliveries = match first {
                    Some(Ok(delivery)) => vec![delivery],
                    Some(Err(err)) => {
                        tracing::warn!(error = %err, "consumer failed; reconnecting");
                        break false;
                    }
                    None => break false,
                };
                let linger = tokio::time::Instant::now() + LINGER;
                let mut broken = false;
                while deliveries.len() < batch {
                    match tokio::time::timeout_at(linger, consumer.next()).await {
                        Ok(Some(Ok(delivery))) => deliveries.push(delivery),
                        Ok(Some(Err(_)) | None) => {
                            broken = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                self.handle_batch(deliveries, &handle).await;
                if broken {
                    tracing::warn!("consumer failed; reconnecting");
                    break false;
                }
            };
            if stopping {
                session.cancel(&channel).await;
            }
            let _ = conn.close(200, "worker done".into()).await;
            if stopping {
                tracing::info!("worker stopped");
                return;
            }
        }
    }

    /// A consuming session: connected, topology declared, consuming. `None`
    /// if `shutdown` came first; retried with backoff meanwhile.
    async fn open<S: Future<Output = ()>>(
        &self,
        session: &mut Session,
        shutdown: &mut std::pin::Pin<&mut S>,
    ) -> Option<(Connection, Channel, lapin::Consumer)> {
        loop {
            let (conn, channel) = match self.consumer_channel(session.prefetch).await {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?session.backoff, "worker cannot reach the broker");
                    tokio::select! {
                        _ = shutdown.as_mut() => return None,
                        _ = tokio::time::sleep(session.backoff) => {}
                    }
                    session.backoff = (session.backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            let consumer = channel
                .basic_consume(
                    self.names.main.as_str().into(),
                    session.tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await;
            match consumer {
                Ok(consumer) => {
                    tracing::info!(
                        queue = self.names.main,
                        prefetch = session.prefetch,
                        "worker consuming"
                    );
                    session.backoff = Duration::from_millis(200);
                    return Some((conn, channel, consumer));
                }
                Err(err) => tracing::warn!(error = %err, "cannot consume; reconnecting"),
            }
        }
    }

    /// Settles a batch: each message's non-ack disposition is published
    /// (confirmed) first, then the batch is acknowledged with one
    /// `multiple` ack, or, if some message could not be moved on, each is
    /// settled alone (those back to the queue).
    async fn handle_batch<H, F>(&self, deliveries: Vec<Delivery>, handle: &H)
    where
        H: Fn(Vec<Envelope>) -> F,
        F: Future<Output = Vec<Disposition>>,
    {
        let mut decoded = Vec::with_capacity(deliveries.len());
        let mut envelopes = Vec::with_capacity(deliveries.len());
        let mut next: Vec<Result<(), QueueError>> = Vec::with_capacity(deliveries.len());
        for (index, delivery) in deliveries.iter().enumerate() {
            match decode(&delivery.data, &delivery.properties) {
                Ok(envelope) => {
                    decoded.push(index);
                    envelopes.push(envelope);
                    next.push(Ok(()));
                }
                Err(reason) => next.push(self.park(&foreign(delivery, reason)).await),
            }
        }
        let dispositions = handle(envelopes.clone()).await;
        let moved = futures_util::future::join_all(
            envelopes
                .iter()
                .zip(&dispositions)
                .map(|(envelope, disposition)| self.settle_new(envelope, disposition)),
        )
        .await;
        for (index, result) in decoded.into_iter().zip(moved) {
            next[index] = result;
        }
        let Some(last) = deliveries.last() else {
            return;
        };
        if next.iter().all(Result::is_ok) {
            let acked = last.ack(BasicAckOptions { multiple: true }).await;
            if let Err(err) = acked {
                tracing::warn!(error = %err, "ack failed; the batch will be redelivered");
            }
            return;
        }
        for (delivery, result) in deliveries.iter().zip(next) {
            settle(delivery, result).await;
        }
    }

    async fn handle_delivery<H, F>(&self, delivery: Delivery, handle: H)
    where
        H: Fn(Envelope) -> F,
        F: Future<Output = Disposition>,
    {
        let envelope = match decode(&delivery.data, &delivery.properties) {
            Ok(envelope) => envelope,
            Err(reason) => {
                settle(&delivery, self.park(&foreign(&delivery, reason)).await).await;
                return;
            }
        };
        let next = match handle(envelope.clone()).await {
            Disposition::Ack => Ok(()),
            other => self.settle_new(&envelope, &other).await,
        };
        settle(&delivery, next).await;
    }

    /// Publishes `envelope` where `disposition` sends a consumed message.
    pub async fn settle_new(
        &self,
        envelope: &Envelope,
        disposition: &Disposition,
    ) -> Result<(), QueueError> {
        match disposition {
            Disposition::Ack => Ok(()),
            Disposition::Retry(reason) => self.retry(envelope, reason).await,
            Disposition::RetryNotBefore(reason, not_before) => {
                self.retry_not_before(envelope, reason, *not_before).await
            }
            Disposition::Defer(reason) => self.defer(envelope, reason).await,
            Disposition::Park(reason) => {
                self.park(&Envelope {
                    reason: Some(reason.clone()),
                    ..envelope.clone()
                })
                .await
            }
        }
    }
}

/// A delivery that does not read as an envelope: not ours to read, but
/// not ours to drop either, so it is parked as it came.
fn foreign(delivery: &Delivery, reason: String) -> Envelope {
    Envelope {
        message: QueueMessage::WebhookV1 {
            provider: "unknown".into(),
            dedup_key: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_default(),
            body: String::from_utf8_lossy(&delivery.data).into_owned(),
            received_at: chrono::Utc::now(),
            request_id: None,
        },
        attempt: 0,
        reason: Some(reason),
    }
}

/// A consumer's identity and reconnect state, across its sessions.
struct Session {
    prefetch: u16,
    tag: String,
    backoff: Duration,
}

impl Session {
    fn new(prefetch: u16) -> Session {
        Session {
            prefetch,
            tag: format!("payorch-worker-{}", uuid::Uuid::new_v4().simple()),
            backoff: Duration::from_millis(200),
        }
    }

    /// Stops deliveries to this consumer (shutdown).
    async fn cancel(&self, channel: &Channel) {
        let _ = channel
            .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default())
            .await;
    }
}

/// Acks once the message's next home is confirmed; otherwise hands it back.
async fn settle(delivery: &Delivery, next: Result<(), QueueError>) {
    let result = match next {
        Ok(()) => delivery.ack(BasicAckOptions::default()).await,
        Err(err) => {
            tracing::warn!(error = %err, "could not move the message on; returning it to the queue");
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
        }
    };
    if let Err(err) = result {
        // The channel is gone: the broker redelivers what was not acked.
        tracing::warn!(error = %err, "ack failed; the message will be redelivered");
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

/// Reads an envelope back from a delivery's payload and headers.
pub fn decode(data: &[u8], properties: &BasicProperties) -> Result<Envelope, String> {
    let message: QueueMessage =
        serde_json::from_slice(data).map_err(|e| format!("unreadable queue message: {e}"))?;
    let headers = properties.headers().as_ref();
    let header = |name: &str| headers.and_then(|h| h.inner().get(name));
    let attempt = match header("x-attempt") {
        Some(AMQPValue::LongLongInt(n)) => *n as u32,
        Some(AMQPValue::LongInt(n)) => *n as u32,
        _ => 0,
    };
    let reason = match header("x-reason") {
        Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    };
    Ok(Envelope {
        message,
        attempt,
        reason,
    })
}

impl AmqpQueue {
    /// Reads up to `limit` parked messages without removing them: they are
    /// held unacknowledged while read, and go back when the channel closes.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<Envelope>, QueueError> {
        let conn = self.connect().await?;
        let channel = conn.create_channel().await.map_err(unavailable)?;
        let mut parked = Vec::new();
        while parked.len() < limit {
            let got = channel
                .basic_get(
                    self.names.dead.as_str().into(),
                    lapin::options::BasicGetOptions::default(),
                )
                .await
                .map_err(unavailable)?;
            let Some(message) = got else { break };
            parked.push(
                decode(&message.delivery.data, &message.delivery.properties)
                    .map_err(QueueError::Unavailable)?,
            );
        }
        let _ = conn.close(200, "dead letters read".into()).await;
        Ok(parked)
    }

    /// Moves parked messages back to the main queue with a fresh attempt
    /// count: all of them, or the one whose identity is `only`. Each is
    /// removed from the parking queue only after the broker confirmed its
    /// copy on the main queue. Returns how many moved.
    pub async fn replay(&self, only: Option<&str>) -> Result<usize, QueueError> {
        let conn = self.connect().await?;
        let channel = conn.create_channel().await.map_err(unavailable)?;
        let mut moved = 0;
        loop {
            let got = channel
                .basic_get(
                    self.names.dead.as_str().into(),
                    lapin::options::BasicGetOptions::default(),
                )
                .await
                .map_err(unavailable)?;
            let Some(message) = got else { break };
            let Ok(envelope) = decode(&message.delivery.data, &message.delivery.properties) else {
                continue;
            };
            if only.is_some_and(|id| id != envelope.message.dedup_key()) {
                continue;
            }
            let fresh = Envelope {
                message: envelope.message,
                attempt: 0,
                reason: None,
            };
            self.publish(&fresh).await?;
            message
                .delivery
                .ack(lapin::options::BasicAckOptions::default())
                .await
                .map_err(unavailable)?;
            moved += 1;
        }
        let _ = conn.close(200, "replayed".into()).await;
        Ok(moved)
    }
}

impl AmqpQueue {
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
