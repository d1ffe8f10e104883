//! payorch — a payment orchestrator.
//!
//! Merchant back ends (API clients) initialize and verify payments over HTTP;
//! payment providers call back with signed webhooks. A request travels:
//!
//! ```text
//! http (gate: auth, rate limit) ─▶ payments::Payments ─▶ per-payment actor
//!                                        ─▶ provider, then one DB transaction
//! webhook ─▶ webhook::ingest (HMAC, parse once) ─▶ queue ─▶ worker
//!                                        ─▶ payments::Payments (same path)
//! ```
//!
//! - [`config`]: the one typed [`Config`], read from the environment once;
//!   [`secret`]: values that never print; [`sealing`]: secrets kept
//!   encrypted at rest under `PAYORCH_SECRETS_KEY`.
//! - [`domain`]: pure types, the payment state machine and the webhook
//!   vocabulary; no I/O.
//! - [`payments`]: the payment core, one method per operation; it owns the
//!   transactions, idempotency and the per-payment actors, and every change
//!   goes through its one apply pipeline.
//! - [`http`]: the poem front end — each operation declares its gate
//!   (authentication, rate limit, body limit); errors leave as problem+json.
//! - [`views`]: the payment and refund as the API returns them and the
//!   merchant events carry them.
//! - [`webhook`]: signed ingest onto the [`queue`] (RabbitMQ or the queue
//!   table: one consumer loop, one retry policy); [`worker`] applies the
//!   messages through the core.
//! - [`events`]: merchant events — the outbox, its relay, signed delivery;
//!   [`listen`]: `payorch listen`, which prints them for a developer.
//! - [`provider`]: the connector trait, routing and breakers, the Paystack
//!   and Flutterwave clients and the built-in sandbox provider.
//! - [`ratelimit`]: per-client limits, one atomic Redis call per check, with a
//!   local limiter when Redis is away.
//! - [`store`]: sea-orm on PostgreSQL or SQLite; schema in `migrations/`.
//! - [`operators`]: the people who settle reviews — their passwords,
//!   bearer tokens and audit log; the command line and the operator API
//!   share it.
//! - [`telemetry`]: logs and metrics.
//!
//! Layers point one way (`tests/layers.rs` checks that no modules refer to
//! each other in a circle): `domain` at the bottom; `store`, `provider` and
//! `queue` on it; `views` and `events` (whose outbox rows the core writes in
//! its own transactions) on those; `payments` on all of them; `operators`
//! on `payments`; `http`, `webhook`, `worker` and `listen` on top.
//!
//! [`serve`] and [`run_worker`] start from the same [`Core`]; `serve` runs on
//! a listener the caller owns, so tests bind port 0 and run many isolated
//! instances side by side.

pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod listen;
pub mod operators;
pub mod payments;
pub mod provider;
pub mod queue;
pub mod ratelimit;
pub mod sealing;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod timing;
pub mod views;
pub mod webhook;
pub mod worker;

use std::{future::Future, sync::Arc, time::Duration};

use poem::{Server, listener::TcpAcceptor};
use sea_orm::DatabaseConnection;

pub use config::{Config, ConfigError};
use http::AppState;
use payments::{ActorSettings, Payments};
use queue::WebhookQueue;
use store::StoreError;

