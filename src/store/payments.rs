//! Payment rows and their audit trail. Every status change is an optimistic
//! update (`WHERE id = ? AND version = ?`) plus a `payment_transitions` row,
//! in the caller's transaction.

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
    sea_query::{Expr, OnConflict},
};
use uuid::Uuid;

use super::entities::{payment, payment_transition};
use crate::domain::{Amount, Currency, Email, PaymentStatus, Reference};

pub use payment::Model as Payment;
pub use payment_transition::Model as Transition;

/// A payment about to be created.
pub struct NewPayment<'a> {
    /// Chosen before the insert (an Idempotency-Key names it first).
    pub id: Uuid,
    pub client_id: Uuid,
    /// The client's reference.
    pub reference: &'a Reference,
    /// The reference to open it under at the provider.
    pub provider_reference: &'a Reference,
    pub provider: &'a str,
    pub amount: Amount,
    pub currency: Currency,
    pub email: &'a Email,
    pub metadata: Option<serde_json::Value>,
}

/// Inserts a `created` payment and its first transition. `Ok(None)`: the
/// provider reference is another payment's (of another client: the client's
/// own reference taken again is a unique violation).
pub async fn insert(
    db: &impl ConnectionTrait,
    new: NewPayment<'_>,
) -> Result<Option<Payment>, DbErr> {
    let now = Utc::now();
    let model = Payment {
        id: new.id,
        client_id: new.client_id,
        reference: new.provider_reference.as_str().to_owned(),
        client_reference: new.reference.as_str().to_owned(),
        provider: new.provider.to_owned(),
        amount: new.amount.get(),
        currency: new.currency.as_str().to_owned(),
        email: new.email.as_str().to_owned(),
        status: PaymentStatus::Created.as_str().to_owned(),
        failure_reason: None,
        authorization_url: None,
        access_code: None,
        metadata: new.metadata,
        version: 0,
        created_at: now,
        updated_at: now,
        paid_at: None,
        refunded_amount: 0,
        checked_at: None,
    };
    let inserted = payment::Entity::insert(payment::ActiveModel::from(model.clone()))
        .on_conflict(
            OnConflict::column(payment::Column::Reference)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    if inserted == 0 {
        return Ok(None);
    }
    record_transition(
        db,
        model.id,
        "new",
        PaymentStatus::Created.as_str(),
        "initialize:created",
        None,
    )
    .await?;
    Ok(Some(model))
}

pub async fn find_by_id(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Payment>, DbErr> {
    payment::Entity::find_by_id(id).one(db).await
}

fn by_reference(reference: &str) -> Select<payment::Entity> {
    payment::Entity::find().filter(payment::Column::Reference.eq(reference))
}

pub async fn find_by_reference(
    db: &impl ConnectionTrait,
    reference: &str,
) -> Result<Option<Payment>, DbErr> {
    by_reference(reference).one(db).await
}

/// Reads the payment and holds its row lock until `txn` ends (PostgreSQL
/// `FOR UPDATE`; SQLite, with its single writer, has no row locks).
pub async fn lock_by_reference(
    txn: &impl ConnectionTrait,
    reference: &str,
) -> Result<Option<Payment>, DbErr> {
    by_reference(reference).lock_exclusive().one(txn).await
}

/// Reads the payments with these references and holds their row locks
/// until `txn` ends, taken in `id` order so that two transactions locking
/// overlapping sets queue rather than deadlock (PostgreSQL).
pub async fn lock_many_by_reference(
    txn: &impl ConnectionTrait,
    references: impl IntoIterator<Item = String>,
) -> Result<Vec<Payment>, DbErr> {
    payment::Entity::find()
        .filter(payment::Column::Reference.is_in(references))
        .order_by_asc(payment::Column::Id)
        .lock_exclusive()
        .all(txn)
        .await
}

/// `client_id`'s payment under its own reference `reference`: another
/// client's payment is as invisible as a missing one.
pub async fn find_owned(
    db: &impl ConnectionTrait,
    client_id: Uuid,
    reference: &str,
) -> Result<Option<Payment>, DbErr> {
    payment::Entity::find()
        .filter(payment::Column::ClientId.eq(client_id))
        .filter(payment::Column::ClientReference.eq(reference))
        .one(db)
        .await
}

pub async fn transitions(
    db: &impl ConnectionTrait,
    payment_id: Uuid,
) -> Result<Vec<Transition>, DbErr> {
    payment_transition::Entity::find()
        .filter(payment_transition::Column::PaymentId.eq(payment_id))
        .order_by_asc(payment_transition::Column::Id)
        .all(db)
        .await
}

/// Field changes that go with a status change.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub status: Option<PaymentStatus>,
    pub failure_reason: Option<String>,
    pub authorization_url: Option<String>,
    pub access_code: Option<String>,
    pub paid: bool,
}

/// Applies `changes` if the row is still at `current.version`. `Ok(None)`:
/// someone else changed it first — reload and decide again.
pub async fn update_versioned(
    db: &impl ConnectionTrait,
    current: &Payment,
    changes: &Changes,
) -> Result<Option<Payment>, DbErr> {
    let next = advance(current, changes, Utc::now());
    Ok(write_versioned(db, current, &next).await?.then_some(next))
}

/// `current` with `changes` made at `now`: one version later.
pub fn advance(current: &Payment, changes: &Changes, now: chrono::DateTime<Utc>) -> Payment {
    let mut next = current.clone();
    next.version += 1;
    next.updated_at = now;
    if let Some(status) = changes.status {
        next.status = status.as_str().to_owned();
    }
    if let Some(reason) = &changes.failure_reason {
        next.failure_reason = Some(reason.clone());
    }
    if let Some(url) = &changes.authorization_url {
        next.authorization_url = Some(url.clone());
    }
    if let Some(code) = &changes.access_code {
        next.access_code = Some(code.clone());
    }
    if changes.paid && next.paid_at.is_none() {
        next.paid_at = Some(now);
    }
    next
}

/// Writes `next`'s changeable fields over the row, if it is still at
/// `current`'s version; `false` if it moved on.
pub async fn write_versioned(
    db: &impl ConnectionTrait,
    current: &Payment,
    next: &Payment,
) -> Result<bool, DbErr> {
    let result = payment::Entity::update_many()
        .col_expr(payment::Column::Status, Expr::value(next.status.clone()))
        .col_expr(
            payment::Column::FailureReason,
            Expr::value(next.failure_reason.clone()),
        )
        .col_expr(
            payment::Column::AuthorizationUrl,
            Expr::value(next.authorization_url.clone()),
        )
        .col_expr(
            payment::Column::AccessCode,
            Expr::value(next.access_code.clone()),
        )
        .col_expr(payment::Column::Version, Expr::value(next.version))
        .col_expr(payment::Column::UpdatedAt, Expr::value(next.updated_at))
        .col_expr(payment::Column::PaidAt, Expr::value(next.paid_at))
        .filter(payment::Column::Id.eq(current.id))
        .filter(payment::Column::Version.eq(current.version))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// [`write_versioned`] for several payments in one statement (PostgreSQL):
/// each `(read, next)` pair is written if its row is still at `read`'s
/// version. `false` if any row moved on (the caller rolls back). It writes
/// the same columns as [`write_versioned`]: change both together.
pub async fn write_versioned_many(
    db: &impl ConnectionTrait,
    changed: &[(&Payment, &Payment)],
) -> Result<bool, DbErr> {
    if changed.is_empty() {
        return Ok(true);
    }
    const COLUMNS: usize = 9;
    let mut rows = Vec::with_capacity(changed.len());
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(changed.len() * COLUMNS);
    for (index, (read, next)) in changed.iter().enumerate() {
        let n = index * COLUMNS;
        rows.push(format!(
            "(${}::uuid, ${}::integer, ${}::varchar, ${}::varchar, ${}::text, ${}::varchar, ${}::integer, ${}::timestamptz, ${}::timestamptz)",
            n + 1, n + 2, n + 3, n + 4, n + 5, n + 6, n + 7, n + 8, n + 9
        ));
        values.extend([
            next.id.into(),
            read.version.into(),
            next.status.clone().into(),
            next.failure_reason.clone().into(),
            next.authorization_url.clone().into(),
            next.access_code.clone().into(),
            next.version.into(),
            next.updated_at.into(),
            next.paid_at.into(),
        ]);
    }
    let sql = format!(
        "UPDATE payments AS p SET status = v.status, failure_reason = v.failure_reason, \
         authorization_url = v.authorization_url, access_code = v.access_code, \
         version = v.version, updated_at = v.updated_at, paid_at = v.paid_at \
         FROM (VALUES {}) AS v(id, read_version, status, failure_reason, authorization_url, \
         access_code, version, updated_at, paid_at) \
         WHERE p.id = v.id AND p.version = v.read_version",
        rows.join(", ")
    );
    let result = db
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    Ok(result.rows_affected() == changed.len() as u64)
}

/// Moves a still-`created` payment to another connector (failover),
/// version-checked. `Ok(None)`: it changed first.
pub async fn move_to_connector(
    db: &impl ConnectionTrait,
    current: &Payment,
    connector: &str,
) -> Result<Option<Payment>, DbErr> {
    let mut next = current.clone();
    next.version += 1;
    next.updated_at = Utc::now();
    next.provider = connector.to_owned();
    let result = payment::Entity::update_many()
        .col_expr(
            payment::Column::Provider,
            Expr::value(next.provider.clone()),
        )
        .col_expr(payment::Column::Version, Expr::value(next.version))
        .col_expr(payment::Column::UpdatedAt, Expr::value(next.updated_at))
        .filter(payment::Column::Id.eq(current.id))
        .filter(payment::Column::Version.eq(current.version))
        .filter(payment::Column::Status.eq("created"))
        .exec(db)
        .await?;
    Ok((result.rows_affected == 1).then_some(next))
}

pub async fn record_transition(
    db: &impl ConnectionTrait,
    payment_id: Uuid,
    from: &str,
    to: &str,
    cause: &str,
    event_id: Option<&str>,
) -> Result<(), DbErr> {
    payment_transition::Entity::insert(transition(payment_id, from, to, cause, event_id))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Audit rows for several changes, in one statement.
pub async fn record_transitions(
    db: &impl ConnectionTrait,
    rows: Vec<payment_transition::ActiveModel>,
) -> Result<(), DbErr> {
    payment_transition::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The audit row of one change (`cause` cut to its column's 64 characters).
pub fn transition(
    payment_id: Uuid,
    from: &str,
    to: &str,
    cause: &str,
    event_id: Option<&str>,
) -> payment_transition::ActiveModel {
    payment_transition::ActiveModel {
        payment_id: Set(payment_id),
        from_status: Set(from.to_owned()),
        to_status: Set(to.to_owned()),
        cause: Set(cause.chars().take(64).collect()),
        event_id: Set(event_id.map(str::to_owned)),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
}
