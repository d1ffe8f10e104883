//! The events outbox and the delivery log. An event row is written in the
//! transaction of the change it reports; the relay marks it published
//! once its deliveries are queued; each delivery attempt is a row of
//! `event_attempts`.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::entities::{event, event_attempt};

pub use event::Model as Event;
pub use event_attempt::Model as Attempt;

pub async fn insert(db: &impl ConnectionTrait, event: Event) -> Result<(), DbErr> {
    event::Entity::insert(event::ActiveModel::from(event))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Several outbox rows in one statement.
pub async fn insert_many(db: &impl ConnectionTrait, events: Vec<Event>) -> Result<(), DbErr> {
    event::Entity::insert_many(events.into_iter().map(event::ActiveModel::from))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Option<Event>, DbErr> {
    event::Entity::find_by_id(id.to_owned()).one(db).await
}

pub async fn find_owned(
    db: &impl ConnectionTrait,
    client_id: Uuid,
    id: &str,
) -> Result<Option<Event>, DbErr> {
    event::Entity::find_by_id(id.to_owned())
        .filter(event::Column::ClientId.eq(client_id))
        .one(db)
        .await
}

/// A page of the client's events, newest first.
pub struct EventFilter<'a> {
    pub client_id: Uuid,
    pub kind: Option<&'a str>,
    pub payment_id: Option<Uuid>,
    /// Only events older than this one (the cursor).
    pub after: Option<&'a str>,
    pub limit: u64,
}

pub async fn list(db: &impl ConnectionTrait, filter: EventFilter<'_>) -> Result<Vec<Event>, DbErr> {
    let mut query = event::Entity::find().filter(event::Column::ClientId.eq(filter.client_id));
    if let Some(kind) = filter.kind {
        query = query.filter(event::Column::Kind.eq(kind));
    }
    if let Some(payment_id) = filter.payment_id {
        query = query.filter(event::Column::PaymentId.eq(payment_id));
    }
    if let Some(after) = filter.after {
        query = query.filter(event::Column::Id.lt(after));
    }
    query
        .order_by_desc(event::Column::Id)
        .limit(filter.limit)
        .all(db)
        .await
}

/// Up to `limit` events not yet published, oldest first, locked (PostgreSQL:
/// `FOR UPDATE SKIP LOCKED`, so relays in several processes share them).
pub async fn claim_unpublished(db: &impl ConnectionTrait, limit: u64) -> Result<Vec<Event>, DbErr> {
    let query = event::Entity::find()
        .filter(event::Column::PublishedAt.is_null())
        .order_by_asc(event::Column::Id)
        .limit(limit);
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        query
            .lock_with_behavior(
                sea_orm::sea_query::LockType::Update,
                sea_orm::sea_query::LockBehavior::SkipLocked,
            )
            .all(db)
            .await
    } else {
        query.all(db).await
    }
}

pub async fn mark_published(
    db: &impl ConnectionTrait,
    ids: Vec<String>,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    event::Entity::update_many()
        .col_expr(event::Column::PublishedAt, Expr::value(at))
        .filter(event::Column::Id.is_in(ids))
        .exec(db)
        .await?;
    Ok(())
}

/// When the oldest event still in the outbox was written.
pub async fn oldest_unpublished(db: &impl ConnectionTrait) -> Result<Option<DateTime<Utc>>, DbErr> {
    Ok(event::Entity::find()
        .filter(event::Column::PublishedAt.is_null())
        .order_by_asc(event::Column::Id)
        .one(db)
        .await?
        .map(|event| event.created_at))
}

/// One delivery attempt, as recorded.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub event_id: String,
    pub endpoint_id: Uuid,
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub status: &'static str,
    pub response_status: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
}

/// Records attempts in one statement.
pub async fn record_attempts(
    db: &impl ConnectionTrait,
    attempts: Vec<NewAttempt>,
) -> Result<(), DbErr> {
    if attempts.is_empty() {
        return Ok(());
    }
    let rows = attempts
        .into_iter()
        .map(|attempt| event_attempt::ActiveModel {
            event_id: Set(attempt.event_id),
            endpoint_id: Set(attempt.endpoint_id),
            attempt: Set(i32::try_from(attempt.attempt).unwrap_or(i32::MAX)),
            at: Set(attempt.at),
            status: Set(attempt.status.to_owned()),
            response_status: Set(attempt.response_status.map(i32::from)),
            duration_ms: Set(i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX)),
            error: Set(attempt.error.map(|e| e.chars().take(255).collect())),
            ..Default::default()
        });
    event_attempt::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// An event's attempts, oldest first.
pub async fn attempts(db: &impl ConnectionTrait, event_id: &str) -> Result<Vec<Attempt>, DbErr> {
    event_attempt::Entity::find()
        .filter(event_attempt::Column::EventId.eq(event_id))
        .order_by_asc(event_attempt::Column::Id)
        .all(db)
        .await
}