/// How long in-flight requests may take to finish after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Event loops the payment actors are spread over.
const ACTOR_ARBITERS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    #[error("{0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("{0}")]
    Config(&'static str),
    #[error("reconciliation failed: {0}")]
    Reconcile(String),
    #[error(transparent)]
    Review(#[from] payments::ReviewError),
    #[error(transparent)]
    Configuration(#[from] config::ConfigError),
    #[error("embedded mode's secrets key file {0}")]
    KeyFile(String),
}

/// Chooses rustls' `ring` backend for every TLS client (provider API,
/// Postgres, AMQP). Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What `serve` and `worker` both run on: the database (migrated), the
/// payment core and the webhook queue.
pub struct Core {
    pub db: DatabaseConnection,
    /// The provider's secret key: configured, or the sandbox's generated one.
    pub provider_secret: config::Secret,
    pub payments: Payments,
    pub queue: WebhookQueue,
    /// Merchant event deliveries, beside `queue` on the same backend.
    pub events_queue: WebhookQueue,
}

impl Core {
    /// Connects, migrates (unless told not to), and starts the payment
    /// core. `sandbox_base`: where the sandbox provider listens when it is
    /// mounted on the API's own listener.
    pub async fn start(
        cfg: &Config,
        sandbox_base: Option<reqwest::Url>,
    ) -> Result<Core, StartupError> {
        install_crypto_provider();
        telemetry::metrics();
        http::observe::register_known_series();
        cfg.check_provider_named()?;
        let db = store::connect(cfg).await?;
        if cfg.auto_migrate {
            store::migrate(&db, &cfg.database_url).await?;
        }
        let provider_secret = provider_secret(cfg, &db).await?;
        let connectors = provider::from_config(cfg, provider_secret.clone(), sandbox_base);
        if let Some(records) = connectors.calls().recorded() {
            tokio::spawn(store::provider_calls::write(db.clone(), records));
        }
        let payments = Payments::start_with(
            db.clone(),
            connectors,
            ActorSettings {
                idle: cfg.actor_idle,
                mailbox: cfg.actor_mailbox,
                arbiters: ACTOR_ARBITERS,
            },
            cfg.idempotency_lock,
            cfg.late_success,
        )
        .map_err(StartupError::Listen)?;
        let queue = webhook_queue(cfg, &db);
        let events_queue = WebhookQueue::events(
            &queue_backend(cfg, &db),
            &cfg.queue_prefix,
            cfg.event_retry_policy.clone(),
        );
        Ok(Core {
            db,
            provider_secret,
            payments,
            queue,
            events_queue,
        })
    }

    /// The keyring of the endpoints' signing secrets, once any secret
    /// still in clear is sealed with it: for the processes that register
    /// endpoints or deliver to them (`serve`, `worker`), not for the
    /// one-off commands.
    pub async fn endpoint_secrets(
        &self,
        cfg: &Config,
    ) -> Result<events::secrets::EndpointSecrets, StartupError> {
        let secrets = endpoint_secrets(cfg)?;
        seal_plain_endpoint_secrets(&self.db, &secrets).await?;
        Ok(secrets)
    }

    /// The endpoints API, the event log and redelivery.
    pub fn events(
        &self,
        cfg: &Config,
        secrets: &events::secrets::EndpointSecrets,
    ) -> events::Events {
        events::Events::new(
            self.db.clone(),
            self.events_queue.clone(),
            cfg.allows_private_endpoints(),
            secrets.clone(),
        )
    }

    /// The outbox relay, until `shutdown`: every process that changes
    /// payments runs one.
    fn run_relay(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(events::relay::run(
            self.db.clone(),
            self.events_queue.clone(),
            shutdown,
        ))
    }

    /// The event deliverer, until `shutdown`.
    fn run_deliverer(
        &self,
        cfg: &Config,
        secrets: &events::secrets::EndpointSecrets,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let deliverer = events::delivery::Deliverer::new(
            self.db.clone(),
            cfg.event_retry_policy.clone(),
            cfg.event_timeout,
            cfg.allows_private_endpoints(),
            cfg.event_proxy.as_ref().map(config::EventProxy::url),
            secrets.clone(),
        );
        if let Some(proxy) = &cfg.event_proxy {
            tracing::info!(
                ?proxy,
                "merchant event deliveries go through PAYORCH_EVENT_PROXY"
            );
        }
        tokio::spawn(deliverer.run(self.events_queue.clone(), shutdown))
    }
}

/// Runs the HTTP API on `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish, and (without RabbitMQ) drains
/// the in-process worker.
pub async fn serve(
    cfg: Arc<Config>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let addr = listener.local_addr().map_err(StartupError::Listen)?;
    let sandbox_base = mounted_sandbox_base(&cfg, addr);
    let core = Core::start(&cfg, sandbox_base.clone()).await?;
    let endpoint_secrets = core.endpoint_secrets(&cfg).await?;
    let mounted_sandbox = sandbox_base.map(|base| mounted_sandbox(&cfg, &core, base));
    if cfg.is_embedded() {
        announce_embedded_mode(&core.db, addr).await?;
    }
    let purge = tokio::spawn(purge_regularly(core.db.clone(), cfg.clone()));
    let (stop_worker, worker_stops) = tokio::sync::watch::channel(false);
    let stopped = |mut stops: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stops.wait_for(|stop| *stop).await;
    };
    if cfg.is_embedded() && !cfg.allow_private_endpoints {
        tracing::info!(
            "embedded mode: merchant webhook endpoints on loopback and private networks are allowed"
        );
    }
    // Without RabbitMQ there is no `payorch worker`: serve does its work.
    let in_process_worker = match &core.queue {
        WebhookQueue::Table(_) => Some((
            tokio::spawn(worker::run(
                core.payments.clone(),
                core.queue.clone(),
                cfg.worker_prefetch,
                cfg.worker_batch,
                stopped(worker_stops.clone()),
            )),
            tokio::spawn(payments::reconcile::run_sweeper(
                core.payments.clone(),
                sweep(&cfg),
                cfg.reconcile_every,
                stopped(worker_stops.clone()),
            )),
            core.run_deliverer(&cfg, &endpoint_secrets, stopped(worker_stops.clone())),
        )),
        WebhookQueue::Amqp(_) => None,
    };
    let relay = core.run_relay(stopped(worker_stops.clone()));
    let state = AppState {
        cfg: cfg.clone(),
        gatekeeper: http::gate::Gatekeeper::new(
            http::auth::Authenticator::new(core.db.clone(), cfg.auth_cache_ttl),
            Arc::new(rate_limiter(&cfg)),
            cfg.trusted_proxies.clone(),
        ),
        db: core.db.clone(),
        payments: core.payments.clone(),
        webhooks: webhook::ingest::WebhookIngest {
            connectors: core.payments.connectors().clone(),
            queue: core.queue.clone(),
        },
        events: core.events(&cfg, &endpoint_secrets),
        operators: operators::Operators::new(core.db.clone()),
        sandbox: mounted_sandbox,
    };
    tracing::info!(
        %addr,
        provider = cfg.provider.as_str(),
        connectors = ?cfg.providers,
        "payorch API listening"
    );
    let acceptor = TcpAcceptor::from_tokio(listener).map_err(StartupError::Listen)?;
    let served = Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(http::app(state), shutdown, Some(SHUTDOWN_GRACE))
        .await
        .map_err(StartupError::Listen);
    // Requests are done: what they queued is drained, or left in the table
    // for the next start.
    let _ = stop_worker.send(true);
    if let Some((worker, sweeper, deliverer)) = in_process_worker {
        let _ = worker.await;
        let _ = sweeper.await;
        let _ = deliverer.await;
    }
    let _ = relay.await;
    purge.abort();
    core.payments.stop();
    served?;
    tracing::info!("payorch API stopped");
    Ok(())
}

/// Runs one webhook worker (`payorch worker`) until `shutdown`, then
/// finishes the messages it holds and returns.
pub async fn run_worker(
    cfg: Arc<Config>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    if cfg.amqp_url.is_none() {
        return Err(StartupError::Config(
            "AMQP_URL is required for `payorch worker`",
        ));
    }
    let core = Core::start(&cfg, None).await?;
    let endpoint_secrets = core.endpoint_secrets(&cfg).await?;
    let metrics_server = match cfg.metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(StartupError::Listen)?;
            tracing::info!(%addr, "worker metrics listening");
            let acceptor = TcpAcceptor::from_tokio(listener).map_err(StartupError::Listen)?;
            let routes = poem::Route::new().at("/metrics", poem::get(telemetry::render_metrics));
            Some(tokio::spawn(
                Server::new_with_acceptor(acceptor).run(routes),
            ))
        }
        None => None,
    };
    let (stop, stops) = tokio::sync::watch::channel(false);
    let events_stop = stops.clone();
    let purge = tokio::spawn(purge_regularly(core.db.clone(), cfg.clone()));
    let sweeper = tokio::spawn(payments::reconcile::run_sweeper(
        core.payments.clone(),
        sweep(&cfg),
        cfg.reconcile_every,
        async move {
            let mut stops = stops;
            let _ = stops.wait_for(|stop| *stop).await;
        },
    ));
    let settler = tokio::spawn(payments::settlement::run_settler(
        core.payments.clone(),
        cfg.settlement_every,
        stopped_shared(events_stop.clone()),
    ));
    let relay = core.run_relay(stopped_shared(events_stop.clone()));
    let deliverer = core.run_deliverer(&cfg, &endpoint_secrets, stopped_shared(events_stop));
    worker::run(
        core.payments.clone(),
        core.queue.clone(),
        cfg.worker_prefetch,
        cfg.worker_batch,
        shutdown,
    )
    .await;
    let _ = stop.send(true);
    let _ = sweeper.await;
    let _ = settler.await;
    let _ = relay.await;
    let _ = deliverer.await;
    purge.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    core.payments.stop();
    Ok(())
}

