//! `Authorization: Bearer <api key>` → the calling [`ApiClient`]. A missing,
//! malformed, unknown or disabled key is a 401 problem+json (`unauthorized`).

use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};

use crate::{
    error::ApiError,
    http::AppState,
    store::api_clients::{self, ApiClient},
};

/// The API key of a merchant back end.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "authenticate")]
pub struct ClientAuth(pub ApiClient);

async fn authenticate(req: &Request, bearer: Bearer) -> poem::Result<ApiClient> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| ApiError::Internal("application state missing".into()))?;
    match api_clients::authenticate(&state.db, &bearer.token).await {
        Ok(Some(client)) => Ok(client),
        Ok(None) => Err(ApiError::Unauthorized.into()),
        Err(err) => Err(ApiError::from(err).into()),
    }
}
