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
        earlier_connectors: None,
    };
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        return insert_with_transition(db, model).await;
    }
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
        CREATED_CAUSE,
        None,
    )
    .await?;
    Ok(Some(model))
}

const CREATED_CAUSE: &str = "initialize:created";

/// PostgreSQL: the payment and its first audit row in one statement (a
/// data-modifying `WITH`), atomic on its own; no row when the provider
/// reference is taken.
async fn insert_with_transition(
    db: &impl ConnectionTrait,
    model: Payment,
) -> Result<Option<Payment>, DbErr> {
    let sql = "WITH created AS (
            INSERT INTO payments (id, client_id, reference, client_reference, provider, amount,
                currency, email, status, metadata, version, created_at, updated_at,
                refunded_amount)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::json, 0, $11, $11, 0)
            ON CONFLICT (reference) DO NOTHING
            RETURNING id, status, created_at)
        INSERT INTO payment_transitions (payment_id, from_status, to_status, cause, created_at)
        SELECT id, 'new', status, $12, created_at FROM created";
    let values: Vec<sea_orm::Value> = vec![
        model.id.into(),
        model.client_id.into(),
        model.reference.clone().into(),
        model.client_reference.clone().into(),
        model.provider.clone().into(),
        model.amount.into(),
        model.currency.clone().into(),
        model.email.clone().into(),
        model.status.clone().into(),
        sea_orm::Value::Json(model.metadata.clone().map(Box::new)),
        model.created_at.into(),
        CREATED_CAUSE.into(),
    ];
    let inserted = db
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            sql,
            values,
        ))
        .await?
        .rows_affected();
    Ok((inserted == 1).then_some(model))
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

/// `client_id`'s payment under its own reference `reference`, with its
/// audit trail (oldest first) and whether it has an open payment-level
/// review, in one PostgreSQL statement (the trail aggregated as JSON).
/// `None`: no such payment of this client.
pub async fn find_owned_with_trail(
    db: &impl ConnectionTrait,
    client_id: Uuid,
    reference: &str,
) -> Result<Option<(Payment, Vec<Transition>, bool)>, DbErr> {
    use sea_orm::FromQueryResult;
    let sql = "SELECT p.*,
            COALESCE((SELECT json_agg(json_build_object(
                    'id', t.id, 'from_status', t.from_status, 'to_status', t.to_status,
                    'cause', t.cause, 'event_id', t.event_id, 'created_at', t.created_at)
                ORDER BY t.id)
              FROM payment_transitions t WHERE t.payment_id = p.id), '[]'::json) AS trail,
            EXISTS (SELECT 1 FROM reviews r WHERE r.payment_id = p.id
                AND r.refund_id IS NULL AND r.status = $3) AS review_open
        FROM payments p WHERE p.client_id = $1 AND p.client_reference = $2";
    let Some(row) = db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            sql,
            [
                client_id.into(),
                reference.into(),
                crate::domain::review::OPEN.into(),
            ],
        ))
        .await?
    else {
        return Ok(None);
    };
    let payment = Payment::from_query_result(&row, "")?;
    let trail: serde_json::Value = row.try_get("", "trail")?;
    let review_open: bool = row.try_get("", "review_open")?;
    let transitions = trail
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| transition_of_json(payment.id, t))
        .collect::<Result<_, _>>()?;
    Ok(Some((payment, transitions, review_open)))
}