/// Runs the sandbox provider alone (`payorch sandbox`) until `shutdown`.
pub async fn serve_sandbox(
    cfg: Arc<Config>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let addr = listener.local_addr().map_err(StartupError::Listen)?;
    let secret = match &cfg.paystack_secret_key {
        Some(secret) => secret.clone(),
        None => {
            let db = store::connect(&cfg).await?;
            if cfg.auto_migrate {
                store::migrate(&db, &cfg.database_url).await?;
            }
            provider_secret(&cfg, &db).await?
        }
    };
    let sandbox = provider::sandbox::Sandbox::new(
        secret,
        format!("http://{addr}"),
        Some(
            cfg.sandbox_webhook_url
                .as_ref()
                .map(|u| u.to_string())
                .unwrap_or_else(|| config::DEFAULT_SANDBOX_WEBHOOK_URL.into()),
        ),
    )
    .with_refund_settle(cfg.sandbox_refund_settle);
    tracing::info!(%addr, "sandbox provider listening");
    let acceptor = TcpAcceptor::from_tokio(listener).map_err(StartupError::Listen)?;
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(sandbox.routes(), shutdown, Some(SHUTDOWN_GRACE))
        .await
        .map_err(StartupError::Listen)
}

/// With the sandbox provider and no `PAYSTACK_BASE_URL`, the sandbox lives
/// on the API's own listener at `/sandbox`: its base URL.
fn mounted_sandbox_base(cfg: &Config, addr: std::net::SocketAddr) -> Option<reqwest::Url> {
    if cfg.provider != config::ProviderKind::Sandbox || cfg.paystack_base_url.is_some() {
        return None;
    }
    let host = sandbox_host(addr);
    Some(
        format!("http://{host}/sandbox/")
            .parse()
            .expect("a socket address makes a URL"),
    )
}

