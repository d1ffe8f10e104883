//! The record of each call to a connector about a payment (written by
//! `crate::provider::calls`), for the payment's timeline.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::entities::provider_call;

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