/// The events about a payment, oldest first, at most `limit`.
pub async fn for_payment(
    db: &impl ConnectionTrait,
    payment_id: Uuid,
    limit: u64,
) -> Result<Vec<Event>, DbErr> {
    event::Entity::find()
        .filter(event::Column::PaymentId.eq(payment_id))
        .order_by_asc(event::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// The attempts of these events, oldest first, at most `limit`.
pub async fn attempts_of(
    db: &impl ConnectionTrait,
    event_ids: Vec<String>,
    limit: u64,
) -> Result<Vec<Attempt>, DbErr> {
    if event_ids.is_empty() {
        return Ok(Vec::new());
    }
    event_attempt::Entity::find()
        .filter(event_attempt::Column::EventId.is_in(event_ids))
        .order_by_asc(event_attempt::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// The latest attempts of each of `endpoint_ids` (newest first, at most
/// `limit` each), in one statement per 50 endpoints: a `UNION ALL` of each
/// endpoint's own index scan. The ids and the limit are written into the
/// statement, not bound: with parameters PostgreSQL soon plans it once for
/// any endpoint and any limit, and that plan reads every attempt of each.
pub async fn latest_attempts(
    db: &impl ConnectionTrait,
    endpoint_ids: &[Uuid],
    limit: u64,
) -> Result<std::collections::HashMap<Uuid, Vec<Attempt>>, DbErr> {
    use sea_orm::{
        QueryTrait,
        sea_query::{Alias, Asterisk, Query, UnionType},
    };
    let mut latest: std::collections::HashMap<Uuid, Vec<Attempt>> =
        std::collections::HashMap::new();
    for chunk in endpoint_ids.chunks(50) {
        let mut parts = chunk.iter().enumerate().map(|(i, id)| {
            let own = event_attempt::Entity::find()
                .filter(event_attempt::Column::EndpointId.eq(*id))
                .order_by_desc(event_attempt::Column::Id)
                .limit(limit)
                .into_query();
            Query::select()
                .column(Asterisk)
                .from_subquery(own, Alias::new(format!("latest_{i}")))
                .to_owned()
        });
        let Some(mut union) = parts.next() else {
            continue;
        };
        for part in parts {
            union.union(UnionType::All, part);
        }
        let backend = db.get_database_backend();
        let sql = match backend {
            sea_orm::DbBackend::Sqlite => union.to_string(sea_orm::sea_query::SqliteQueryBuilder),
            _ => union.to_string(sea_orm::sea_query::PostgresQueryBuilder),
        };
        let statement = sea_orm::Statement::from_string(backend, sql);
        for attempt in event_attempt::Entity::find()
            .from_raw_sql(statement)
            .all(db)
            .await?
        {
            latest.entry(attempt.endpoint_id).or_default().push(attempt);
        }
    }
    for attempts in latest.values_mut() {
        attempts.sort_by_key(|a| std::cmp::Reverse(a.id));
    }
    Ok(latest)
}

/// How many attempts to an endpoint failed since the last delivered one,
/// counted up to [`MAX_STREAK`]: one read of its latest attempts' statuses.
pub async fn failure_streak(db: &impl ConnectionTrait, endpoint_id: Uuid) -> Result<u64, DbErr> {
    let latest: Vec<String> = event_attempt::Entity::find()
        .select_only()
        .column(event_attempt::Column::Status)
        .filter(event_attempt::Column::EndpointId.eq(endpoint_id))
        .order_by_desc(event_attempt::Column::Id)
        .limit(MAX_STREAK)
        .into_tuple()
        .all(db)
        .await?;
    Ok(latest
        .iter()
        .take_while(|status| *status != "delivered")
        .count() as u64)
}

/// The longest failure streak counted exactly.
pub const MAX_STREAK: u64 = 100;

/// Deletes relayed events written before `cutoff`, with their attempts, in
/// batches of `batch`. Returns how many events went.
pub async fn purge(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<u64, DbErr> {
    let mut purged = 0;
    loop {
        let ids: Vec<String> = event::Entity::find()
            .select_only()
            .column(event::Column::Id)
            .filter(event::Column::CreatedAt.lt(cutoff))
            .filter(event::Column::PublishedAt.is_not_null())
            .limit(batch)
            .into_tuple()
            .all(db)
            .await?;
        if ids.is_empty() {
            return Ok(purged);
        }
        let taken = ids.len() as u64;
        event_attempt::Entity::delete_many()
            .filter(event_attempt::Column::EventId.is_in(ids.clone()))
            .exec(db)
            .await?;
        purged += event::Entity::delete_many()
            .filter(event::Column::Id.is_in(ids))
            .exec(db)
            .await?
            .rows_affected;
        if taken < batch {
            return Ok(purged);
        }
    }
}