/// The sandbox mounted at `base`, posting its webhooks to this API.
fn mounted_sandbox(cfg: &Config, core: &Core, base: reqwest::Url) -> provider::sandbox::Sandbox {
    let webhook_url = cfg
        .sandbox_webhook_url
        .as_ref()
        .map(|u| u.to_string())
        .unwrap_or_else(|| {
            let host = base.host_str().unwrap_or("127.0.0.1");
            let port = base.port().unwrap_or(80);
            format!("http://{host}:{port}/v1/webhooks/sandbox")
        });
    provider::sandbox::Sandbox::new(
        core.provider_secret.clone(),
        base.as_str(),
        Some(webhook_url),
    )
    .with_refund_settle(cfg.sandbox_refund_settle)
}

fn sandbox_host(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}

/// The provider's key: the configured one, or (sandbox only) the one this
/// installation generated and stored.
async fn provider_secret(
    cfg: &Config,
    db: &DatabaseConnection,
) -> Result<config::Secret, StartupError> {
    match &cfg.paystack_secret_key {
        Some(secret) => Ok(secret.clone()),
        None => {
            let secret = store::settings::sandbox_secret(db).await?;
            tracing::info!(
                "sandbox provider with this installation's generated key (PAYSTACK_SECRET_KEY unset)"
            );
            Ok(secret)
        }
    }
}

/// The keyring that seals endpoint secrets: `PAYORCH_SECRETS_KEY` (and
/// `PAYORCH_SECRETS_KEY_PREVIOUS`), or in embedded mode a key file beside
/// the SQLite database, generated on first start.
pub fn endpoint_secrets(cfg: &Config) -> Result<events::secrets::EndpointSecrets, StartupError> {
    cfg.check_secrets_key()?;
    let keyring = match &cfg.secrets_key {
        Some(key) => sealing::Keyring::new(key.clone(), cfg.secrets_key_previous.clone()),
        None => {
            let path = cfg.embedded_key_file();
            let (key, generated) = sealing::key_file(&path)
                .map_err(|err| StartupError::KeyFile(format!("{}: {err}", path.display())))?;
            tracing::info!(
                key_file = %path.display(),
                key_id = key.id(),
                generated,
                "embedded mode: webhook endpoint secrets are sealed with the key in this file \
                 (PAYORCH_SECRETS_KEY unset); keep it with the database, which is useless without it"
            );
            sealing::Keyring::new(key, None)
        }
    };
    Ok(events::secrets::EndpointSecrets::new(keyring))
}

