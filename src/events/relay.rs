//! The outbox relay: queues one delivery per (event, endpoint that wants
//! it) for each event still in the outbox, then marks the event published.
//!
//! It does not poll in a loop. On PostgreSQL it listens on
//! `payorch_events`, which a trigger on `events` notifies when a writing
//! transaction commits (a rolled-back change never notifies, and its row
//! never existed). In this process, [`wake`] is called as an event is
//! written; on SQLite the relay's write transaction waits for the writer's
//! to end, so it finds the row. A sweep every [`SWEEP`] catches what a
//! missed notification (a lost listening connection) left behind.
//!
//! Several relays share the outbox: rows are claimed `FOR UPDATE SKIP
//! LOCKED`. A relay that dies after publishing and before its commit
//! leaves the rows unpublished, and they are queued again — a delivery is
//! at least once, and receivers deduplicate by `webhook-id`.

use std::{collections::HashSet, future::Future, sync::LazyLock, time::Duration};

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, TransactionTrait};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::{
    queue::WebhookQueue,
    store::{endpoints, events},
};

/// Events claimed per round.
pub const BATCH: u64 = 256;
/// How often the outbox is looked at without a notification.
pub const SWEEP: Duration = Duration::from_secs(1);
/// The PostgreSQL notification channel (see the events migration).
pub const CHANNEL: &str = "payorch_events";

static WRITTEN: LazyLock<Notify> = LazyLock::new(Notify::new);

/// Tells this process's relay that an event was written.
pub fn wake() {
    WRITTEN.notify_one();
}

/// Relays until `shutdown`.
pub async fn run(db: DatabaseConnection, queue: WebhookQueue, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut listener = listen(&db).await;
    let mut backoff = Duration::from_millis(100);
    tracing::info!(notified = listener.is_some(), "event relay running");
    loop {
        match relay_once(&db, &queue).await {
            Ok(relayed) => {
                backoff = Duration::from_millis(100);
                if relayed as u64 == BATCH {
                    continue;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "event relay failed; retrying");
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        observe_lag(&db).await;
        let notified = async {
            match listener.as_mut() {
                Some(listener) => {
                    if let Err(err) = listener.recv().await {
                        tracing::warn!(error = %err, "event notifications interrupted");
                        tokio::time::sleep(SWEEP).await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = notified => {}
            _ = WRITTEN.notified() => {}
            _ = tokio::time::sleep(SWEEP) => {}
        }
        // One round serves every commit notified so far.
        if let Some(listener) = listener.as_mut() {
            while listener.next_buffered().is_some() {}
        }
    }
}

async fn listen(db: &DatabaseConnection) -> Option<sea_orm::sqlx::postgres::PgListener> {
    if db.get_database_backend() != DbBackend::Postgres {
        return None;
    }
    let pool = db.get_postgres_connection_pool();
    let listening = async {
        let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(CHANNEL).await?;
        Ok::<_, sea_orm::sqlx::Error>(listener)
    };
    match tokio::time::timeout(Duration::from_secs(5), listening).await {
        Ok(Ok(listener)) => Some(listener),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "cannot listen for events; sweeping every second");
            None
        }
        Err(_) => {
            tracing::warn!("listening for events timed out; sweeping every second");
            None
        }
    }
}

/// One round: claims up to [`BATCH`] unpublished events, queues their
/// deliveries, marks them published. Returns how many events it took.
pub async fn relay_once(db: &DatabaseConnection, queue: &WebhookQueue) -> Result<usize, String> {
    if db.get_database_backend() == DbBackend::Postgres {
        let txn = db.begin().await.map_err(|e| e.to_string())?;
        let relayed = relay_in(&txn, queue).await?;
        txn.commit().await.map_err(|e| e.to_string())?;
        Ok(relayed)
    } else {
        // One process owns a SQLite file, and the in-process queue writes
        // through another connection: no transaction held across it.
        relay_in(db, queue).await
    }
}

async fn relay_in(conn: &impl ConnectionTrait, queue: &WebhookQueue) -> Result<usize, String> {
    let claimed = events::claim_unpublished(conn, BATCH)
        .await
        .map_err(|e| e.to_string())?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let clients: HashSet<Uuid> = claimed.iter().map(|event| event.client_id).collect();
    let endpoints = endpoints::enabled_for(conn, clients)
        .await
        .map_err(|e| e.to_string())?;
    let deliveries: Vec<_> = claimed
        .iter()
        .flat_map(|event| {
            endpoints
                .iter()
                .filter(|endpoint| {
                    endpoint.client_id == event.client_id && endpoint.wants(&event.kind)
                })
                .map(|endpoint| super::delivery(&event.id, endpoint.id))
        })
        .collect();
    let published =
        futures_util::future::join_all(deliveries.iter().map(|envelope| queue.publish(envelope)))
            .await;
    if let Some(Err(err)) = published.into_iter().find(Result::is_err) {
        return Err(format!("queueing deliveries: {err}"));
    }
    let ids: Vec<String> = claimed.iter().map(|event| event.id.clone()).collect();
    events::mark_published(conn, ids, Utc::now())
        .await
        .map_err(|e| e.to_string())?;
    metrics::counter!("payorch_events_relayed_total").increment(claimed.len() as u64);
    tracing::debug!(
        events = claimed.len(),
        deliveries = deliveries.len(),
        "events relayed"
    );
    Ok(claimed.len())
}

/// `payorch_events_outbox_lag_seconds`: the age of the oldest event not
/// yet relayed (0 when the outbox is empty).
async fn observe_lag(db: &DatabaseConnection) {
    if let Ok(oldest) = events::oldest_unpublished(db).await {
        let lag = oldest
            .map(|at| (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        metrics::gauge!("payorch_events_outbox_lag_seconds").set(lag);
    }
}
