//! The HTTP front end (poem + poem-openapi). Every route is an operation of
//! one OpenAPI service, so `/openapi.json` and `/docs` are generated from the
//! code. Errors of any layer leave as problem+json (`crate::error`).

pub mod auth;
pub mod gate;
pub mod health;
pub mod limits;
pub mod observe;
pub mod payments;
pub mod problem;
pub mod webhooks;

use std::sync::Arc;

use poem::{EndpointExt, IntoEndpoint, Route, endpoint::BoxEndpoint};
use poem_openapi::{OpenApiService, Tags};
use sea_orm::DatabaseConnection;

use crate::{
    actors::PaymentRegistry, config::Config, error::render_any_error, provider::sandbox::Sandbox,
    ratelimit::RateLimiter,
};

/// Largest request body a client endpoint accepts.
pub const MAX_CLIENT_BODY: usize = 64 * 1024;

/// What every handler may reach. Cheap to clone: pools and `Arc`s inside.
#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub db: DatabaseConnection,
    pub payments: PaymentRegistry,
    pub limiter: Arc<RateLimiter>,
    pub authenticator: auth::Authenticator,
    pub webhooks: crate::webhook::ingest::WebhookIngest,
    /// The sandbox provider when it is mounted on this listener at `/sandbox`.
    pub sandbox: Option<Sandbox>,
}

#[derive(Tags)]
pub enum ApiTags {
    /// Liveness and readiness.
    Health,
    /// Initialize, verify and read payments.
    Payments,
    /// Provider callbacks.
    Webhooks,
}

/// The whole API as one endpoint: operations, spec, Swagger UI.
pub fn app(state: AppState) -> BoxEndpoint<'static> {
    let service = OpenApiService::new(
        (
            health::HealthApi {
                state: state.clone(),
            },
            payments::PaymentsApi {
                state: state.clone(),
            },
            webhooks::WebhooksApi {
                state: state.clone(),
            },
        ),
        "payorch",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Payment orchestrator: initialize and verify payments, receive provider webhooks.",
    );
    let spec = service.spec_endpoint();
    let docs = service.swagger_ui();
    let mut routes = Route::new()
        .at("/metrics", poem::get(crate::telemetry::render_metrics))
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .nest(
            "/",
            service
                .with(limits::BodyLimit(MAX_CLIENT_BODY))
                .with(gate::ClientGate {
                    authenticator: state.authenticator.clone(),
                    limiter: state.limiter.clone(),
                    trusted_proxies: Arc::new(state.cfg.trusted_proxies.clone()),
                }),
        );
    if let Some(sandbox) = &state.sandbox {
        routes = routes.nest("/sandbox", sandbox.routes());
    }
    routes
        .data(state)
        .catch_all_error(render_any_error)
        .with(observe::Observe)
        .into_endpoint()
        .boxed()
}