/// Seals endpoint secrets still in clear (rows written before sealing).
async fn seal_plain_endpoint_secrets(
    db: &DatabaseConnection,
    secrets: &events::secrets::EndpointSecrets,
) -> Result<(), StartupError> {
    let report = secrets
        .reseal(db, events::secrets::Reseal::PlainOnly)
        .await?;
    if report.resealed > 0 || report.unreadable > 0 {
        tracing::info!(
            sealed = report.resealed,
            unreadable = report.unreadable,
            key_id = secrets.keyring().current_id(),
            "webhook endpoint secrets in clear sealed"
        );
    }
    Ok(())
}

/// `payorch secrets rotate`: every endpoint secret sealed again under
/// `PAYORCH_SECRETS_KEY`, opened with it or `PAYORCH_SECRETS_KEY_PREVIOUS`.
pub async fn rotate_secrets(cfg: &Config) -> Result<events::secrets::ResealReport, StartupError> {
    let secrets = endpoint_secrets(cfg)?;
    let db = store::connect(cfg).await?;
    if cfg.auto_migrate {
        store::migrate(&db, &cfg.database_url).await?;
    }
    let report = secrets
        .reseal(&db, events::secrets::Reseal::NotCurrent)
        .await?;
    tracing::info!(
        checked = report.checked,
        resealed = report.resealed,
        unreadable = report.unreadable,
        key_id = secrets.keyring().current_id(),
        "webhook endpoint secrets sealed again under the current key"
    );
    Ok(report)
}

/// Resolves once `stops` says stop; clonable, for tasks that hand it on.
fn stopped_shared(
    stops: tokio::sync::watch::Receiver<bool>,
) -> impl Future<Output = ()> + Clone + Send + 'static {
    let stopped = async move {
        let mut stops = stops;
        let _ = stops.wait_for(|stop| *stop).await;
    };
    futures_util::FutureExt::shared(stopped)
}

/// RabbitMQ when `AMQP_URL` is set, otherwise the queue table in `db`.
fn queue_backend(cfg: &Config, db: &sea_orm::DatabaseConnection) -> queue::QueueBackend {
    match &cfg.amqp_url {
        Some(url) => queue::QueueBackend::Amqp(url.expose().to_owned()),
        None => queue::QueueBackend::Table(db.clone()),
    }
}

/// The provider webhooks' queue the configuration names (`payorch dlq`).
pub fn webhook_queue(cfg: &Config, db: &sea_orm::DatabaseConnection) -> WebhookQueue {
    WebhookQueue::webhooks(
        &queue_backend(cfg, db),
        &cfg.queue_prefix,
        cfg.retry_policy.clone(),
    )
}

/// The shared limiter when Redis is configured, the local one otherwise.
fn rate_limiter(cfg: &Config) -> ratelimit::RateLimiter {
    let shared = cfg.redis_url.as_ref().and_then(|url| {
        ratelimit::redis::RedisLimiter::new(url.expose(), &cfg.redis_prefix, cfg.redis_timeout)
            .map_err(
                |err| tracing::warn!(error = %err, "Redis limiter unavailable; limiting locally"),
            )
            .ok()
    });
    ratelimit::RateLimiter::new(cfg.rate_limits.clone(), shared)
}

/// The reconciliation thresholds from the configuration.
pub fn sweep(cfg: &Config) -> payments::Sweep {
    payments::Sweep {
        after: cfg.reconcile_after,
        abandon_after: cfg.abandon_after,
        review_after: cfg.refund_review_after,
    }
}

/// Reviews, oldest first (`payorch reviews list`; `open_only`: `--open`).
pub async fn list_reviews(
    cfg: Arc<Config>,
    open_only: bool,
) -> Result<Vec<store::reviews::Review>, StartupError> {
    let core = Core::start(&cfg, None).await?;
    let listed = core.payments.reviews(open_only, 10_000).await;
    core.payments.stop();
    Ok(listed?)
}

