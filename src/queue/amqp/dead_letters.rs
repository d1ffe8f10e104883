//! The parking queue for operators: read it without taking anything, and
//! replay parked messages to the main queue.

use lapin::options::{BasicAckOptions, BasicGetOptions};

use super::{AmqpQueue, consumer::decode, unavailable};
use crate::queue::{Envelope, QueueError};

impl AmqpQueue {
    /// Reads up to `limit` parked messages without removing them: they are
    /// held unacknowledged while read, and go back when the channel closes.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<Envelope>, QueueError> {
        let conn = self.connect().await?;
        let channel = conn.create_channel().await.map_err(unavailable)?;
        let mut parked = Vec::new();
        while parked.len() < limit {
            let got = channel
                .basic_get(self.names.dead.as_str().into(), BasicGetOptions::default())
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
                .basic_get(self.names.dead.as_str().into(), BasicGetOptions::default())
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
                .ack(BasicAckOptions::default())
                .await
                .map_err(unavailable)?;
            moved += 1;
        }
        let _ = conn.close(200, "replayed".into()).await;
        Ok(moved)
    }
}
