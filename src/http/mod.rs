//! The HTTP front end (poem + poem-openapi). Every route is an operation of
//! one OpenAPI service, so `/openapi.json` and `/docs` are generated from the
//! code. Errors of any layer leave as problem+json ([`error`]). Merchants'
//! routes admit API keys; the operator routes (`/v1/operator/…`,
//! [`operator`]) admit operator tokens only.

pub mod auth;
pub mod console;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod gate;
pub mod health;
pub mod limits;
pub mod observe;
mod openapi;
pub mod operator;
pub mod payments;
pub mod problem;
pub mod refunds;
pub mod requests;
pub mod webhooks;

use std::sync::Arc;

use poem::{EndpointExt, IntoEndpoint, Route, endpoint::BoxEndpoint};
use poem_openapi::{OpenApiService, Tags};
use sea_orm::DatabaseConnection;

pub use self::limits::BodyLimit;
use self::{error::render_any_error, gate::Gatekeeper};
use crate::{
    config::Config, payments::Payments, provider::sandbox::Sandbox, webhook::ingest::WebhookIngest,
};

/// Largest request body a client endpoint accepts.
pub const MAX_CLIENT_BODY: usize = 64 * 1024;

/// What every handler may reach. Cheap to clone: pools and `Arc`s inside.
#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    /// For readiness checks; payments are reached through [`Payments`].
    pub db: DatabaseConnection,
    pub payments: Payments,
    /// Authentication and rate limits, used by each operation's gate.
    pub gatekeeper: Gatekeeper,
    pub webhooks: WebhookIngest,
    /// Merchant events: endpoints, the event log, redelivery.
    pub events: crate::events::Events,
    /// Operators: their tokens (the operator gate), reviews, the audit log.
    pub operators: crate::operators::Operators,
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
    /// Merchant events: your webhook endpoints, the event log, redelivery.
    Events,
    /// For payorch's operators, with an operator token (`payorch operator
    /// token NAME`); an API client's key is never accepted here.
    Operator,
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
            refunds::RefundsApi {
                state: state.clone(),
            },
            webhooks::WebhooksApi {
                state: state.clone(),
            },
            endpoints::EndpointsApi {
                state: state.clone(),
            },
            events::EventsApi {
                state: state.clone(),
            },
            operator::OperatorApi {
                state: state.clone(),
            },
            (
                operator::PaymentsApi {
                    state: state.clone(),
                },
                operator::EndpointsApi {
                    state: state.clone(),
                },
                operator::ClientsApi {
                    state: state.clone(),
                },
                operator::ConnectorsApi {
                    state: state.clone(),
                },
            ),
        ),
        "payorch",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Payment orchestrator: initialize, verify and refund payments, receive provider webhooks.",
    );
    let spec = openapi::complete(&service.spec());
    let spec = poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(spec.clone())
    });
    let docs = service.swagger_ui();
    let mut routes = Route::new()
        .at("/metrics", poem::get(crate::telemetry::render_metrics))
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .nest("/console", console::routes())
        .nest("/", service);
    if let Some(sandbox) = &state.sandbox {
        routes = routes.nest("/sandbox", sandbox.routes());
    }
    routes
        .data(state.gatekeeper)
        .data(state.operators)
        .catch_all_error(render_any_error)
        .with(observe::Observe)
        .into_endpoint()
        .boxed()
}
