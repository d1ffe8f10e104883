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
