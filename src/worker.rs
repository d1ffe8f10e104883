//! Webhook processing: each message from the queue becomes a call to the
//! payment core, and the core's answer decides what becomes of the message.
//!
//! [`run`] is the loop of `payorch worker` and of `serve`'s in-process
//! worker alike: the queue facade hands over what it holds, up to a batch
//! at a time (RabbitMQ; the queue table hands one message at a time), and
//! [`process_batch`] decides. The events that apply a provider's signed
//! figures go to the core together ([`Payments::apply_webhooks`]: one
//! transaction on PostgreSQL); the few that need more (a refund, an event
//! only recorded) are handled one by one beside them. An event whose
//! connector must confirm it first (Flutterwave) waits for a provider call
//! of up to the provider timeout: it is decided later, on its own
//! ([`Decision::Later`]), so the batch's other events are acknowledged
//! without it. A message is acknowledged only after the core committed.

use std::{future::Future, time::Instant};

use futures_util::FutureExt;

use crate::{
    domain::webhook::Action,
    payments::{PaymentError, Payments, WebhookApplied, WebhookEvent},
    queue::{Decision, Disposition, Envelope, WebhookQueue},
    store::webhooks::WebhookRecord,
    webhook,
};

/// How many times a webhook whose figures are not signed (Flutterwave) is
/// tried while its connector does not yet report the charge settled, before
/// it is recorded as unconfirmed (reconciliation asks again later).
const CONFIRM_TRIES: u32 = 3;

/// Consumes `queue` until `shutdown`, `prefetch` messages in hand and up
/// to `batch` applied together, then finishes what it holds and returns.
pub async fn run(
    payments: Payments,
    queue: WebhookQueue,
    prefetch: u16,
    batch: usize,
    shutdown: impl Future<Output = ()>,
) {
    queue
        .consume_batches(prefetch, batch, shutdown, move |envelopes| {
            let payments = payments.clone();
            async move { process_batch(&payments, envelopes).await }
        })
        .await;
}

/// What one message asks, once read: the event to apply with others, or
/// something handled on its own.
enum Prepared {
    Apply(WebhookEvent),
    Alone {
        attempt: u32,
        record: WebhookRecord,
        action: Action,
    },
}

/// Applies a batch of webhook messages; what becomes of each, in order:
/// decided now, or (a connector asked to confirm) later.
pub async fn process_batch(payments: &Payments, envelopes: Vec<Envelope>) -> Vec<Decision> {
    let started = Instant::now();
    let count = envelopes.len();
    let mut dispositions: Vec<Option<Disposition>> = vec![None; count];
    let mut later = Vec::new();
    let mut batch = Vec::with_capacity(count);
    let mut alone = Vec::new();
    for (index, envelope) in envelopes.into_iter().enumerate() {
        let dedup_key = envelope.message.dedup_key().to_owned();
        match prepare(payments, envelope) {
            Ok(Prepared::Apply(event)) => batch.push((index, dedup_key, event)),
            Ok(Prepared::Alone {
                attempt,
                record,
                action: action @ Action::Confirm { .. },
            }) => {
                let payments = payments.clone();
                let decided = async move {
                    let disposition = handle_alone(&payments, attempt, record, action).await;
                    counted(&dedup_key, disposition)
                };
                later.push((index, decided.boxed()));
            }
            Ok(Prepared::Alone {
                attempt,
                record,
                action,
            }) => alone.push((index, dedup_key, attempt, record, action)),
            Err(disposition) => dispositions[index] = Some(disposition),
        }
    }
    let (keys, events): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|(index, key, event)| ((index, key, event.record.reference.clone()), event))
        .unzip();
    let applied = async {
        if events.is_empty() {
            return Vec::new();
        }
        payments.apply_webhooks(events).await
    };
    let handled = futures_util::future::join_all(alone.into_iter().map(
        |(index, key, attempt, record, action)| async move {
            (
                index,
                key,
                handle_alone(payments, attempt, record, action).await,
            )
        },
    ));
    let (applied, handled) = tokio::join!(applied, handled);
    for ((index, key, reference), result) in keys.into_iter().zip(applied) {
        let disposition = disposition_of(&reference, result);
        dispositions[index] = Some(counted(&key, disposition));
    }
    for (index, key, disposition) in handled {
        dispositions[index] = Some(counted(&key, disposition));
    }
    let elapsed = started.elapsed().as_secs_f64();
    for _ in 0..count - later.len() {
        metrics::histogram!("payorch_webhook_processing_seconds").record(elapsed);
    }
    let mut decisions: Vec<Decision> = dispositions
        .into_iter()
        .map(|d| Decision::Now(d.unwrap_or_else(|| Disposition::Retry("not processed".into()))))
        .collect();
    for (index, decided) in later {
        decisions[index] = Decision::Later(
            async move {
                let disposition = decided.await;
                metrics::histogram!("payorch_webhook_processing_seconds")
                    .record(started.elapsed().as_secs_f64());
                disposition
            }
            .boxed(),
        );
    }
    decisions
}

