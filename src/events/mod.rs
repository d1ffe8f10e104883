//! Merchant events: what payorch tells an API client about its payments
//! and refunds, signed per Standard Webhooks and delivered to the
//! endpoints the client registered.
//!
//! ```text
//! state change ─▶ its event row, same transaction (outbox) ─▶ commit
//!   ─▶ relay (woken after the commit) ─▶ one queue message per
//!      matching endpoint ─▶ delivery (retries on the events queue)
//!      ─▶ POST to the endpoint, each attempt in `event_attempts`
//! ```
//!
//! - [`payment_event`] / [`record_refund`]: the outbox rows, written by
//!   the payment core inside the transaction of the change.
//! - [`relay`]: from outbox to queue; [`delivery`]: from queue to endpoint.
//! - [`Events`]: the endpoints API, the event log and redelivery.
//! - [`signing`] and [`ssrf`]: signatures, and where events may go;
//!   [`secrets`]: endpoint secrets, sealed at rest;
//!   [`egress`]: how they get there (directly, or through the operator's
//!   proxy, never the environment's).

pub mod delivery;
pub mod egress;
pub mod relay;
pub mod secrets;
pub mod signing;
pub mod ssrf;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    domain::{FieldError, Outcome, PaymentStatus},
    queue::{Envelope, EventDelivery, QueueError, QueueMessage, WebhookQueue},
    secret::Secret,
    store::{
        endpoints::{self, Endpoint, EndpointChanges, NewEndpoint},
        events::{self as store, Attempt, Event, EventFilter},
        payments::Payment,
        refunds::Refund,
        reviews::Review,
    },
};

/// Every event type, as endpoints subscribe to them.
pub const EVENT_TYPES: [&str; 11] = [
    "payment.pending",
    "payment.succeeded",
    "payment.failed",
    "payment.abandoned",
    "payment.flagged",
    "payment.requires_review",
    "payment.refunded",
    "refund.pending",
    "refund.requires_review",
    "refund.succeeded",
    "refund.failed",
];

/// How long the secret before a rotation keeps signing.
pub const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);
/// The longest endpoint description.
pub const MAX_DESCRIPTION: usize = 255;
/// Endpoints one client may have.
pub const MAX_ENDPOINTS: usize = 50;

/// The event a payment change reports, if any: a new status, or a flag.
pub fn payment_event_type(outcome: &Outcome) -> Option<&'static str> {
    match outcome {
        Outcome::Applied { to } => match to {
            PaymentStatus::Created => None,
            PaymentStatus::Pending => Some("payment.pending"),
            PaymentStatus::Succeeded => Some("payment.succeeded"),
            PaymentStatus::Failed => Some("payment.failed"),
            PaymentStatus::Abandoned => Some("payment.abandoned"),
            PaymentStatus::Refunded => Some("payment.refunded"),
        },
        Outcome::Flagged(_) => Some("payment.flagged"),
        _ => None,
    }
}

/// A new event id: `evt_` + a UUIDv7, so ids sort by creation.
pub fn new_event_id() -> String {
    format!("evt_{}", Uuid::now_v7().simple())
}

/// The JSON an event is delivered as.
#[derive(Serialize)]
struct Body<'a, T: Serialize> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    created_at: DateTime<Utc>,
    data: T,
}

async fn record<T: Serialize>(
    db: &impl ConnectionTrait,
    client_id: Uuid,
    kind: &str,
    payment_id: Uuid,
    refund_id: Option<Uuid>,
    data: T,
) -> Result<(), DbErr> {
    store::insert(db, event(client_id, kind, payment_id, refund_id, data)).await
}

/// The outbox row of a new event.
fn event<T: Serialize>(
    client_id: Uuid,
    kind: &str,
    payment_id: Uuid,
    refund_id: Option<Uuid>,
    data: T,
) -> Event {
    let id = new_event_id();
    let created_at = Utc::now();
    let body = serde_json::to_string(&Body {
        id: &id,
        kind,
        created_at,
        data,
    })
    .expect("an event serializes");
    Event {
        id,
        client_id,
        kind: kind.to_owned(),
        payment_id: Some(payment_id),
        refund_id,
        body,
        created_at,
        published_at: None,
    }
}

/// The outbox row reporting `payment` as it is after a change of `kind`
/// (the apply pipeline writes its changes' rows with [`store::insert_many`]).
pub fn payment_event(payment: &Payment, kind: &str) -> Event {
    let view = crate::views::PaymentView::new(payment.clone(), None);
    event(payment.client_id, kind, payment.id, None, view)
}

/// The outbox row telling the merchant `payment` is under `review`
/// (`payment.requires_review`, the review in the payment's view).
pub fn payment_review_event(payment: &Payment, review: &Review) -> Event {
    let view = crate::views::PaymentView::new(payment.clone(), None).with_review(Some(review));
    event(
        payment.client_id,
        "payment.requires_review",
        payment.id,
        None,
        view,
    )
}