/// One transition as `find_owned_with_trail` aggregates it.
fn transition_of_json(payment_id: Uuid, t: &serde_json::Value) -> Result<Transition, DbErr> {
    let text = |field: &str| -> Result<String, DbErr> {
        t[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| DbErr::Type(format!("transition {field}: not text in {t}")))
    };
    let created_at = chrono::DateTime::parse_from_rfc3339(&text("created_at")?)
        .map_err(|err| DbErr::Type(format!("transition created_at: {err}")))?
        .with_timezone(&Utc);
    Ok(Transition {
        id: t["id"]
            .as_i64()
            .ok_or_else(|| DbErr::Type(format!("transition id: not a number in {t}")))?,
        payment_id,
        from_status: text("from_status")?,
        to_status: text("to_status")?,
        cause: text("cause")?,
        event_id: t["event_id"].as_str().map(str::to_owned),
        created_at,
    })
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

/// What an operator searches payments by; every field set must match.
#[derive(Debug, Default, Clone)]
pub struct PaymentSearch {
    /// The client's reference or the provider-facing one, exactly.
    pub reference: Option<String>,
    pub email: Option<String>,
    pub status: Option<String>,
    pub connector: Option<String>,
    pub client_id: Option<Uuid>,
    /// Created at or after.
    pub from: Option<chrono::DateTime<Utc>>,
    /// Created before.
    pub to: Option<chrono::DateTime<Utc>>,
    /// Only payments after this one in the order (the last of the page
    /// before).
    pub after: Option<(chrono::DateTime<Utc>, Uuid)>,
    pub limit: u64,
}

/// The payments matching `search`, newest first (by creation, then id).
pub async fn search(
    db: &impl ConnectionTrait,
    search: &PaymentSearch,
) -> Result<Vec<Payment>, DbErr> {
    use sea_orm::Condition;
    let mut query = payment::Entity::find();
    if let Some(reference) = &search.reference {
        query = query.filter(
            Condition::any()
                .add(payment::Column::ClientReference.eq(reference.as_str()))
                .add(payment::Column::Reference.eq(reference.as_str())),
        );
    }
    if let Some(email) = &search.email {
        query = query.filter(payment::Column::Email.eq(email.as_str()));
    }
    if let Some(status) = &search.status {
        query = query.filter(payment::Column::Status.eq(status.as_str()));
    }
    if let Some(connector) = &search.connector {
        query = query.filter(payment::Column::Provider.eq(connector.as_str()));
    }
    if let Some(client_id) = search.client_id {
        query = query.filter(payment::Column::ClientId.eq(client_id));
    }
    if let Some(from) = search.from {
        query = query.filter(payment::Column::CreatedAt.gte(from));
    }
    if let Some(to) = search.to {
        query = query.filter(payment::Column::CreatedAt.lt(to));
    }
    if let Some((created_at, id)) = search.after {
        query = query.filter(
            Condition::any()
                .add(payment::Column::CreatedAt.lt(created_at))
                .add(
                    Condition::all()
                        .add(payment::Column::CreatedAt.eq(created_at))
                        .add(payment::Column::Id.lt(id)),
                ),
        );
    }
    query
        .order_by_desc(payment::Column::CreatedAt)
        .order_by_desc(payment::Column::Id)
        .limit(search.limit)
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

/// A column a state change writes: its PostgreSQL type (for a `VALUES`
/// list) and its value in the changed payment.
struct Written {
    column: payment::Column,
    pg_type: &'static str,
    value: fn(&Payment) -> sea_orm::Value,
}

/// The columns a state change writes — the one list both statements of
/// [`write_versioned_many`] are built from.
const WRITTEN: [Written; 7] = [
    Written {
        column: payment::Column::Status,
        pg_type: "varchar",
        value: |p| p.status.clone().into(),
    },
    Written {
        column: payment::Column::FailureReason,
        pg_type: "varchar",
        value: |p| p.failure_reason.clone().into(),
    },
    Written {
        column: payment::Column::AuthorizationUrl,
        pg_type: "text",
        value: |p| p.authorization_url.clone().into(),
    },
    Written {
        column: payment::Column::AccessCode,
        pg_type: "varchar",
        value: |p| p.access_code.clone().into(),
    },
    Written {
        column: payment::Column::Version,
        pg_type: "integer",
        value: |p| p.version.into(),
    },
    Written {
        column: payment::Column::UpdatedAt,
        pg_type: "timestamptz",
        value: |p| p.updated_at.into(),
    },
    Written {
        column: payment::Column::PaidAt,
        pg_type: "timestamptz",
        value: |p| p.paid_at.into(),
    },
];

/// Writes each `(read, next)` pair's changeable fields ([`WRITTEN`]) over
/// its row, if the row is still at `read`'s version. `false` if any row
/// moved on (the caller rolls back). Several rows on PostgreSQL go in one
/// `UPDATE … FROM (VALUES …)`; otherwise one `UPDATE` per row.
pub async fn write_versioned_many(
    db: &impl ConnectionTrait,
    changed: &[(&Payment, &Payment)],
) -> Result<bool, DbErr> {
    if changed.len() > 1 && db.get_database_backend() == sea_orm::DbBackend::Postgres {
        return write_versioned_values(db, changed).await;
    }
    for (read, next) in changed {
        let update = WRITTEN
            .iter()
            .fold(payment::Entity::update_many(), |update, written| {
                update.col_expr(written.column, Expr::value((written.value)(next)))
            });
        let result = update
            .filter(payment::Column::Id.eq(read.id))
            .filter(payment::Column::Version.eq(read.version))
            .exec(db)
            .await?;
        if result.rows_affected != 1 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// [`write_versioned_many`]'s one-statement form (PostgreSQL).
async fn write_versioned_values(
    db: &impl ConnectionTrait,
    changed: &[(&Payment, &Payment)],
) -> Result<bool, DbErr> {
    let (sql, values) = versioned_values(changed);
    let result = db
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    Ok(result.rows_affected() == changed.len() as u64)
}

/// The `UPDATE … FROM (VALUES …)` of [`write_versioned_many`] on
/// PostgreSQL, placeholders from `$1`: each `(read, next)` pair's row, if
/// still at `read`'s version, takes `next`'s [`WRITTEN`] fields.
pub fn versioned_values(changed: &[(&Payment, &Payment)]) -> (String, Vec<sea_orm::Value>) {
    use sea_orm::{EntityName, IdenStatic};
    let width = WRITTEN.len() + 2;
    let mut rows = Vec::with_capacity(changed.len());
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(changed.len() * width);
    for (index, (read, next)) in changed.iter().enumerate() {
        let n = index * width;
        let mut row = vec![format!("${}::uuid", n + 1), format!("${}::integer", n + 2)];
        values.extend([next.id.into(), read.version.into()]);
        for (i, written) in WRITTEN.iter().enumerate() {
            row.push(format!("${}::{}", n + 3 + i, written.pg_type));
            values.push((written.value)(next));
        }
        rows.push(format!("({})", row.join(", ")));
    }
    let names: Vec<String> = WRITTEN
        .iter()
        .map(|w| w.column.as_str().to_owned())
        .collect();
    let set: Vec<String> = names.iter().map(|c| format!("{c} = v.{c}")).collect();
    let sql = format!(
        "UPDATE {table} AS p SET {set} FROM (VALUES {rows}) AS v(id, read_version, {names}) \
         WHERE p.id = v.id AND p.version = v.read_version",
        table = payment::Entity.table_name(),
        set = set.join(", "),
        rows = rows.join(", "),
        names = names.join(", "),
    );
    (sql, values)
}

/// The payments with these references, read without locks.
pub async fn find_many_by_reference(
    db: &impl ConnectionTrait,
    references: impl IntoIterator<Item = String>,
) -> Result<Vec<Payment>, DbErr> {
    payment::Entity::find()
        .filter(payment::Column::Reference.is_in(references))
        .all(db)
        .await
}

/// The connectors `payment` failed over from, oldest first: each may hold
/// a transaction under its reference (the request that failed there may
/// have arrived).
pub fn earlier_connectors(payment: &Payment) -> impl Iterator<Item = &str> {
    payment
        .earlier_connectors
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|c| !c.is_empty())
}

/// Moves a still-`created` payment to another connector (failover),
/// version-checked, remembering the one it leaves. `Ok(None)`: it changed
/// first.
pub async fn move_to_connector(
    db: &impl ConnectionTrait,
    current: &Payment,
    connector: &str,
) -> Result<Option<Payment>, DbErr> {
    let mut next = current.clone();
    next.version += 1;
    next.updated_at = Utc::now();
    next.provider = connector.to_owned();
    if !earlier_connectors(current).any(|c| c == current.provider) {
        let mut earlier: Vec<&str> = earlier_connectors(current).collect();
        earlier.push(&current.provider);
        next.earlier_connectors = Some(earlier.join(","));
    }
    let result = payment::Entity::update_many()
        .col_expr(
            payment::Column::Provider,
            Expr::value(next.provider.clone()),
        )
        .col_expr(
            payment::Column::EarlierConnectors,
            Expr::value(next.earlier_connectors.clone()),
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