/// Counts a message that is not acknowledged (the acknowledged ones are
/// counted by what the core did with them).
fn counted(dedup_key: &str, disposition: Disposition) -> Disposition {
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
    match prepare(payments, envelope) {
        Ok(Prepared::Apply(WebhookEvent { record, event })) => {
            let reference = record.reference.clone();
            disposition_of(&reference, payments.apply_webhook(record, event).await)
        }
        Ok(Prepared::Alone {
            attempt,
            record,
            action,
        }) => handle_alone(payments, attempt, record, action).await,
        Err(disposition) => disposition,
    }
}

/// Reads a message: what it asks, or (`Err`) why it is parked.
fn prepare(payments: &Payments, envelope: Envelope) -> Result<Prepared, Disposition> {
    let attempt = envelope.attempt;
    let webhook = match webhook::queued::received(envelope.message) {
        Ok(webhook) => webhook,
        Err(reason) => return Err(Disposition::Park(format!("unparsable: {reason}"))),
    };
    let Some(connector) = payments.connectors().get(&webhook.provider) else {
        return Err(Disposition::Park(format!(
            "connector `{}` is not enabled",
            webhook.provider
        )));
    };
    let action = connector
        .webhook_action(&webhook.event)
        .map_err(Disposition::Park)?;
    let record = WebhookRecord {
        provider: webhook.provider,
        event_id: webhook.event.dedup_key,
        event_type: webhook.event.event_type,
        reference: webhook.event.reference.unwrap_or_default(),
        payload: webhook.payload.to_value(),
        received_at: webhook.received_at,
    };
    Ok(match action {
        // `reference` is the event's own, which the record carries.
        Action::Apply { event, .. } => Prepared::Apply(WebhookEvent { record, event }),
        action => Prepared::Alone {
            attempt,
            record,
            action,
        },
    })
}

/// A message that is not applied with others: a connector asked first, a
/// refund, or an event only recorded.
async fn handle_alone(
    payments: &Payments,
    attempt: u32,
    record: WebhookRecord,
    action: Action,
) -> Disposition {
    match action {
        Action::Apply { reference, event } => {
            disposition_of(&reference, payments.apply_webhook(record, event).await)
        }
        Action::Confirm {
            reference,
            transaction_id,
        } => {
            let last_try = attempt >= CONFIRM_TRIES - 1;
            disposition_of(
                &reference,
                payments
                    .confirm_webhook(record, transaction_id, last_try)
                    .await,
            )
        }
        Action::Refund {
            reference,
            notice,
            report,
        } => match payments.apply_refund_webhook(record, notice, report).await {
            Ok(_) => Disposition::Ack,
            Err(PaymentError::NotFound) => {
                Disposition::Retry(format!("no payment {reference} yet"))
            }
            Err(err) => Disposition::Retry(err.to_string()),
        },
        Action::Record => match payments.record_unhandled(&record).await {
            Ok(_) => Disposition::Ack,
            Err(err) => Disposition::Retry(err.to_string()),
        },
    }
}

/// What the core's answer makes of a message about `reference`.
fn disposition_of(reference: &str, applied: Result<WebhookApplied, PaymentError>) -> Disposition {
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
