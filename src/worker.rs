//! Webhook processing: each message from the queue is one call to the
//! payment core, and the core's answer decides what becomes of the message.
//!
//! [`run`] is the loop of `payorch worker` and of `serve`'s in-process
//! worker alike: the queue facade consumes (RabbitMQ or the queue table),
//! [`process`] decides. Acknowledged only after the core committed.

use std::future::Future;

use crate::{
    payments::{PaymentError, Payments, WebhookApplied},
    queue::{Disposition, Envelope, WebhookQueue},
    store::webhooks::WebhookRecord,
    webhook::event::Action,
};

/// How many times a webhook whose figures are not signed (Flutterwave) is
/// tried while its connector does not yet report the charge settled, before
/// it is recorded as unconfirmed (reconciliation asks again later).
const CONFIRM_TRIES: u32 = 3;

/// Consumes `queue` until `shutdown`, `prefetch` messages at a time, then
/// finishes what it holds and returns.
pub async fn run(
    payments: Payments,
    queue: WebhookQueue,
    prefetch: u16,
    shutdown: impl Future<Output = ()>,
) {
    queue
        .consume(prefetch, shutdown, move |envelope| {
            let payments = payments.clone();
            async move { timed(&payments, envelope).await }
        })
        .await;
}

async fn timed(payments: &Payments, envelope: Envelope) -> Disposition {
    let started = std::time::Instant::now();
    let dedup_key = envelope.message.dedup_key().to_owned();
    let disposition = process(payments, envelope).await;
    metrics::histogram!("payorch_webhook_processing_seconds")
        .record(started.elapsed().as_secs_f64());
    let result = match &disposition {
        Disposition::Ack => return disposition,
        Disposition::Retry(_) | Disposition::RetryNotBefore(..) | Disposition::Defer(_) => {
            "retried"
        }
        Disposition::Park(reason) => {
            tracing::warn!(reason, dedup_key, "webhook parked");
            "parked"
        }
    };
    metrics::counter!("payorch_webhooks_processed_total", "result" => result).increment(1);
    disposition
}

/// Applies one webhook message: acknowledged, retried later, or parked.
#[tracing::instrument(skip_all, fields(
    dedup_key = envelope.message.dedup_key(),
    attempt = envelope.attempt,
    request_id = envelope.message.request_id().unwrap_or("-"),
))]
pub async fn process(payments: &Payments, envelope: Envelope) -> Disposition {
    let envelope_attempt = envelope.attempt;
    let webhook = match envelope.message.into_webhook() {
        Ok(webhook) => webhook,
        Err(reason) => return Disposition::Park(format!("unparsable: {reason}")),
    };
    let Some(connector) = payments.connectors().get(&webhook.provider) else {
        return Disposition::Park(format!("connector `{}` is not enabled", webhook.provider));
    };
    let action = match connector.webhook_action(&webhook.event) {
        Ok(action) => action,
        Err(reason) => return Disposition::Park(reason),
    };
    let record = WebhookRecord {
        provider: webhook.provider,
        event_id: webhook.event.dedup_key,
        event_type: webhook.event.event_type,
        reference: webhook.event.reference.unwrap_or_default(),
        payload: webhook.payload.to_value(),
        received_at: webhook.received_at,
    };
    let (reference, applied) = match action {
        Action::Apply { reference, event } => {
            let applied = payments.apply_webhook(record, event).await;
            (reference, applied)
        }
        Action::Confirm { reference } => {
            let last_try = envelope_attempt >= CONFIRM_TRIES - 1;
            let applied = payments.confirm_webhook(record, last_try).await;
            (reference, applied)
        }
        Action::Refund {
            reference,
            notice,
            report,
        } => {
            return match payments.apply_refund_webhook(record, notice, report).await {
                Ok(_) => Disposition::Ack,
                Err(PaymentError::NotFound) => {
                    Disposition::Retry(format!("no payment {reference} yet"))
                }
                Err(err) => Disposition::Retry(err.to_string()),
            };
        }
        Action::Record => {
            return match payments.record_unhandled(&record).await {
                Ok(_) => Disposition::Ack,
                Err(err) => Disposition::Retry(err.to_string()),
            };
        }
    };
    match applied {
        Ok(WebhookApplied::Applied(payment, outcome)) => {
            tracing::info!(reference, status = payment.status, outcome = ?outcome, "webhook applied");
            metrics::counter!("payorch_webhooks_processed_total", "result" => "applied")
                .increment(1);
            Disposition::Ack
        }
        Ok(WebhookApplied::Unconfirmed) => Disposition::Retry(format!(
            "{reference}: the connector does not report the charge settled yet"
        )),
        Ok(WebhookApplied::Ignored(outcome)) => {
            tracing::info!(reference, outcome, "webhook recorded, not applied");
            metrics::counter!("payorch_webhooks_processed_total", "result" => "ignored")
                .increment(1);
            Disposition::Ack
        }
        Ok(WebhookApplied::Duplicate) => {
            tracing::debug!(reference, "duplicate webhook");
            metrics::counter!("payorch_webhooks_processed_total", "result" => "duplicate")
                .increment(1);
            Disposition::Ack
        }
        // It may be racing its own initialize: try again later.
        Err(PaymentError::NotFound) => Disposition::Retry(format!("no payment {reference} yet")),
        Err(err) => Disposition::Retry(err.to_string()),
    }
}
