//! `/v1/operator/clients`: API clients — list, create, revoke, rotate a
//! key with a grace period. Keys are shown once, in the answer that made
//! them.

use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use uuid::Uuid;

use super::{invalid, note_of};
use crate::{
    http::{
        ApiTags, AppState, auth::OperatorAuth, error::OperatorProblem, gate::operator_operation,
    },
    operators::{Actor, clients::MAX_CLIENT_NAME},
    store::api_clients::{ClientRow, MAX_GRACE},
};

pub struct ClientsApi {
    pub state: AppState,
}

/// An API client (never its key).
#[derive(Debug, Object)]
pub struct ClientView {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// When it was revoked; null while its keys work.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Until when the key it had before its last rotation still works.
    pub previous_key_expires_at: Option<DateTime<Utc>>,
}

impl From<ClientRow> for ClientView {
    fn from(row: ClientRow) -> ClientView {
        ClientView {
            id: row.id,
            name: row.name,
            created_at: row.created_at,
            disabled_at: row.disabled_at,
            previous_key_expires_at: row.previous_key_expires_at,
        }
    }
}

#[derive(Debug, Object)]
pub struct ClientList {
    /// Newest first.
    pub clients: Vec<ClientView>,
}

#[derive(Debug, Object)]
pub struct ClientWithKey {
    pub client: ClientView,
    /// The secret key (`po_sk_…`): shown this once, only its SHA-256 is kept.
    pub key: String,
}

#[derive(Debug, Object)]
pub struct ClientAnswer {
    pub client: ClientView,
}

#[derive(Debug, Object, serde::Deserialize)]
pub struct CreateClientBody {
    /// 1 to 100 characters.
    pub name: String,
}

#[derive(Debug, Object, serde::Deserialize)]
pub struct RevokeBody {
    /// Why, for the audit log (at most 2000 characters).
    pub note: Option<String>,
}

#[derive(Debug, Object, serde::Deserialize)]
pub struct RotateBody {
    /// How long the current key keeps working beside the new one, 0 to
    /// 604800 (7 days).
    pub grace_seconds: u64,
    /// Why, for the audit log (at most 2000 characters).
    pub note: Option<String>,
}

#[derive(ApiResponse)]
pub enum ClientListResponse {
    #[oai(status = 200)]
    Ok(Json<ClientList>),
}

#[derive(ApiResponse)]
pub enum CreatedClient {
    #[oai(status = 201)]
    Created(Json<ClientWithKey>),
}

#[derive(ApiResponse)]
pub enum RevokedClient {
    #[oai(status = 200)]
    Ok(Json<ClientAnswer>),
}

#[derive(ApiResponse)]
pub enum RotatedClient {
    #[oai(status = 200)]
    Ok(Json<ClientWithKey>),
}

#[OpenApi(prefix_path = "/v1/operator", tag = "ApiTags::Operator")]
impl ClientsApi {
    /// List API clients, newest first.
    #[oai(path = "/clients", method = "get", transform = "operator_operation")]
    async fn clients(&self, _auth: OperatorAuth) -> Result<ClientListResponse, OperatorProblem> {
        let clients = self.state.operators.clients().await?;
        Ok(ClientListResponse::Ok(Json(ClientList {
            clients: clients.into_iter().map(ClientView::from).collect(),
        })))
    }

    /// Create an API client; its key is in the answer, once.
    ///
    /// Recorded in the audit log as `api_client.create`.
    #[oai(path = "/clients", method = "post", transform = "operator_operation")]
    async fn create(
        &self,
        auth: OperatorAuth,
        body: Json<CreateClientBody>,
    ) -> Result<CreatedClient, OperatorProblem> {
        let name = body.0.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_CLIENT_NAME {
            return Err(invalid(
                "name",
                format!("1 to {MAX_CLIENT_NAME} characters"),
            ));
        }
        let by = Actor::Operator(auth.operator().name);
        let (client, key) = self.state.operators.create_client(&name, &by).await?;
        Ok(CreatedClient::Created(Json(ClientWithKey {
            client: client.into(),
            key,
        })))
    }

    /// Revoke an API client: every key of it is refused (`401`) on every
    /// instance within `PAYORCH_AUTH_CACHE_MS`.
    ///
    /// Revoking a revoked client changes nothing. Recorded in the audit
    /// log as `api_client.revoke`.
    #[oai(
        path = "/clients/:id/revoke",
        method = "post",
        transform = "operator_operation"
    )]
    async fn revoke(
        &self,
        auth: OperatorAuth,
        id: Path<Uuid>,
        body: Json<RevokeBody>,
    ) -> Result<RevokedClient, OperatorProblem> {
        let note = note_of(body.0.note)?;
        let by = Actor::Operator(auth.operator().name);
        let client = self
            .state
            .operators
            .revoke_client(id.0, note.as_deref(), &by)
            .await?;
        Ok(RevokedClient::Ok(Json(ClientAnswer {
            client: client.into(),
        })))
    }

    /// Rotate an API client's key: a new key (in the answer, once), and
    /// the current one keeps working for `grace_seconds`.
    ///
    /// A key still in its grace period from an earlier rotation stops at
    /// once. `409 conflict` for a revoked client. Recorded in the audit
    /// log as `api_client.rotate`.
    #[oai(
        path = "/clients/:id/rotate",
        method = "post",
        transform = "operator_operation"
    )]
    async fn rotate(
        &self,
        auth: OperatorAuth,
        id: Path<Uuid>,
        body: Json<RotateBody>,
    ) -> Result<RotatedClient, OperatorProblem> {
        let RotateBody {
            grace_seconds,
            note,
        } = body.0;
        let most = MAX_GRACE.num_seconds() as u64;
        if grace_seconds > most {
            return Err(invalid("grace_seconds", format!("0 to {most}")));
        }
        let note = note_of(note)?;
        let by = Actor::Operator(auth.operator().name);
        let grace = chrono::Duration::seconds(grace_seconds as i64);
        let (client, key) = self
            .state
            .operators
            .rotate_client_key(id.0, grace, note.as_deref(), &by)
            .await?;
        Ok(RotatedClient::Ok(Json(ClientWithKey {
            client: client.into(),
            key,
        })))
    }
}
