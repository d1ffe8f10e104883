//! payorch — a payment orchestrator.
//!
//! Merchant back ends (API clients) initialize and verify payments over HTTP;
//! payment providers call back with signed webhooks. The pieces:
//!
//! - [`config`]: the one typed [`Config`], read from the environment once.
//! - [`domain`]: pure types and the payment state machine; no I/O.
//! - [`http`]: the poem front end — authentication ([`http::auth`]), health,
//!   and the payment routes; every error leaves as problem+json ([`error`]).
//! - [`ratelimit`]: per-client limits, one atomic Redis call per check, with a
//!   local limiter when Redis is away.
//! - [`store`]: sea-orm on PostgreSQL or SQLite; schema in `migrations/`.
//!
//! [`serve`] wires them on a listener the caller owns, so tests bind port 0
//! and run many isolated instances side by side.

pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod ratelimit;
pub mod store;
pub mod telemetry;

use std::{future::Future, sync::Arc, time::Duration};

use poem::{Server, listener::TcpAcceptor};

pub use config::{Config, ConfigError};
use http::AppState;
use store::StoreError;

/// How long in-flight requests may take to finish after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
}

/// Chooses rustls' `ring` backend for every TLS client (provider API,
/// Postgres, AMQP). Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Runs the HTTP API on `listener` until `shutdown` resolves, then stops
/// accepting and lets in-flight requests finish.
pub async fn serve(
    cfg: Arc<Config>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    install_crypto_provider();
    let db = store::connect(&cfg).await?;
    if cfg.auto_migrate {
        store::migrate(&db, &cfg.database_url).await?;
    }
    let addr = listener.local_addr().map_err(StartupError::Listen)?;
    if cfg.is_embedded() {
        announce_embedded_mode(&db, addr).await?;
    }
    let state = AppState {
        cfg: cfg.clone(),
        db,
    };
    tracing::info!(%addr, provider = cfg.provider.as_str(), "payorch API listening");
    let acceptor = TcpAcceptor::from_tokio(listener).map_err(StartupError::Listen)?;
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(http::app(state), shutdown, Some(SHUTDOWN_GRACE))
        .await
        .map_err(StartupError::Listen)?;
    tracing::info!("payorch API stopped");
    Ok(())
}

/// With nothing configured, a developer gets a working key and the URLs.
async fn announce_embedded_mode(
    db: &sea_orm::DatabaseConnection,
    addr: std::net::SocketAddr,
) -> Result<(), StartupError> {
    tracing::info!(
        "embedded mode: SQLite database, in-process queue, local rate limiter, sandbox provider"
    );
    println!("payorch (embedded mode) on http://{addr}");
    println!("  API docs:  http://{addr}/docs");
    println!("  health:    http://{addr}/healthz");
    if store::api_clients::count(db).await? == 0 {
        let (_, key) = store::api_clients::create(db, "dev").await?;
        println!("  dev API key (shown once, stored hashed): {key}");
    } else {
        println!("  API clients exist; make another key with `payorch apikey create --name NAME`");
    }
    Ok(())
}
