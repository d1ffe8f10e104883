//! Publishing with confirms: a few confirm-mode channels ("lanes") on one
//! connection, made on first use and made again (with the topology
//! declared) once broken. A publish is `Ok` only after the broker's ack;
//! messages are persistent, and published `mandatory` so a message the
//! broker could not route is a failure, not a delivery.
//!
//! Each lane takes what publishes are waiting, sends them all, then waits
//! for all their confirms before it takes more: concurrent publishes share
//! a channel's round trip instead of holding one channel each. What makes
//! that safe is matching returns to publishes by id. RabbitMQ hands an
//! unroutable `mandatory` message back on its channel without naming the
//! publish, before that publish's ack; lapin attaches it to the first
//! confirm it completes after the return arrives, which on a shared channel
//! may be another publish's (a multiple ack completes its confirms in hash
//! order). So every publish carries its own id (`correlation-id`), and a
//! lane answers none of a round's publishes before it has every confirm of
//! the round and so every return they carry: a return is always carried
//! by a confirm of its own round, since the lane sends nothing else on the
//! channel until the round is confirmed.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, ShortString},
};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{AmqpQueue, CONFIRM_TIMEOUT, CONNECT_TIMEOUT, args, text, unavailable};
use crate::queue::{Envelope, QueueError};

/// The publishing lanes of one connection.
pub(super) struct Publishers {
    conn: Connection,
    requests: mpsc::Sender<Request>,
    /// Set by a lane whose channel failed or timed out.
    broken: Arc<AtomicBool>,
}

/// Confirm-mode channels per process.
const LANES: usize = 8;
/// Publishes a lane sends in one round, at most.
const ROUND: usize = 128;
/// Publishes waiting for a lane, at most; more wait to be taken.
const WAITING: usize = 1_024;

/// Each publish's id, unique in this process.
static PUBLISH_ID: AtomicU64 = AtomicU64::new(0);

/// One publish handed to a lane.
struct Request {
    exchange: ShortString,
    routing_key: ShortString,
    payload: Vec<u8>,
    properties: BasicProperties,
    answer: oneshot::Sender<Outcome>,
}

/// What became of one publish.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Confirmed,
    Returned,
    Nacked,
    Failed(String),
}

impl Publishers {
    fn usable(&self) -> bool {
        self.conn.status().connected() && !self.broken.load(Ordering::Relaxed)
    }
}

/// A lane: rounds of whatever publishes are waiting, until every
/// [`Publishers`] handle is gone or its channel fails.
async fn lane(
    channel: Channel,
    waiting: Arc<Mutex<mpsc::Receiver<Request>>>,
    broken: Arc<AtomicBool>,
) {
    let mut round = Vec::with_capacity(ROUND);
    loop {
        if waiting.lock().await.recv_many(&mut round, ROUND).await == 0 {
            return;
        }
        let (requests, outcomes) = publish_round(&channel, std::mem::take(&mut round)).await;
        let failed = outcomes.iter().any(|o| matches!(o, Outcome::Failed(_)));
        for (request, outcome) in requests.into_iter().zip(outcomes) {
            let _ = request.answer.send(outcome);
        }
        if failed {
            broken.store(true, Ordering::Relaxed);
            return;
        }
    }
}