/// Writes the event for `refund`'s change, in the caller's transaction.
/// (with its open review, if it has one).
pub async fn record_refund(
    db: &impl ConnectionTrait,
    refund: &Refund,
    payment_reference: &str,
    review: Option<&Review>,
) -> Result<(), DbErr> {
    let kind = format!("refund.{}", refund.status);
    let view = crate::views::RefundView::new(refund.clone(), payment_reference).with_review(review);
    record(
        db,
        refund.client_id,
        &kind,
        refund.payment_id,
        Some(refund.id),
        view,
    )
    .await
}

/// Why an events operation did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("no such webhook endpoint")]
    EndpointNotFound,
    #[error("no such event")]
    EventNotFound,
    #[error("{}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("the endpoint URL {0}")]
    UrlNotAllowed(String),
    #[error("{0} is temporarily unavailable")]
    Unavailable(&'static str),
}

impl From<DbErr> for EventsError {
    fn from(err: DbErr) -> Self {
        tracing::warn!(error = %err, "events: database error");
        EventsError::Unavailable("the database")
    }
}

impl From<QueueError> for EventsError {
    fn from(err: QueueError) -> Self {
        tracing::warn!(error = %err, "events: queue error");
        EventsError::Unavailable("the event queue")
    }
}

/// An endpoint as asked for (create), checked by [`Events::create_endpoint`].
#[derive(Debug, Default)]
pub struct EndpointRequest {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// An endpoint with its signing secret in clear: the one-time answer to a
/// registration or a rotation.
#[derive(Debug)]
pub struct Revealed {
    pub endpoint: Endpoint,
    pub secret: Secret,
}

/// The endpoints API, the event log and redelivery, for one installation.
#[derive(Clone)]
pub struct Events {
    db: DatabaseConnection,
    queue: WebhookQueue,
    allow_private: bool,
    secrets: secrets::EndpointSecrets,
}

impl Events {
    /// The queue deliveries wait on.
    pub fn queue(&self) -> &WebhookQueue {
        &self.queue
    }

    pub fn new(
        db: DatabaseConnection,
        queue: WebhookQueue,
        allow_private: bool,
        secrets: secrets::EndpointSecrets,
    ) -> Events {
        Events {
            db,
            queue,
            allow_private,
            secrets,
        }
    }

