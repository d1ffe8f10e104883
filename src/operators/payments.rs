//! Payments as operators look them up: a search, and one payment's whole
//! timeline — its transitions, the calls to its connectors, the provider
//! events received about it, its refunds and reviews, the merchant events
//! it caused and each delivery attempt — in the order they happened.

use chrono::{DateTime, Utc};
use sea_orm::DbErr;
use uuid::Uuid;

use super::Operators;
use crate::store::{
    events, payments,
    payments::{Payment, PaymentSearch},
    provider_calls, refunds, reviews, webhooks,
};

/// At most this many rows of each kind make a timeline.
pub const TIMELINE_ROWS: u64 = 200;
/// A webhook's body is shown up to this many characters.
const BODY_CHARS: usize = 2_000;

/// One thing that happened to a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    /// `transition`, `provider_call`, `webhook`, `refund`, `event`,
    /// `delivery_attempt` or `review`.
    pub kind: &'static str,
    pub title: String,
    /// May carry what merchants and providers sent: text, never markup.
    pub detail: Option<String>,
    pub duration_ms: Option<i64>,
    pub outcome: Option<String>,
}

impl TimelineEntry {
    fn new(at: DateTime<Utc>, kind: &'static str, title: String) -> TimelineEntry {
        TimelineEntry {
            at,
            kind,
            title,
            detail: None,
            duration_ms: None,
            outcome: None,
        }
    }

    fn detail(mut self, detail: Option<String>) -> TimelineEntry {
        self.detail = detail.filter(|d| !d.is_empty());
        self
    }

    fn outcome(mut self, outcome: impl Into<String>) -> TimelineEntry {
        self.outcome = Some(outcome.into());
        self
    }

    fn duration(mut self, millis: i64) -> TimelineEntry {
        self.duration_ms = Some(millis);
        self
    }
}

impl Operators {
    /// Payments matching `search`, newest first.
    pub async fn search_payments(&self, search: &PaymentSearch) -> Result<Vec<Payment>, DbErr> {
        payments::search(&self.db, search).await
    }

    pub async fn payment(&self, id: Uuid) -> Result<Option<Payment>, DbErr> {
        payments::find_by_id(&self.db, id).await
    }

    /// The payment `id` and everything that happened to it, oldest first;
    /// `None`: no such payment.
    pub async fn payment_timeline(
        &self,
        id: Uuid,
    ) -> Result<Option<(Payment, Vec<TimelineEntry>)>, DbErr> {
        let Some(payment) = payments::find_by_id(&self.db, id).await? else {
            return Ok(None);
        };
        let db = &self.db;
        let (transitions, calls, received, refunds, reviews, events) = tokio::try_join!(
            payments::transitions(db, id),
            provider_calls::for_reference(db, &payment.reference, TIMELINE_ROWS),
            webhooks::for_reference(db, &payment.reference, TIMELINE_ROWS),
            refunds::for_payment(db, id),
            reviews::for_payment(db, id),
            events::for_payment(db, id, TIMELINE_ROWS),
        )?;
        let attempts = events::attempts_of(
            db,
            events.iter().map(|e| e.id.clone()).collect(),
            TIMELINE_ROWS,
        )
        .await?;

        let mut timeline = Vec::new();
        timeline.extend(transitions.into_iter().map(|t| {
            TimelineEntry::new(
                t.created_at,
                "transition",
                format!("{} → {}", t.from_status, t.to_status),
            )
            .detail(Some(match t.event_id {
                Some(event) => format!("{} (event {event})", t.cause),
                None => t.cause,
            }))
        }));
        timeline.extend(calls.into_iter().map(|c| {
            TimelineEntry::new(
                c.started_at,
                "provider_call",
                format!("{} at {}", c.operation, c.connector),
            )
            .detail(c.error)
            .duration(c.duration_ms)
            .outcome(c.outcome)
        }));
        timeline.extend(received.into_iter().map(|w| {
            let body: String = w.payload.to_string().chars().take(BODY_CHARS).collect();
            let entry = TimelineEntry::new(
                w.received_at,
                "webhook",
                format!("{} from {}", w.event_type, w.provider),
            )
            .detail(Some(format!("event {}: {body}", w.event_id)));
            match w.outcome {
                Some(outcome) => entry.outcome(outcome),
                None => entry,
            }
        }));
        for r in refunds {
            let reason = [r.reason.as_deref(), r.failure_reason.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
            timeline.push(
                TimelineEntry::new(
                    r.created_at,
                    "refund",
                    format!(
                        "refund {} {} at {}",
                        r.amount,
                        r.currency,
                        r.connector.as_deref().unwrap_or(&payment.provider)
                    ),
                )
                .detail(Some(format!("refund {}; {reason}", r.id)))
                .outcome(r.status),
            );
        }
        for review in reviews {
            timeline.push(
                TimelineEntry::new(
                    review.opened_at,
                    "review",
                    format!("review opened: {}", review.kind),
                )
                .detail(Some(format!("review {}: {}", review.id, review.detail)))
                .outcome("open"),
            );
            if let Some(resolved_at) = review.resolved_at {
                let by = review.resolved_by.unwrap_or_default();
                let note = review.note.unwrap_or_default();
                timeline.push(
                    TimelineEntry::new(
                        resolved_at,
                        "review",
                        format!("review resolved: {}", review.kind),
                    )
                    .detail(Some(format!("by {by}: {note}")))
                    .outcome(review.resolution.unwrap_or_else(|| "resolved".to_owned())),
                );
            }
        }
        timeline.extend(events.into_iter().map(|e| {
            let relayed = if e.published_at.is_some() {
                "relayed"
            } else {
                "waiting in the outbox"
            };
            TimelineEntry::new(e.created_at, "event", format!("merchant event {}", e.kind))
                .detail(Some(format!("event {}", e.id)))
                .outcome(relayed)
        }));
        timeline.extend(attempts.into_iter().map(|a| {
            let answer = a.response_status.map(|s| format!("HTTP {s}"));
            let detail = [answer, a.error]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
            TimelineEntry::new(
                a.at,
                "delivery_attempt",
                format!(
                    "attempt {} of event {} to endpoint {}",
                    a.attempt, a.event_id, a.endpoint_id
                ),
            )
            .detail(Some(detail))
            .duration(a.duration_ms)
            .outcome(a.status)
        }));
        timeline.sort_by_key(|entry| entry.at);
        Ok(Some((payment, timeline)))
    }
}