/// Resolves a review on an operator's word (`payorch reviews resolve`),
/// through the same core as the operator API, audit row included: what
/// the resolution changed is announced at once, as `reconcile` does.
pub async fn resolve_review(
    cfg: Arc<Config>,
    id: uuid::Uuid,
    action: domain::ReviewAction,
    by: &operators::Actor,
    note: Option<String>,
) -> Result<store::reviews::Review, StartupError> {
    let core = Core::start(&cfg, None).await?;
    let resolved = operators::Operators::new(core.db.clone())
        .resolve_review(&core.payments, id, action, by, note)
        .await;
    if resolved.is_ok() {
        events::relay::relay_once(&core.db, &core.events_queue)
            .await
            .map_err(StartupError::Reconcile)?;
    }
    core.payments.stop();
    Ok(resolved?)
}

/// The operator core on the configured database, migrated unless told not
/// to (`payorch operator …`): no payment core, no provider needed.
pub async fn operator_core(cfg: &Config) -> Result<operators::Operators, StartupError> {
    let db = store::connect(cfg).await?;
    if cfg.auto_migrate {
        store::migrate(&db, &cfg.database_url).await?;
    }
    Ok(operators::Operators::new(db))
}

/// One reconciliation pass and one retention purge (`payorch reconcile`,
/// for cron): returns what changed.
pub async fn reconcile_once(cfg: Arc<Config>) -> Result<payments::SweepReport, StartupError> {
    let core = Core::start(&cfg, None).await?;
    let report = core
        .payments
        .reconcile(sweep(&cfg))
        .await
        .map_err(|err| StartupError::Reconcile(err.to_string()))?;
    // What the sweep changed is announced now, not at a worker's next sweep.
    while events::relay::relay_once(&core.db, &core.events_queue)
        .await
        .map_err(StartupError::Reconcile)? as u64
        == events::relay::BATCH
    {}
    payments::reconcile::purge(&core.db, cfg.webhook_retention).await?;
    purge_events(&core.db, cfg.event_retention).await?;
    core.payments.stop();
    Ok(report)
}

/// One settlement pass over `[from, until)` (`payorch reconcile
/// --settlement`): what each connector's listing came to. What it changed
/// is announced at once.
pub async fn settle_once(
    cfg: Arc<Config>,
    from: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
) -> Result<payments::SettlementReport, StartupError> {
    let core = Core::start(&cfg, None).await?;
    let report = core
        .payments
        .settle(from, until)
        .await
        .map_err(|err| StartupError::Reconcile(err.to_string()))?;
    while events::relay::relay_once(&core.db, &core.events_queue)
        .await
        .map_err(StartupError::Reconcile)? as u64
        == events::relay::BATCH
    {}
    core.payments.stop();
    Ok(report)
}

/// The retention purge (idempotency keys past 24 h, processed webhook
/// events, merchant events and provider call records past their
/// retention), every ten minutes
/// from ten minutes after start.
async fn purge_regularly(db: sea_orm::DatabaseConnection, cfg: Arc<Config>) {
    const EVERY: Duration = Duration::from_secs(600);
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    loop {
        every.tick().await;
        match payments::reconcile::purge(&db, cfg.webhook_retention).await {
            Ok((0, 0)) => {}
            Ok((keys, events)) => tracing::info!(keys, events, "retention purge"),
            Err(err) => tracing::warn!(error = %err, "retention purge failed"),
        }
        match purge_events(&db, cfg.event_retention).await {
            Ok(0) => {}
            Ok(events) => tracing::info!(events, "merchant events purged"),
            Err(err) => tracing::warn!(error = %err, "merchant event purge failed"),
        }
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(cfg.event_retention).unwrap_or_default();
        match store::provider_calls::purge(&db, cutoff, 1_000).await {
            Ok(0) => {}
            Ok(calls) => tracing::info!(calls, "provider call records purged"),
            Err(err) => tracing::warn!(error = %err, "provider call purge failed"),
        }
    }
}

/// Deletes merchant events (relayed, with their attempts) past `retention`.
pub async fn purge_events(
    db: &sea_orm::DatabaseConnection,
    retention: Duration,
) -> Result<u64, sea_orm::DbErr> {
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
    store::events::purge(db, cutoff, 1_000).await
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