/// Sends `requests` on `channel` and waits for every confirm (within
/// [`CONFIRM_TIMEOUT`]); each request's outcome, in order.
async fn publish_round(channel: &Channel, requests: Vec<Request>) -> (Vec<Request>, Vec<Outcome>) {
    let sent = tokio::time::timeout(CONFIRM_TIMEOUT, async {
        let mut confirms = Vec::with_capacity(requests.len());
        for request in &requests {
            let confirm = channel
                .basic_publish(
                    request.exchange.clone(),
                    request.routing_key.clone(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &request.payload,
                    request.properties.clone(),
                )
                .await?;
            confirms.push(confirm);
        }
        futures_util::future::join_all(confirms)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    let outcomes = match sent {
        Ok(Ok(confirmations)) => {
            let ids = requests
                .iter()
                .map(|r| r.properties.correlation_id().clone());
            attribute(ids.collect(), confirmations)
        }
        Ok(Err(err)) => vec![Outcome::Failed(err.to_string()); requests.len()],
        Err(_) => vec![Outcome::Failed("no confirm in time".into()); requests.len()],
    };
    (requests, outcomes)
}

/// Each publish's outcome from a whole round's confirms, `ids[i]` being
/// the id publish `i` was sent with: returned when a return carrying its
/// id came back on any confirm of the round. A return whose id is not
/// among the round's cannot be placed, so no acked publish of the round
/// is taken as routed.
fn attribute(ids: Vec<Option<ShortString>>, confirmations: Vec<Confirmation>) -> Vec<Outcome> {
    let mut returned = HashSet::new();
    let mut unplaced = false;
    for confirmation in &confirmations {
        if let Confirmation::Ack(Some(message)) | Confirmation::Nack(Some(message)) = confirmation {
            match message.properties.correlation_id() {
                Some(id) if ids.iter().flatten().any(|sent| sent == id) => {
                    returned.insert(id.clone());
                }
                _ => unplaced = true,
            }
        }
    }
    ids.iter()
        .zip(&confirmations)
        .map(|(id, confirmation)| match confirmation {
            Confirmation::Ack(_) => {
                let routed = !unplaced && id.as_ref().is_some_and(|id| !returned.contains(id));
                if routed {
                    Outcome::Confirmed
                } else {
                    Outcome::Returned
                }
            }
            Confirmation::Nack(_) => Outcome::Nacked,
            Confirmation::NotRequested => {
                Outcome::Failed("the channel is not in confirm mode".into())
            }
        })
        .collect()
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
            let (requests, waiting) = mpsc::channel(WAITING);
            let waiting = Arc::new(Mutex::new(waiting));
            let broken = Arc::new(AtomicBool::new(false));
            for _ in 0..LANES {
                let channel = conn.create_channel().await.map_err(unavailable)?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(unavailable)?;
                tokio::spawn(lane(channel, waiting.clone(), broken.clone()));
            }
            Ok::<_, QueueError>(Publishers {
                conn,
                requests,
                broken,
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
        let (answer, outcome) = oneshot::channel();
        let request = Request {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            payload,
            properties: props,
            answer,
        };
        let outcome = tokio::time::timeout(CONFIRM_TIMEOUT, async {
            if publishers.requests.send(request).await.is_err() {
                return Outcome::Failed("the publishing lanes are gone".into());
            }
            outcome
                .await
                .unwrap_or_else(|_| Outcome::Failed("the publishing lane stopped".into()))
        })
        .await;
        match outcome {
            Ok(Outcome::Confirmed) => Ok(()),
            Ok(Outcome::Returned) => {
                tracing::warn!(
                    exchange,
                    routing_key,
                    "the broker could not route the message; declaring the topology again"
                );
                metrics::counter!("payorch_queue_unroutable_total").increment(1);
                self.forget_publisher(&publishers);
                Err(QueueError::Unroutable)
            }
            Ok(Outcome::Nacked) => Err(QueueError::Nacked),
            Ok(Outcome::Failed(err)) => {
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
    let id = PUBLISH_ID.fetch_add(1, Ordering::Relaxed);
    BasicProperties::default()
        .with_message_id(envelope.message.dedup_key().into())
        .with_correlation_id(id.to_string().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_headers(args(&headers))
}

#[cfg(test)]
mod tests {
    use lapin::message::{BasicReturnMessage, Delivery};

    use super::*;

    fn ids(n: usize) -> Vec<Option<ShortString>> {
        (0..n).map(|i| Some(i.to_string().into())).collect()
    }

    fn returned(id: &str) -> BasicReturnMessage {
        let mut delivery = Delivery::mock(0, "".into(), "gone".into(), false, Vec::new());
        delivery.properties = BasicProperties::default().with_correlation_id(id.into());
        BasicReturnMessage {
            delivery,
            reply_code: 312,
            reply_text: "NO_ROUTE".into(),
        }
    }

    #[test]
    fn a_return_carried_by_another_publishes_confirm_fails_its_own_publish_only() {
        // Publish 2 was unroutable; lapin handed its return to publish 0's
        // confirm, as a multiple ack may.
        let confirmations = vec![
            Confirmation::Ack(Some(returned("2"))),
            Confirmation::Ack(None),
            Confirmation::Ack(None),
            Confirmation::Ack(None),
        ];
        assert_eq!(
            attribute(ids(4), confirmations),
            vec![
                Outcome::Confirmed,
                Outcome::Confirmed,
                Outcome::Returned,
                Outcome::Confirmed
            ]
        );
    }

    #[test]
    fn a_return_that_matches_no_publish_of_the_round_fails_every_ack_of_it() {
        let confirmations = vec![
            Confirmation::Ack(None),
            Confirmation::Ack(Some(returned("elsewhere"))),
            Confirmation::Nack(None),
        ];
        assert_eq!(
            attribute(ids(3), confirmations),
            vec![Outcome::Returned, Outcome::Returned, Outcome::Nacked]
        );
    }

    #[test]
    fn a_publish_sent_without_an_id_is_never_taken_as_routed() {
        let confirmations = vec![Confirmation::Ack(None), Confirmation::Ack(None)];
        let mut ids = ids(2);
        ids[1] = None;
        assert_eq!(
            attribute(ids, confirmations),
            vec![Outcome::Confirmed, Outcome::Returned]
        );
    }

    #[test]
    fn a_nack_is_a_nack_and_a_missing_confirm_mode_a_failure() {
        let confirmations = vec![Confirmation::Nack(None), Confirmation::NotRequested];
        assert_eq!(
            attribute(ids(2), confirmations),
            vec![
                Outcome::Nacked,
                Outcome::Failed("the channel is not in confirm mode".into())
            ]
        );
    }
}
