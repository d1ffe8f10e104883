//! `/v1/webhook-endpoints`: where a client wants its merchant events sent.
//! Scoped to the client (another client's endpoint is a 404); the secret
//! is shown on create and on rotation only.

use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use uuid::Uuid;

use super::{ApiTags, AppState, auth::ClientAuth, error::ApiError, gate::client_operation};
use crate::{
    events::{EndpointRequest, Revealed},
    secret::Secret,
    store::endpoints::Endpoint,
};

pub struct EndpointsApi {
    pub state: AppState,
}

/// A webhook endpoint.
#[derive(Debug, Object)]
pub struct EndpointView {
    pub id: Uuid,
    pub url: String,
    #[oai(nullable)]
    pub description: Option<String>,
    /// The event types sent to it; empty: every type.
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// `whsec_…`, to verify signatures with: in the answers to create and
    /// rotate-secret only.
    #[oai(skip_serializing_if_is_none)]
    pub secret: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl EndpointView {
    fn new(endpoint: Endpoint, secret: Option<Secret>) -> EndpointView {
        EndpointView {
            event_types: endpoint.types(),
            id: endpoint.id,
            url: endpoint.url,
            description: endpoint.description,
            enabled: endpoint.enabled,
            secret: secret.map(|secret| secret.expose().to_owned()),
            created_at: endpoint.created_at,
            updated_at: endpoint.updated_at,
        }
    }
}

/// An endpoint to register.
#[derive(Debug, Object)]
pub struct CreateEndpointBody {
    /// An `http(s)` URL; not on a loopback, private or link-local network
    /// unless the installation allows it.
    pub url: String,
    /// At most 255 characters.
    pub description: Option<String>,
    /// The event types to send; absent or empty: every type.
    pub event_types: Option<Vec<String>>,
}

/// What to change; absent fields stay as they are.
#[derive(Debug, Object)]
pub struct UpdateEndpointBody {
    pub url: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub event_types: Option<Vec<String>>,
}

#[derive(ApiResponse)]
pub enum CreatedEndpoint {
    /// Registered; `secret` is shown this once.
    #[oai(status = 201)]
    Created(Json<EndpointView>),
}

#[derive(ApiResponse)]
pub enum EndpointResponse {
    #[oai(status = 200)]
    Ok(Json<EndpointView>),
}

#[derive(ApiResponse)]
pub enum EndpointList {
    /// The client's endpoints, oldest first.
    #[oai(status = 200)]
    Ok(Json<Vec<EndpointView>>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// Deleted; no further deliveries go to it.
    #[oai(status = 204)]
    NoContent,
}

#[OpenApi(prefix_path = "/v1/webhook-endpoints", tag = "ApiTags::Events")]
impl EndpointsApi {
    /// Register a webhook endpoint.
    ///
    /// Merchant events (`payment.succeeded`, `refund.failed`…) are sent to
    /// it, signed per Standard Webhooks with the `secret` in the answer.
    /// 422 `validation_failed` for a bad URL, an unknown event type or a
    /// long description; 422 `endpoint_url_not_allowed` for a URL on a
    /// private network.
    #[oai(path = "/", method = "post", transform = "client_operation")]
    async fn create(
        &self,
        auth: ClientAuth,
        body: Json<CreateEndpointBody>,
    ) -> Result<CreatedEndpoint, ApiError> {
        let body = body.0;
        let Revealed { endpoint, secret } = self
            .state
            .events
            .create_endpoint(
                auth.0.id,
                EndpointRequest {
                    url: Some(body.url),
                    description: body.description,
                    event_types: body.event_types,
                    enabled: None,
                },
            )
            .await?;
        Ok(CreatedEndpoint::Created(Json(EndpointView::new(
            endpoint,
            Some(secret),
        ))))
    }

    /// List webhook endpoints.
    #[oai(path = "/", method = "get", transform = "client_operation")]
    async fn list(&self, auth: ClientAuth) -> Result<EndpointList, ApiError> {
        let endpoints = self.state.events.endpoints(auth.0.id).await?;
        Ok(EndpointList::Ok(Json(
            endpoints
                .into_iter()
                .map(|endpoint| EndpointView::new(endpoint, None))
                .collect(),
        )))
    }

    /// Get a webhook endpoint.
    #[oai(path = "/:id", method = "get", transform = "client_operation")]
    async fn get(&self, auth: ClientAuth, id: Path<Uuid>) -> Result<EndpointResponse, ApiError> {
        let endpoint = self.state.events.endpoint(auth.0.id, id.0).await?;
        Ok(EndpointResponse::Ok(Json(EndpointView::new(
            endpoint, None,
        ))))
    }

    /// Change a webhook endpoint (URL, description, enabled, event types).
    #[oai(path = "/:id", method = "patch", transform = "client_operation")]
    async fn update(
        &self,
        auth: ClientAuth,
        id: Path<Uuid>,
        body: Json<UpdateEndpointBody>,
    ) -> Result<EndpointResponse, ApiError> {
        let body = body.0;
        let endpoint = self
            .state
            .events
            .update_endpoint(
                auth.0.id,
                id.0,
                EndpointRequest {
                    url: body.url,
                    description: body.description,
                    event_types: body.event_types,
                    enabled: body.enabled,
                },
            )
            .await?;
        Ok(EndpointResponse::Ok(Json(EndpointView::new(
            endpoint, None,
        ))))
    }

    /// Delete a webhook endpoint.
    #[oai(path = "/:id", method = "delete", transform = "client_operation")]
    async fn delete(&self, auth: ClientAuth, id: Path<Uuid>) -> Result<Deleted, ApiError> {
        self.state.events.delete_endpoint(auth.0.id, id.0).await?;
        Ok(Deleted::NoContent)
    }

    /// Rotate a webhook endpoint's secret.
    ///
    /// The answer carries the new secret. For 24 hours the old one signs
    /// too (`webhook-signature` carries both), so receivers can switch
    /// without losing an event.
    #[oai(
        path = "/:id/rotate-secret",
        method = "post",
        transform = "client_operation"
    )]
    async fn rotate_secret(
        &self,
        auth: ClientAuth,
        id: Path<Uuid>,
    ) -> Result<EndpointResponse, ApiError> {
        let Revealed { endpoint, secret } =
            self.state.events.rotate_secret(auth.0.id, id.0).await?;
        Ok(EndpointResponse::Ok(Json(EndpointView::new(
            endpoint,
            Some(secret),
        ))))
    }
}
