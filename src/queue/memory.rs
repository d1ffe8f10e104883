//! The in-process queue of the embedded mode: a bounded channel, retries on
//! timers, and a bounded list of parked messages. Same contract as RabbitMQ
//! while the process lives; a crash loses what it held (documented).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use tokio::sync::mpsc;

use super::{Envelope, QueueError, RetryPolicy};

/// Messages waiting; beyond it ingest answers 503 and the provider retries.
const CAPACITY: usize = 10_000;
/// Parked messages kept; the oldest go first (and are logged when parked).
const PARKED_CAPACITY: usize = 10_000;

#[derive(Clone)]
pub struct MemoryQueue {
    sender: mpsc::Sender<Envelope>,
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<Envelope>>>,
    parked: Arc<Mutex<VecDeque<Envelope>>>,
    pub retry: RetryPolicy,
}

impl MemoryQueue {
    pub fn new(retry: RetryPolicy) -> MemoryQueue {
        let (sender, receiver) = mpsc::channel(CAPACITY);
        MemoryQueue {
            sender,
            receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
            parked: Arc::new(Mutex::new(VecDeque::new())),
            retry,
        }
    }

    pub fn publish(&self, envelope: Envelope) -> Result<(), QueueError> {
        self.sender.try_send(envelope).map_err(|_| QueueError::Full)
    }

    /// The next message; `None` once every sender is gone.
    pub async fn next(&self) -> Option<Envelope> {
        self.receiver.lock().await.recv().await
    }

    /// Requeues after the policy's delay, or parks after the last attempt.
    pub fn retry(&self, mut envelope: Envelope, reason: &str) {
        match self.retry.delay_after(envelope.attempt) {
            Some(delay) => {
                envelope.attempt += 1;
                envelope.reason = Some(reason.to_owned());
                let sender = self.sender.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = sender.send(envelope).await;
                });
            }
            None => {
                envelope.reason = Some(reason.to_owned());
                self.park(envelope);
            }
        }
    }

    pub fn park(&self, envelope: Envelope) {
        tracing::warn!(
            dedup_key = envelope.message.dedup_key(),
            reason = envelope.reason.as_deref().unwrap_or(""),
            "webhook parked in the in-process dead-letter list"
        );
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        if parked.len() >= PARKED_CAPACITY {
            parked.pop_front();
        }
        parked.push_back(envelope);
    }

    pub fn parked(&self) -> Vec<Envelope> {
        self.parked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::queue::QueueMessage;

    fn envelope(key: &str) -> Envelope {
        Envelope {
            message: QueueMessage::WebhookV1 {
                provider: "sandbox".into(),
                dedup_key: key.into(),
                body: "{}".into(),
                received_at: chrono::Utc::now(),
                request_id: None,
            },
            attempt: 0,
            reason: None,
        }
    }

    fn policy(delays_ms: &[u64]) -> RetryPolicy {
        RetryPolicy {
            delays: delays_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
        }
    }

    #[tokio::test]
    async fn delivers_in_order_and_refuses_beyond_capacity() {
        let queue = MemoryQueue::new(policy(&[]));
        for i in 0..CAPACITY {
            queue.publish(envelope(&i.to_string())).unwrap();
        }
        assert!(matches!(
            queue.publish(envelope("one too many")),
            Err(QueueError::Full)
        ));
        assert_eq!(queue.next().await.unwrap().message.dedup_key(), "0");
        assert_eq!(queue.next().await.unwrap().message.dedup_key(), "1");
        // Room for one again.
        queue.publish(envelope("late")).unwrap();
    }

    #[tokio::test]
    async fn a_retry_comes_back_with_its_attempt_and_reason() {
        let queue = MemoryQueue::new(policy(&[5, 5]));
        queue.retry(envelope("e"), "no payment yet");
        let again = queue.next().await.unwrap();
        assert_eq!(again.attempt, 1);
        assert_eq!(again.reason.as_deref(), Some("no payment yet"));
        queue.retry(again, "still none");
        let third = queue.next().await.unwrap();
        assert_eq!(third.attempt, 2);
        assert!(queue.parked().is_empty());
    }

    #[tokio::test]
    async fn after_the_last_attempt_it_is_parked_not_requeued() {
        let queue = MemoryQueue::new(policy(&[5]));
        let mut last = envelope("e");
        last.attempt = 1;
        queue.retry(last, "gave up");
        let parked = queue.parked();
        assert_eq!(parked.len(), 1);
        assert_eq!(parked[0].reason.as_deref(), Some("gave up"));
        assert_eq!(parked[0].attempt, 1);
        // Nothing was put back on the queue.
        queue.publish(envelope("marker")).unwrap();
        assert_eq!(queue.next().await.unwrap().message.dedup_key(), "marker");
    }

    #[test]
    fn the_parked_list_is_bounded_and_drops_the_oldest() {
        let queue = MemoryQueue::new(policy(&[]));
        for i in 0..=PARKED_CAPACITY {
            queue.park(envelope(&i.to_string()));
        }
        let parked = queue.parked();
        assert_eq!(parked.len(), PARKED_CAPACITY);
        assert_eq!(parked[0].message.dedup_key(), "1");
        assert_eq!(
            parked.last().unwrap().message.dedup_key(),
            PARKED_CAPACITY.to_string()
        );
    }
}
