//! RabbitMQ's side of the one consumer loop (`crate::queue::consumer`):
//! consuming sessions (connect, declare, consume; reconnect with backoff
//! until shutdown), taking deliveries — up to a batch, waiting at most
//! [`LINGER`] after the first — and acknowledging them once their next
//! home is confirmed. A batch handled while no other is held is
//! acknowledged whole, with one `multiple` ack; otherwise each delivery
//! alone. A message that could not be moved on goes back to the queue
//! (nack, requeue); what is not acknowledged when a process dies is
//! redelivered to another worker.

use std::{future::Future, time::Duration};

use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
        BasicQosOptions, ConfirmSelectOptions,
    },
    types::{AMQPValue, FieldTable},
};

use super::{AmqpQueue, unavailable};
use crate::queue::{
    Envelope, QueueError, QueueMessage,
    consumer::{self, Decision, Ended, Inbox, Intake, Settler, Take, Taken, Verdict},
};

/// How long a worker holding fewer messages than a batch waits for more:
/// the most a lone webhook is delayed by batching.
pub const LINGER: Duration = Duration::from_millis(2);

impl AmqpQueue {
    /// Consumes the main queue until `shutdown` (see
    /// [`crate::queue::WebhookQueue::consume_with`]): bounded prefetch,
    /// reconnect with backoff, ack only after the handler's outcome is
    /// settled.
    pub async fn consume<H, F>(&self, intake: Intake, shutdown: impl Future<Output = ()>, handle: H)
    where
        H: Fn(Vec<Envelope>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Vec<Decision>> + Send + 'static,
    {
        tokio::pin!(shutdown);
        let mut session = Session::new(intake.prefetch);
        loop {
            let Some((conn, channel, consumer)) = self.open(&mut session, &mut shutdown).await
            else {
                return;
            };
            let mut deliveries = Deliveries {
                consumer,
                channel,
                tag: session.tag.clone(),
                pending: None,
                broken: false,
                linger: intake.batch > 1,
                settler: Acks {
                    queue: self.clone(),
                },
            };
            let ended = consumer::run(
                &mut deliveries,
                intake,
                &self.retry,
                shutdown.as_mut(),
                &handle,
            )
            .await;
            let _ = conn.close(200, "worker done".into()).await;
            if ended == Ended::Stopped {
                tracing::info!("worker stopped");
                return;
            }
        }
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
}

/// One session's deliveries, as the consumer loop takes them.
struct Deliveries {
    consumer: lapin::Consumer,
    channel: Channel,
    tag: String,
    /// A delivery received while waiting, not yet taken.
    pending: Option<Delivery>,
    /// The consumer failed or ended: the session is over.
    broken: bool,
    /// Whether to wait [`LINGER`] for more after the first (batches).
    linger: bool,
    settler: Acks,
}

impl Inbox for Deliveries {
    type Receipt = Delivery;
    type Settler = Acks;

    async fn take(&mut self, max: usize) -> Take<Delivery> {
        let Some(first) = self.pending.take() else {
            return if self.broken {
                Take::Broken
            } else {
                Take::Nothing
            };
        };
        let mut deliveries = vec![first];
        if self.linger {
            let until = tokio::time::Instant::now() + LINGER;
            while deliveries.len() < max {
                match tokio::time::timeout_at(until, self.consumer.next()).await {
                    Ok(Some(Ok(delivery))) => deliveries.push(delivery),
                    Ok(Some(Err(err))) => {
                        tracing::warn!(error = %err, "consumer failed; reconnecting");
                        self.broken = true;
                        break;
                    }
                    Ok(None) => {
                        self.broken = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        Take::Messages(
            deliveries
                .into_iter()
                .map(|delivery| Taken {
                    envelope: decode(&delivery.data, &delivery.properties),
                    receipt: delivery,
                })
                .collect(),
        )
    }

    async fn wait(&mut self) {
        if self.broken || self.pending.is_some() {
            return;
        }
        match self.consumer.next().await {
            Some(Ok(delivery)) => self.pending = Some(delivery),
            Some(Err(err)) => {
                tracing::warn!(error = %err, "consumer failed; reconnecting");
                self.broken = true;
            }
            None => self.broken = true,
        }
    }

    /// Stops deliveries to this consumer.
    async fn stop(&mut self, held: usize) {
        tracing::info!(held, "worker stopping: finishing held messages");
        let _ = self
            .channel
            .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default())
            .await;
    }

    fn settler(&self) -> Acks {
        self.settler.clone()
    }
}

/// Settles deliveries: moves, then acknowledgements.
#[derive(Clone)]
struct Acks {
    queue: AmqpQueue,
}

impl Settler for Acks {
    type Receipt = Delivery;

    /// Each message's next home is published (confirmed) first — a retry
    /// tier, the parking queue; an unreadable delivery is parked as it
    /// came — then the batch is acknowledged, with one `multiple` ack when
    /// `whole`, or, if some message could not be moved on, each alone
    /// (those back to the queue).
    async fn settle(&self, batch: Vec<(Delivery, Verdict)>, whole: bool) {
        let moved =
            futures_util::future::join_all(batch.iter().map(|(delivery, verdict)| async move {
                match verdict {
                    Verdict::Settled(envelope, settlement) => {
                        self.queue.carry_out(envelope, settlement).await
                    }
                    Verdict::Unreadable(reason) => {
                        self.queue.park(&foreign(delivery, reason.clone())).await
                    }
                }
            }))
            .await;
        let Some((last, _)) = batch.last() else {
            return;
        };
        if whole && moved.iter().all(Result::is_ok) {
            let acked = last.ack(BasicAckOptions { multiple: true }).await;
            if let Err(err) = acked {
                tracing::warn!(error = %err, "ack failed; the batch will be redelivered");
            }
            return;
        }
        for ((delivery, _), next) in batch.iter().zip(moved) {
            acknowledge(delivery, next).await;
        }
    }
}

/// Acks once the message's next home is confirmed; otherwise hands it back.
async fn acknowledge(delivery: &Delivery, next: Result<(), QueueError>) {
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