    /// Checks the fields a create or an update sets; the URL is also
    /// resolved (SSRF guard).
    async fn validate(&self, request: &EndpointRequest) -> Result<(), EventsError> {
        let mut errors = Vec::new();
        let mut url = None;
        if let Some(raw) = &request.url {
            match ssrf::parse(raw) {
                Ok(parsed) => url = Some(parsed),
                Err(err) => errors.push(FieldError::new("url", err.to_string())),
            }
        }
        if let Some(description) = &request.description
            && description.chars().count() > MAX_DESCRIPTION
        {
            errors.push(FieldError::new(
                "description",
                format!("must be at most {MAX_DESCRIPTION} characters"),
            ));
        }
        for kind in request.event_types.iter().flatten() {
            if !EVENT_TYPES.contains(&kind.as_str()) {
                errors.push(FieldError::new(
                    "event_types",
                    format!(
                        "unknown event type `{kind}`; known: {}",
                        EVENT_TYPES.join(", ")
                    ),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(EventsError::Invalid(errors));
        }
        if let Some(url) = url
            && let Err(err) = ssrf::check(&url, self.allow_private).await
        {
            return Err(EventsError::UrlNotAllowed(err.to_string()));
        }
        Ok(())
    }

    pub async fn create_endpoint(
        &self,
        client_id: Uuid,
        request: EndpointRequest,
    ) -> Result<Revealed, EventsError> {
        if request.url.is_none() {
            return Err(EventsError::Invalid(vec![FieldError::new(
                "url",
                "is required",
            )]));
        }
        self.validate(&request).await?;
        // Counted and inserted under the client's lock: two registrations
        // at once cannot both see room for one more.
        let txn = crate::store::begin_write(&self.db).await?;
        crate::store::api_clients::lock(&txn, client_id).await?;
        if endpoints::for_client(&txn, client_id).await?.len() >= MAX_ENDPOINTS {
            return Err(EventsError::Invalid(vec![FieldError::new(
                "url",
                format!("a client may have at most {MAX_ENDPOINTS} endpoints"),
            )]));
        }
        let mut types = request.event_types.unwrap_or_default();
        types.sort();
        types.dedup();
        let id = Uuid::now_v7();
        let secret = Secret::new(signing::generate_secret());
        let endpoint = endpoints::insert(
            &txn,
            NewEndpoint {
                id,
                client_id,
                url: request.url.unwrap_or_default(),
                description: request.description,
                event_types: types,
                secret: self
                    .secrets
                    .seal(id, secrets::Column::Secret, secret.expose()),
            },
        )
        .await?;
        txn.commit().await?;
        tracing::info!(endpoint = %endpoint.id, %client_id, "webhook endpoint registered");
        Ok(Revealed { endpoint, secret })
    }

    pub async fn endpoints(&self, client_id: Uuid) -> Result<Vec<Endpoint>, EventsError> {
        Ok(endpoints::for_client(&self.db, client_id).await?)
    }

    pub async fn endpoint(&self, client_id: Uuid, id: Uuid) -> Result<Endpoint, EventsError> {
        endpoints::find_owned(&self.db, client_id, id)
            .await?
            .ok_or(EventsError::EndpointNotFound)
    }

    pub async fn update_endpoint(
        &self,
        client_id: Uuid,
        id: Uuid,
        request: EndpointRequest,
    ) -> Result<Endpoint, EventsError> {
        let endpoint = self.endpoint(client_id, id).await?;
        self.validate(&request).await?;
        let event_types = request.event_types.map(|mut types| {
            types.sort();
            types.dedup();
            types
        });
        let updated = endpoints::update(
            &self.db,
            endpoint,
            EndpointChanges {
                url: request.url,
                description: request.description.map(Some),
                enabled: request.enabled,
                event_types,
            },
        )
        .await?;
        if !updated.enabled {
            crate::telemetry::failure_streak::forget(id);
        }
        Ok(updated)
    }

    pub async fn delete_endpoint(&self, client_id: Uuid, id: Uuid) -> Result<(), EventsError> {
        if endpoints::delete_owned(&self.db, client_id, id).await? {
            crate::telemetry::failure_streak::forget(id);
            tracing::info!(endpoint = %id, %client_id, "webhook endpoint deleted");
            Ok(())
        } else {
            Err(EventsError::EndpointNotFound)
        }
    }

    /// A new secret; the old one keeps signing for [`ROTATION_OVERLAP`].
    pub async fn rotate_secret(&self, client_id: Uuid, id: Uuid) -> Result<Revealed, EventsError> {
        let endpoint = self.endpoint(client_id, id).await?;
        // The current secret moves to `previous_secret`: sealed again,
        // bound to its new column.
        let current = self
            .secrets
            .open(id, secrets::Column::Secret, &endpoint.secret)
            .map_err(|err| {
                tracing::warn!(endpoint = %id, error = %err, "cannot open an endpoint's secret to rotate it");
                EventsError::Unavailable("the endpoint's signing secret")
            })?;
        let secret = Secret::new(signing::generate_secret());
        let rotated = endpoints::rotate(
            &self.db,
            endpoint,
            self.secrets
                .seal(id, secrets::Column::Secret, secret.expose()),
            self.secrets
                .seal(id, secrets::Column::PreviousSecret, current.expose()),
            Utc::now() + ROTATION_OVERLAP,
        )
        .await?;
        tracing::info!(endpoint = %id, %client_id, "webhook endpoint secret rotated");
        Ok(Revealed {
            endpoint: rotated,
            secret,
        })
    }

    pub async fn list(&self, filter: EventFilter<'_>) -> Result<Vec<Event>, EventsError> {
        Ok(store::list(&self.db, filter).await?)
    }

    /// The client's event and its delivery attempts.
    pub async fn event(
        &self,
        client_id: Uuid,
        id: &str,
    ) -> Result<(Event, Vec<Attempt>), EventsError> {
        let event = store::find_owned(&self.db, client_id, id)
            .await?
            .ok_or(EventsError::EventNotFound)?;
        let attempts = store::attempts(&self.db, id).await?;
        Ok((event, attempts))
    }

    /// Queues the event again, with fresh attempts: to `only`, or to every
    /// enabled endpoint of the client that wants its type. Returns the
    /// endpoints it was queued for.
    pub async fn redeliver(
        &self,
        client_id: Uuid,
        id: &str,
        only: Option<Uuid>,
    ) -> Result<Vec<Uuid>, EventsError> {
        let event = store::find_owned(&self.db, client_id, id)
            .await?
            .ok_or(EventsError::EventNotFound)?;
        let targets: Vec<Uuid> = match only {
            Some(endpoint_id) => vec![self.endpoint(client_id, endpoint_id).await?.id],
            None => endpoints::enabled_for(&self.db, [client_id])
                .await?
                .into_iter()
                .filter(|endpoint| endpoint.wants(&event.kind))
                .map(|endpoint| endpoint.id)
                .collect(),
        };
        if !targets.is_empty() {
            self.queue
                .publish(&delivery(
                    &event.id,
                    targets.clone(),
                    Some(event.body.clone()),
                ))
                .await?;
        }
        tracing::info!(
            event = id,
            endpoints = targets.len(),
            "event redelivery queued"
        );
        Ok(targets)
    }
}

/// The queue message that delivers `event_id` (its `body`) to `endpoints`.
pub fn delivery(event_id: &str, endpoints: Vec<Uuid>, body: Option<String>) -> Envelope {
    Envelope {
        message: QueueMessage::EventDelivery(EventDelivery::new(event_id, endpoints, body)),
        attempt: 0,
        reason: None,
    }
}
