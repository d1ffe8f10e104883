//! `/v1/operator/endpoints` and `/v1/operator/events/{id}/redeliver`:
//! merchant endpoints, how each is doing, turning one off, sending an
//! event again.

use chrono::{DateTime, Utc};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;

use super::{client_names, note_of};
use crate::{
    http::{
        ApiTags, AppState, auth::OperatorAuth, error::OperatorProblem, gate::operator_operation,
    },
    operators::{Actor, endpoints::EndpointHealth},
    store::events::Attempt,
};

pub struct EndpointsApi {
    pub state: AppState,
}

#[derive(Debug, Object)]
pub struct EndpointAttemptView {
    pub event_id: String,
    pub attempt: i32,
    pub at: DateTime<Utc>,
    /// `delivered` or `failed`.
    pub status: String,
    pub response_status: Option<i32>,
    pub duration_ms: i64,
    pub error: Option<String>,
}

impl From<Attempt> for EndpointAttemptView {
    fn from(a: Attempt) -> EndpointAttemptView {
        EndpointAttemptView {
            event_id: a.event_id,
            attempt: a.attempt,
            at: a.at,
            status: a.status,
            response_status: a.response_status,
            duration_ms: a.duration_ms,
            error: a.error,
        }
    }
}

/// A merchant's endpoint (never its secret) and how it is doing.
#[derive(Debug, Object)]
pub struct EndpointHealthView {
    pub id: Uuid,
    pub client_id: Uuid,
    pub client_name: Option<String>,
    pub url: String,
    pub description: Option<String>,
    pub enabled: bool,
    /// Attempts failed since the last delivered one (counted up to 100).
    pub failure_streak: u64,
    /// Newest first, at most 5.
    pub last_attempts: Vec<EndpointAttemptView>,
}

impl EndpointHealthView {
    fn new(health: EndpointHealth, client_name: Option<String>) -> EndpointHealthView {
        let e = health.endpoint;
        EndpointHealthView {
            id: e.id,
            client_id: e.client_id,
            client_name,
            url: e.url,
            description: e.description,
            enabled: e.enabled,
            failure_streak: health.failure_streak,
            last_attempts: health
                .last_attempts
                .into_iter()
                .map(EndpointAttemptView::from)
                .collect(),
        }
    }
}

#[derive(Debug, Object)]
pub struct EndpointHealthList {
    pub endpoints: Vec<EndpointHealthView>,
}

#[derive(Debug, Object)]
pub struct EndpointAnswer {
    pub endpoint: EndpointHealthView,
}

#[derive(Debug, Object, serde::Deserialize)]
pub struct DisableBody {
    /// Why, for the audit log (at most 2000 characters).
    pub note: Option<String>,
}

#[derive(Debug, Object, serde::Deserialize)]
pub struct OperatorRedeliverBody {
    /// Only to this endpoint of the event's merchant; absent: every enabled
    /// endpoint of theirs that wants the event's type.
    pub endpoint_id: Option<Uuid>,
}

#[derive(Debug, Object)]
pub struct RedeliveryView {
    pub event_id: String,
    pub endpoint_ids: Vec<Uuid>,
}

#[derive(ApiResponse)]
pub enum EndpointListResponse {
    #[oai(status = 200)]
    Ok(Json<EndpointHealthList>),
}

#[derive(ApiResponse)]
pub enum DisabledEndpoint {
    #[oai(status = 200)]
    Ok(Json<EndpointAnswer>),
}

#[derive(ApiResponse)]
pub enum RedeliveryQueued {
    #[oai(status = 202)]
    Accepted(Json<RedeliveryView>),
}

#[OpenApi(prefix_path = "/v1/operator", tag = "ApiTags::Operator")]
impl EndpointsApi {
    /// Merchant endpoints (all, or one client's; at most 500), each with
    /// its failure streak and latest attempts.
    #[oai(path = "/endpoints", method = "get", transform = "operator_operation")]
    async fn endpoints(
        &self,
        _auth: OperatorAuth,
        client_id: Query<Option<Uuid>>,
    ) -> Result<EndpointListResponse, OperatorProblem> {
        let operators = &self.state.operators;
        let names = client_names(operators).await?;
        let endpoints = operators.endpoints(client_id.0).await?;
        Ok(EndpointListResponse::Ok(Json(EndpointHealthList {
            endpoints: endpoints
                .into_iter()
                .map(|health| {
                    let name = names.get(&health.endpoint.client_id).cloned();
                    EndpointHealthView::new(health, name)
                })
                .collect(),
        })))
    }

    /// Disable a merchant's endpoint: nothing more is delivered to it until
    /// the merchant enables it again (`PATCH /v1/webhook-endpoints/{id}`).
    ///
    /// Recorded in the audit log as `endpoint.disable`.
    #[oai(
        path = "/endpoints/:id/disable",
        method = "post",
        transform = "operator_operation"
    )]
    async fn disable(
        &self,
        auth: OperatorAuth,
        id: Path<Uuid>,
        body: Json<DisableBody>,
    ) -> Result<DisabledEndpoint, OperatorProblem> {
        let note = note_of(body.0.note)?;
        let by = Actor::Operator(auth.operator().name);
        let operators = &self.state.operators;
        let health = operators
            .disable_endpoint(id.0, note.as_deref(), &by)
            .await?;
        let names = client_names(operators).await?;
        let name = names.get(&health.endpoint.client_id).cloned();
        Ok(DisabledEndpoint::Ok(Json(EndpointAnswer {
            endpoint: EndpointHealthView::new(health, name),
        })))
    }

    /// Deliver a merchant event again, with the same `webhook-id`.
    ///
    /// Recorded in the audit log as `event.redeliver`.
    #[oai(
        path = "/events/:id/redeliver",
        method = "post",
        transform = "operator_operation"
    )]
    async fn redeliver(
        &self,
        auth: OperatorAuth,
        id: Path<String>,
        body: Json<OperatorRedeliverBody>,
    ) -> Result<RedeliveryQueued, OperatorProblem> {
        let by = Actor::Operator(auth.operator().name);
        let endpoint_ids = self
            .state
            .operators
            .redeliver_event(&self.state.events, &id.0, body.0.endpoint_id, &by)
            .await?;
        Ok(RedeliveryQueued::Accepted(Json(RedeliveryView {
            event_id: id.0,
            endpoint_ids,
        })))
    }
}
