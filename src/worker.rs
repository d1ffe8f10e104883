//! Webhook processing: take a message, apply it through the payment's actor
//! in one database transaction, then acknowledge.
//!
//! [`process`] decides what becomes of one message — acknowledged, retried
//! later, or parked — and is the same for both queues. [`run_amqp`] is the
//! `payorch worker` loop (bounded prefetch, reconnect with backoff, ack only
//! after commit, drain on shutdown); [`run_memory`] is the embedded mode's.

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions};
use tokio::{sync::Semaphore, task::JoinSet};

use crate::{
    actors::PaymentRegistry,
    error::ApiError,
    queue::{Envelope, QueueMessage, amqp::AmqpQueue, memory::MemoryQueue},
    store::webhooks::{self, WebhookRecord},
    webhook::event,
};

/// What becomes of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done (applied, a duplicate, or nothing to do): acknowledge.
    Ack,
    /// Not now (unknown reference, database trouble): the retry tier.
    Retry(String),
    /// Never (unreadable): the dead-letter queue, for an operator.
    Park(String),
}

/// Applies one webhook message.
#[tracing::instrument(skip_all, fields(
    dedup_key = envelope.message.dedup_key(),
    attempt = envelope.attempt,
    request_id = request_id(envelope),
))]
pub async fn process(registry: &PaymentRegistry, envelope: &Envelope) -> Disposition {
    let QueueMessage::WebhookV1 {
        provider,
        dedup_key,
        body,
        received_at,
        ..
    } = &envelope.message;
    let parsed = match event::parse(body.as_bytes()) {
        Ok(parsed) => parsed,
        Err(reason) => return Disposition::Park(format!("unparsable: {reason}")),
    };
    let Some(reference) = parsed.reference.clone() else {
        return Disposition::Park("the event names no payment reference".into());
    };
    let payment_event = match parsed.payment_event() {
        Ok(event) => event,
        Err(reason) => return Disposition::Park(reason),
    };
    let record = |event| WebhookRecord {
        provider: provider.clone(),
        event_id: dedup_key.clone(),
        event_type: parsed.event_type.clone(),
        reference: reference.clone(),
        event,
        payload: serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        received_at: *received_at,
    };
    let Some(payment_event) = payment_event else {
        // Recorded (once) so it can be seen, but no payment changes.
        let unhandled = record(crate::domain::PaymentEvent::ChargePending);
        return match webhooks::insert_unhandled(&registry.service().db, &unhandled).await {
            Ok(_) => Disposition::Ack,
            Err(err) => Disposition::Retry(format!("database: {err}")),
        };
    };
    match registry.apply_webhook(record(payment_event)).await {
        Ok(Some((payment, outcome))) => {
            tracing::info!(reference, status = payment.status, outcome = ?outcome, "webhook applied");
            metrics::counter!("payorch_webhooks_processed_total", "result" => "applied")
                .increment(1);
            Disposition::Ack
        }
        Ok(None) => {
            tracing::debug!(reference, "duplicate webhook");
            metrics::counter!("payorch_webhooks_processed_total", "result" => "duplicate")
                .increment(1);
            Disposition::Ack
        }
        // It may be racing its own initialize: try again later.
        Err(ApiError::NotFound) => Disposition::Retry(format!("no payment {reference} yet")),
        Err(err) => Disposition::Retry(err.to_string()),
    }
}

/// The ingest request's id, so one event can be followed from its receipt.
fn request_id(envelope: &Envelope) -> &str {
    let QueueMessage::WebhookV1 { request_id, .. } = &envelope.message;
    request_id.as_deref().unwrap_or("-")
}

/// Consumes RabbitMQ until `shutdown`, then stops taking messages, finishes
/// those it holds, and returns. Unacknowledged messages go back to the
/// queue for other workers if this process dies.
pub async fn run_amqp(
    registry: PaymentRegistry,
    queue: AmqpQueue,
    prefetch: u16,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(200);
    let tag = format!("payorch-worker-{}", uuid::Uuid::new_v4().simple());
    loop {
        let connected = queue.consumer_channel(prefetch).await;
        let (conn, channel) = match connected {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "worker cannot reach the broker");
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let consumer = channel
            .basic_consume(
                queue.names().main.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                lapin::types::FieldTable::default(),
            )
            .await;
        let mut consumer = match consumer {
            Ok(consumer) => consumer,
            Err(err) => {
                tracing::warn!(error = %err, "cannot consume; reconnecting");
                continue;
            }
        };
        tracing::info!(queue = queue.names().main, prefetch, "worker consuming");
        backoff = Duration::from_millis(200);
        let mut in_flight = JoinSet::new();
        let stopping = loop {
            tokio::select! {
                _ = &mut shutdown => break true,
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        let registry = registry.clone();
                        let queue = queue.clone();
                        in_flight.spawn(async move { handle_delivery(&registry, &queue, delivery).await });
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
            let _ = channel
                .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                .await;
        }
        while in_flight.join_next().await.is_some() {}
        let _ = conn.close(200, "worker done".into()).await;
        if stopping {
            tracing::info!("worker stopped");
            return;
        }
    }
}

async fn handle_delivery(
    registry: &PaymentRegistry,
    queue: &AmqpQueue,
    delivery: lapin::message::Delivery,
) {
    let envelope = match crate::queue::amqp::decode(&delivery.data, &delivery.properties) {
        Ok(envelope) => envelope,
        Err(reason) => {
            // Not ours to read, but not ours to drop either.
            let foreign = Envelope {
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
                reason: None,
            };
            settle(
                &delivery,
                queue
                    .park(&Envelope {
                        reason: Some(reason),
                        ..foreign
                    })
                    .await,
            )
            .await;
            return;
        }
    };
    let started = std::time::Instant::now();
    let disposition = process(registry, &envelope).await;
    metrics::histogram!("payorch_webhook_processing_seconds")
        .record(started.elapsed().as_secs_f64());
    let outcome = match disposition {
        Disposition::Ack => Ok(()),
        Disposition::Retry(reason) => {
            metrics::counter!("payorch_webhooks_processed_total", "result" => "retried")
                .increment(1);
            queue.retry(&envelope, &reason).await
        }
        Disposition::Park(reason) => {
            metrics::counter!("payorch_webhooks_processed_total", "result" => "parked")
                .increment(1);
            tracing::warn!(
                reason,
                dedup_key = envelope.message.dedup_key(),
                "webhook parked"
            );
            queue
                .park(&Envelope {
                    reason: Some(reason),
                    ..envelope.clone()
                })
                .await
        }
    };
    settle(&delivery, outcome).await;
}

/// Acks once the message's next home is confirmed; otherwise hands it back.
async fn settle(delivery: &lapin::message::Delivery, next: Result<(), crate::queue::QueueError>) {
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

/// The embedded mode's worker: the in-process queue, `concurrency` messages
/// at a time, until the queue closes.
pub async fn run_memory(registry: PaymentRegistry, queue: MemoryQueue, concurrency: usize) {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    while let Some(envelope) = queue.next().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let registry = registry.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            match process(&registry, &envelope).await {
                Disposition::Ack => {}
                Disposition::Retry(reason) => queue.retry(envelope, &reason),
                Disposition::Park(reason) => queue.park(Envelope {
                    reason: Some(reason),
                    ..envelope
                }),
            }
            drop(permit);
        });
    }
}
