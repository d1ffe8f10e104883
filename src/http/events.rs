//! `/v1/events`: the client's merchant events, newest first, each with
//! its delivery attempts, and redelivery.

use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, param::Query, payload::Json};
use uuid::Uuid;

use super::{ApiTags, AppState, auth::ClientAuth, error::ApiError, gate::client_operation};
use crate::{
    domain::FieldError,
    store::events::{Attempt, Event, EventFilter},
};

/// The most events one page holds.
pub const MAX_PAGE: u64 = 100;
const DEFAULT_PAGE: u64 = 20;

pub struct EventsApi {
    pub state: AppState,
}

/// A merchant event as it was delivered.
#[derive(Debug, Object)]
pub struct EventView {
    /// `evt_…`: the `webhook-id` of its deliveries.
    pub id: String,
    #[oai(rename = "type")]
    pub kind: String,
    pub created_at: DateTime<Utc>,
    /// The payment or refund as it was after the change (a payment's
    /// carries `version`).
    pub data: serde_json::Value,
    /// Delivery attempts, oldest first (`GET /v1/events/{id}` only).
    #[oai(skip_serializing_if_is_none)]
    pub attempts: Option<Vec<AttemptView>>,
}

/// One delivery attempt.
#[derive(Debug, Object)]
pub struct AttemptView {
    pub endpoint_id: Uuid,
    /// 0 for the first attempt.
    pub attempt: i32,
    pub at: DateTime<Utc>,
    /// `delivered`, `retrying` (another attempt is due) or `failed` (the
    /// last; redeliver to try again).
    pub status: String,
    #[oai(nullable)]
    pub response_status: Option<i32>,
    pub duration_ms: i64,
    #[oai(nullable)]
    pub error: Option<String>,
}

impl EventView {
    fn new(event: Event, attempts: Option<Vec<Attempt>>) -> EventView {
        let data = serde_json::from_str::<serde_json::Value>(&event.body)
            .ok()
            .and_then(|mut body| body.get_mut("data").map(serde_json::Value::take))
            .unwrap_or_default();
        EventView {
            id: event.id,
            kind: event.kind,
            created_at: event.created_at,
            data,
            attempts: attempts.map(|rows| {
                rows.into_iter()
                    .map(|a| AttemptView {
                        endpoint_id: a.endpoint_id,
                        attempt: a.attempt,
                        at: a.at,
                        status: a.status,
                        response_status: a.response_status,
                        duration_ms: a.duration_ms,
                        error: a.error,
                    })
                    .collect()
            }),
        }
    }
}

/// A page of events.
#[derive(Debug, Object)]
pub struct EventPage {
    pub data: Vec<EventView>,
    /// Whether older events follow.
    pub has_more: bool,
    /// Pass as `after` for the next page (the last event's id).
    #[oai(nullable)]
    pub next_after: Option<String>,
}

/// Which endpoints to deliver to again.
#[derive(Debug, Object, Default, serde::Deserialize)]
pub struct RedeliverBody {
    /// One endpoint; absent: every enabled endpoint that wants the type.
    pub endpoint_id: Option<Uuid>,
}

/// Redelivery queued.
#[derive(Debug, Object)]
pub struct Redelivery {
    pub event_id: String,
    pub endpoint_ids: Vec<Uuid>,
}

#[derive(ApiResponse)]
pub enum EventPageResponse {
    #[oai(status = 200)]
    Ok(Json<EventPage>),
}

#[derive(ApiResponse)]
pub enum EventResponse {
    #[oai(status = 200)]
    Ok(Json<EventView>),
}

#[derive(ApiResponse)]
pub enum RedeliverResponse {
    /// Queued: fresh attempts follow the retry schedule from the start.
    #[oai(status = 202)]
    Accepted(Json<Redelivery>),
}

#[OpenApi(prefix_path = "/v1/events", tag = "ApiTags::Events")]
impl EventsApi {
    /// List events, newest first.
    ///
    /// Filter by `type` and by `payment` (your reference); page with
    /// `after` (the `next_after` of the previous page) and `limit` (1–100,
    /// default 20).
    #[oai(path = "/", method = "get", transform = "client_operation")]
    async fn list(
        &self,
        auth: ClientAuth,
        #[oai(name = "type")] kind: Query<Option<String>>,
        payment: Query<Option<String>>,
        after: Query<Option<String>>,
        limit: Query<Option<u64>>,
    ) -> Result<EventPageResponse, ApiError> {
        let limit = limit.0.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::Validation {
                errors: vec![FieldError::new(
                    "limit",
                    format!("must be between 1 and {MAX_PAGE}"),
                )],
            });
        }
        if let Some(kind) = &kind.0
            && !crate::events::EVENT_TYPES.contains(&kind.as_str())
        {
            return Err(ApiError::Validation {
                errors: vec![FieldError::new(
                    "type",
                    format!("unknown event type `{kind}`"),
                )],
            });
        }
        let payment_id = match &payment.0 {
            Some(reference) => match self.state.payments.get(auth.0.id, reference).await {
                Ok((payment, _)) => Some(payment.id),
                Err(crate::payments::PaymentError::NotFound) => {
                    return Ok(EventPageResponse::Ok(Json(EventPage {
                        data: Vec::new(),
                        has_more: false,
                        next_after: None,
                    })));
                }
                Err(err) => return Err(err.into()),
            },
            None => None,
        };
        let mut events = self
            .state
            .events
            .list(EventFilter {
                client_id: auth.0.id,
                kind: kind.0.as_deref(),
                payment_id,
                after: after.0.as_deref(),
                limit: limit + 1,
            })
            .await?;
        let has_more = events.len() as u64 > limit;
        events.truncate(limit as usize);
        let next_after = has_more
            .then(|| events.last().map(|event| event.id.clone()))
            .flatten();
        Ok(EventPageResponse::Ok(Json(EventPage {
            data: events
                .into_iter()
                .map(|event| EventView::new(event, None))
                .collect(),
            has_more,
            next_after,
        })))
    }

    /// Get an event with its delivery attempts.
    #[oai(path = "/:id", method = "get", transform = "client_operation")]
    async fn get(&self, auth: ClientAuth, id: Path<String>) -> Result<EventResponse, ApiError> {
        let (event, attempts) = self.state.events.event(auth.0.id, &id.0).await?;
        Ok(EventResponse::Ok(Json(EventView::new(
            event,
            Some(attempts),
        ))))
    }

    /// Deliver an event again.
    ///
    /// To every enabled endpoint that wants its type, or, with a JSON body
    /// `{"endpoint_id": "…"}`, to that one; with the same `webhook-id`.
    #[oai(
        path = "/:id/redeliver",
        method = "post",
        transform = "client_operation"
    )]
    async fn redeliver(
        &self,
        auth: ClientAuth,
        id: Path<String>,
        body: poem::Body,
    ) -> Result<RedeliverResponse, ApiError> {
        let body = body
            .into_bytes_limit(super::MAX_CLIENT_BODY)
            .await
            .map_err(|err| ApiError::BadRequest(err.to_string()))?;
        let only = if body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            serde_json::from_slice::<RedeliverBody>(&body)
                .map_err(|err| ApiError::BadRequest(format!("the body is not valid JSON: {err}")))?
                .endpoint_id
        };
        let endpoint_ids = self.state.events.redeliver(auth.0.id, &id.0, only).await?;
        Ok(RedeliverResponse::Accepted(Json(Redelivery {
            event_id: id.0,
            endpoint_ids,
        })))
    }
}
