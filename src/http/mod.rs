//! The HTTP front end (poem + poem-openapi). Every route is an operation of
//! one OpenAPI service, so `/openapi.json` and `/docs` are generated from the
//! code. Errors of any layer leave as problem+json (`crate::error`).

pub mod auth;
pub mod health;

use std::sync::Arc;

use poem::{EndpointExt, IntoEndpoint, Route, endpoint::BoxEndpoint};
use poem_openapi::{OpenApiService, Tags};
use sea_orm::DatabaseConnection;

use crate::{config::Config, error::render_any_error};

/// What every handler may reach. Cheap to clone: pools and `Arc`s inside.
#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub db: DatabaseConnection,
}

#[derive(Tags)]
pub enum ApiTags {
    /// Liveness and readiness.
    Health,
}

/// The whole API as one endpoint: operations, spec, Swagger UI.
pub fn app(state: AppState) -> BoxEndpoint<'static> {
    let service = OpenApiService::new(
        health::HealthApi {
            state: state.clone(),
        },
        "payorch",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Payment orchestrator: initialize and verify payments, receive provider webhooks.",
    );
    let spec = service.spec_endpoint();
    let docs = service.swagger_ui();
    Route::new()
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .nest("/", service)
        .data(state)
        .catch_all_error(render_any_error)
        .into_endpoint()
        .boxed()
}
