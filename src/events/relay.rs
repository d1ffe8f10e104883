//! The outbox relay: queues one delivery message per event still in the
//! outbox, naming every endpoint that wants it, then marks the event
//! published.
//!
//! It does not poll in a loop. Every process that changes payments runs a
//! relay, and the payment core wakes it ([`wake`]) after each commit, so
//! an event is relayed as soon as its transaction is visible (a rolled-back
//! change never wrote one). A sweep every [`SWEEP`] takes what no relay was
//! woken for: events of a process that died right after its commit, or of
//! `payorch reconcile`. (PostgreSQL's `NOTIFY` would wake relays in other
//! processes too, but it serializes every notifying commit: it cut a
//! one-insert transaction from 3 341 to 1 935 tps on this machine.)
//!
//! Several relays share the outbox: rows are claimed `FOR UPDATE SKIP
//! LOCKED`. A relay that dies after publishing and before its commit
//! leaves the rows unpublished, and they are queued again — a delivery is
//! at least once, and receivers deduplicate by `webhook-id`. A publish the
//! queue refuses leaves only its own event for the next round: the others
//! of the round are marked published (see [`relayed`]).

use std::{collections::HashSet, future::Future, sync::LazyLock, time::Duration};

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, TransactionTrait};
use tokio::{sync::Notify, time::Instant};
use uuid::Uuid;

use crate::{
    queue::WebhookQueue,
    store::{endpoints, events},
};

/// Events claimed per round.
pub const BATCH: u64 = 256;
/// The least time between the starts of two woken rounds. A relay woken
/// after a quiet spell relays at once; one woken again within this of its
/// last round waits out the rest of it, so a busy process relays many
/// commits per round (at most one round per `SPACING`) instead of one.
pub const SPACING: Duration = Duration::from_millis(4);
/// How often the outbox is looked at without a notification.
pub const SWEEP: Duration = Duration::from_secs(1);

static WRITTEN: LazyLock<Notify> = LazyLock::new(Notify::new);

/// Tells this process's relay that a transaction committed (it may have
/// written events).
pub fn wake() {
    WRITTEN.notify_one();
}

/// Relays until `shutdown`.
pub async fn run(db: DatabaseConnection, queue: WebhookQueue, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(100);
    let mut lag_observed: Option<Instant> = None;
    tracing::info!("event relay running");
    loop {
        let round = Instant::now();
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
        if lag_observed.is_none_or(|at| at.elapsed() >= SWEEP) {
            observe_lag(&db).await;
            lag_observed = Some(Instant::now());
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = WRITTEN.notified() => {
                // Commits arriving meanwhile share the next round.
                tokio::time::sleep_until(round + SPACING).await;
            }
            _ = tokio::time::sleep(SWEEP) => {}
        }
    }
}

/// One round: claims up to [`BATCH`] unpublished events, queues their
/// deliveries, marks them published. Returns how many events it took, or
/// why some could not be queued (the others are marked published).
pub async fn relay_once(db: &DatabaseConnection, queue: &WebhookQueue) -> Result<usize, String> {
    let round = if db.get_database_backend() == DbBackend::Postgres {
        let txn = db.begin().await.map_err(|e| e.to_string())?;
        let round = relay_in(&txn, queue).await?;
        txn.commit().await.map_err(|e| e.to_string())?;
        round
    } else {
        // One process owns a SQLite file, and the in-process queue writes
        // through another connection: no transaction held across it.
        relay_in(db, queue).await?
    };
    match round.failed {
        Some(err) => Err(format!("queueing deliveries: {err}")),
        None => Ok(round.claimed),
    }
}

/// What a round did.
struct Round {
    claimed: usize,
    /// The first publish the queue refused, if any.
    failed: Option<String>,
}

async fn relay_in(conn: &impl ConnectionTrait, queue: &WebhookQueue) -> Result<Round, String> {
    let claimed = events::claim_unpublished(conn, BATCH)
        .await
        .map_err(|e| e.to_string())?;
    if claimed.is_empty() {
        return Ok(Round {
            claimed: 0,
            failed: None,
        });
    }
    let clients: HashSet<Uuid> = claimed.iter().map(|event| event.client_id).collect();
    let endpoints = endpoints::enabled_for(conn, clients)
        .await
        .map_err(|e| e.to_string())?;
    // Per event, its delivery message: none when no endpoint wants it.
    let deliveries: Vec<_> = claimed
        .iter()
        .map(|event| {
            let targets: Vec<Uuid> = endpoints
                .iter()
                .filter(|endpoint| {
                    endpoint.client_id == event.client_id && endpoint.wants(&event.kind)
                })
                .map(|endpoint| endpoint.id)
                .collect();
            (!targets.is_empty())
                .then(|| super::delivery(&event.id, targets, Some(event.body.clone())))
        })
        .collect();
    let published = futures_util::future::join_all(deliveries.iter().map(|delivery| async {
        match delivery {
            Some(envelope) => queue.publish(envelope).await.map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }))
    .await;
    let ids = claimed.iter().map(|event| event.id.clone());
    let (done, failed) = relayed(ids, published);
    if !done.is_empty() {
        let count = done.len();
        events::mark_published(conn, done, Utc::now())
            .await
            .map_err(|e| e.to_string())?;
        metrics::counter!("payorch_events_relayed_total").increment(count as u64);
    }
    tracing::debug!(events = claimed.len(), failed = ?failed, "events relayed");
    Ok(Round {
        claimed: claimed.len(),
        failed,
    })
}

/// Of the events `ids` of a round, in order with how each one's delivery
/// was queued: those to mark published, and the first refusal. An event
/// the queue refused stays in the outbox for the next round; the others
/// are not queued again because of it.
fn relayed(
    ids: impl IntoIterator<Item = String>,
    published: Vec<Result<(), String>>,
) -> (Vec<String>, Option<String>) {
    let mut failed = None;
    let done = ids
        .into_iter()
        .zip(published)
        .filter_map(|(id, result)| match result {
            Ok(()) => Some(id),
            Err(err) => {
                failed.get_or_insert(err);
                None
            }
        })
        .collect();
    (done, failed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_refused_publish_leaves_only_its_own_event_in_the_outbox() {
        let ids = ["evt_1", "evt_2", "evt_3"].map(str::to_owned);
        let (done, failed) = relayed(
            ids,
            vec![Ok(()), Err("the broker refused it".into()), Ok(())],
        );
        assert_eq!(done, ["evt_1", "evt_3"]);
        assert_eq!(failed.as_deref(), Some("the broker refused it"));
    }

    #[test]
    fn a_round_with_every_publish_queued_marks_every_event() {
        let ids = ["evt_1", "evt_2"].map(str::to_owned);
        let (done, failed) = relayed(ids, vec![Ok(()), Ok(())]);
        assert_eq!(done, ["evt_1", "evt_2"]);
        assert_eq!(failed, None);
    }
}
