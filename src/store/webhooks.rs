//! Received provider events, one row per (provider, event identity): the
//! row's unique key is what makes processing exactly-once.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, sea_query::OnConflict};
use uuid::Uuid;

use super::entities::webhook_event::{self, Column};

/// A received provider event, as it is kept once processed.
#[derive(Debug, Clone)]
pub struct WebhookRecord {
    pub provider: String,
    /// Its identity: unique per provider.
    pub event_id: String,
    pub event_type: String,
    /// The payment it is about (empty if it names none).
    pub reference: String,
    pub payload: serde_json::Value,
    pub received_at: DateTime<Utc>,
}

/// Records the event as processed with its `outcome`, in the transaction
/// that applies it; `false` if it was recorded before (a duplicate).
pub async fn insert(
    db: &impl ConnectionTrait,
    record: &WebhookRecord,
    outcome: &str,
) -> Result<bool, DbErr> {
    let inserted = webhook_event::Entity::insert(webhook_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        provider: Set(record.provider.clone()),
        event_id: Set(record.event_id.clone()),
        reference: Set((!record.reference.is_empty()).then(|| record.reference.clone())),
        event_type: Set(record.event_type.clone()),
        payload: Set(record.payload.clone()),
        received_at: Set(record.received_at),
        processed_at: Set(Some(Utc::now())),
        outcome: Set(Some(outcome.to_owned())),
    })
    .on_conflict(
        OnConflict::columns([Column::Provider, Column::EventId])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(inserted == 1)
}
