//! Received provider events, one row per (provider, event identity): the
//! row's unique key is what makes processing exactly-once.

use chrono::{DateTime, Utc};
use std::collections::HashSet;

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QuerySelect, sea_query::OnConflict,
};
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
    Ok(insert_many(db, [(record, outcome)]).await? == 1)
}

/// Records several processed events in one statement; how many were new
/// (the rest were recorded before).
pub async fn insert_many<'a>(
    db: &impl ConnectionTrait,
    processed: impl IntoIterator<Item = (&'a WebhookRecord, &'a str)>,
) -> Result<u64, DbErr> {
    dedup_rows(processed).exec_without_returning(db).await
}

/// The insert of [`insert_many`]: a row per processed event, none for an
/// identity recorded before.
pub fn dedup_rows<'a>(
    processed: impl IntoIterator<Item = (&'a WebhookRecord, &'a str)>,
) -> sea_orm::InsertMany<webhook_event::ActiveModel> {
    let now = Utc::now();
    let rows = processed
        .into_iter()
        .map(|(record, outcome)| webhook_event::ActiveModel {
            id: Set(Uuid::now_v7()),
            provider: Set(record.provider.clone()),
            event_id: Set(record.event_id.clone()),
            reference: Set((!record.reference.is_empty()).then(|| record.reference.clone())),
            event_type: Set(record.event_type.clone()),
            payload: Set(record.payload.clone()),
            received_at: Set(record.received_at),
            processed_at: Set(Some(now)),
            outcome: Set(Some(outcome.to_owned())),
        });
    webhook_event::Entity::insert_many(rows).on_conflict(
        OnConflict::columns([Column::Provider, Column::EventId])
            .do_nothing()
            .to_owned(),
    )
}

/// Of these event identities, the (provider, event id) pairs recorded
/// already.
pub async fn recorded<'a>(
    db: &impl ConnectionTrait,
    records: impl IntoIterator<Item = &'a WebhookRecord>,
) -> Result<HashSet<(String, String)>, DbErr> {
    // One equality on the whole unique key per event: each is an index
    // probe whatever the planner believes of the table's size (an `IN`
    // list on `event_id` under one provider was planned, on a young table,
    // as a scan of all that provider's rows).
    let any = records.into_iter().fold(Condition::any(), |any, record| {
        any.add(
            Condition::all()
                .add(Column::Provider.eq(record.provider.as_str()))
                .add(Column::EventId.eq(record.event_id.as_str())),
        )
    });
    if any.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<(String, String)> = webhook_event::Entity::find()
        .select_only()
        .column(Column::Provider)
        .column(Column::EventId)
        .filter(any)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// The provider events received about the payment whose provider-facing
/// reference is `reference`, oldest first, at most `limit`.
pub async fn for_reference(
    db: &impl ConnectionTrait,
    reference: &str,
    limit: u64,
) -> Result<Vec<webhook_event::Model>, DbErr> {
    use sea_orm::QueryOrder;
    webhook_event::Entity::find()
        .filter(Column::Reference.eq(reference))
        .order_by_asc(Column::ReceivedAt)
        .limit(limit)
        .all(db)
        .await
}
