//! `/healthz` says the process is alive; `/readyz` says whether it can do its
//! work: the database answers, and Redis and RabbitMQ where configured.

use std::{collections::BTreeMap, future::Future, time::Duration};

use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use sea_orm::ConnectionTrait;

use super::{ApiTags, AppState};

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct HealthApi {
    pub state: AppState,
}

#[derive(Object)]
pub struct Health {
    /// Always `ok` while the process serves requests.
    pub status: String,
}

#[derive(Object)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// Each dependency checked: `ok`, or why it failed.
    pub checks: BTreeMap<String, String>,
    /// Each enabled connector's circuit breaker: `closed`, `half_open` or
    /// `open`. Informational: an open breaker does not make the instance
    /// unready (initialize fails over, and everything else still works).
    pub connectors: BTreeMap<String, String>,
}

#[derive(ApiResponse)]
pub enum ReadinessResponse {
    /// Every dependency answered.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// At least one dependency failed; `checks` says which.
    #[oai(status = 503)]
    NotReady(Json<Readiness>),
}

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness: the process is up.
    #[oai(path = "/healthz", method = "get")]
    async fn healthz(&self) -> Json<Health> {
        Json(Health {
            status: "ok".into(),
        })
    }

    /// Readiness: the database, and Redis and RabbitMQ when configured.
    #[oai(path = "/readyz", method = "get")]
    async fn readyz(&self) -> ReadinessResponse {
        let state = &self.state;
        let mut checks = BTreeMap::new();
        checks.insert(
            "database".to_owned(),
            check(async { state.db.execute_unprepared("SELECT 1").await.map(drop) }).await,
        );
        if let Some(url) = &state.cfg.redis_url {
            let url = url.expose().to_owned();
            checks.insert(
                "redis".to_owned(),
                check(async move {
                    let client = redis::Client::open(url)?;
                    let mut conn = client.get_multiplexed_async_connection().await?;
                    redis::cmd("PING")
                        .query_async::<String>(&mut conn)
                        .await
                        .map(drop)
                })
                .await,
            );
        }
        if state.cfg.amqp_url.is_some() {
            checks.insert("amqp".to_owned(), check(state.webhooks.queue.check()).await);
        }
        let ready = checks.values().all(|outcome| outcome == "ok");
        let connectors = state
            .payments
            .connectors()
            .breakers()
            .into_iter()
            .map(|(name, breaker)| (name.to_owned(), breaker.as_str().to_owned()))
            .collect();
        let report = Readiness {
            status: if ready { "ready" } else { "not_ready" }.into(),
            checks,
            connectors,
        };
        if ready {
            ReadinessResponse::Ready(Json(report))
        } else {
            ReadinessResponse::NotReady(Json(report))
        }
    }
}

/// `ok`, or the failure in a few words; never hangs past [`CHECK_TIMEOUT`].
async fn check<E: std::fmt::Display>(probe: impl Future<Output = Result<(), E>>) -> String {
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => "ok".into(),
        Ok(Err(err)) => format!("failed: {err}"),
        Err(_) => format!("failed: no answer within {} s", CHECK_TIMEOUT.as_secs()),
    }
}
