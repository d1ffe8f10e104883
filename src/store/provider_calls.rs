//! The record of each call to a connector about a payment (handed over by
//! `crate::provider::calls`), for the payment's timeline.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use tokio::sync::mpsc;

use super::entities::provider_call;
use crate::provider::calls::Recorded;

/// Rows per insert.
const BATCH_ROWS: usize = 500;
/// The longest an insert may take before its rows are given up.
const INSERT_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes the calls `records` hands over, in batches, until it closes. A
/// batch that cannot be written is counted
/// (`payorch_provider_calls_unrecorded_total`) and dropped.
pub async fn write(db: DatabaseConnection, mut records: mpsc::Receiver<Recorded>) {
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    while records.recv_many(&mut batch, BATCH_ROWS).await > 0 {
        let rows = batch.len();
        let insert = provider_call::Entity::insert_many(batch.drain(..).map(|r| {
            provider_call::ActiveModel {
                reference: Set(r.reference),
                connector: Set(r.connector.to_owned()),
                operation: Set(r.operation.to_owned()),
                started_at: Set(r.started_at),
                duration_ms: Set(r.duration_ms),
                outcome: Set(r.outcome.to_owned()),
                error: Set(r.error),
                ..Default::default()
            }
        }))
        .exec_without_returning(&db);
        let failed = match tokio::time::timeout(INSERT_TIMEOUT, insert).await {
            Ok(Ok(_)) => continue,
            Ok(Err(err)) => err.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        metrics::counter!("payorch_provider_calls_unrecorded_total").increment(rows as u64);
        tracing::warn!(error = %failed, rows, "could not record provider calls");
    }
}

pub use provider_call::Model as ProviderCall;

/// The calls about the payment whose provider-facing reference is
/// `reference`, oldest first, at most `limit`.
pub async fn for_reference(
    db: &impl ConnectionTrait,
    reference: &str,
    limit: u64,
) -> Result<Vec<ProviderCall>, DbErr> {
    provider_call::Entity::find()
        .filter(provider_call::Column::Reference.eq(reference))
        .order_by_asc(provider_call::Column::StartedAt)
        .order_by_asc(provider_call::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Deletes the calls made before `cutoff`, `batch` rows per statement.
pub async fn purge(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<u64, DbErr> {
    let mut purged = 0;
    loop {
        let ids: Vec<i64> = provider_call::Entity::find()
            .select_only()
            .column(provider_call::Column::Id)
            .filter(provider_call::Column::StartedAt.lt(cutoff))
            .limit(batch)
            .into_tuple()
            .all(db)
            .await?;
        if ids.is_empty() {
            return Ok(purged);
        }
        let taken = ids.len() as u64;
        purged += provider_call::Entity::delete_many()
            .filter(provider_call::Column::Id.is_in(ids))
            .exec(db)
            .await?
            .rows_affected;
        if taken < batch {
            return Ok(purged);
        }
    }
}
