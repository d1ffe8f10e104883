//! Idempotency-Key handling with Stripe's semantics and the IETF draft's
//! status codes. Keys are scoped to the client and kept 24 h.
//!
//! - [`reserve`] runs inside the transaction that creates the payment, so a
//!   key and the payment it made exist together or not at all.
//! - same key, same body, finished → the stored status and body, byte for
//!   byte ([`Reservation::Replay`]);
//! - same key, different body → 422; still running → 409;
//! - a first attempt that crashed leaves its key locked until `locked_until`;
//!   after that a retry takes the key over and finishes *the same payment*
//!   (the key remembers it), so no second payment or provider transaction;
//! - a 4xx outcome is stored and replayed; a 5xx is not: the key is
//!   [`release`]d so the client's retry proceeds at once;
//! - fenced: each reservation gets an owner token ([`Claim`]), and only the
//!   current owner may [`attach_payment`], [`complete`] or [`release`]. A
//!   request that outlived its lock finds the key taken over: its writes
//!   change nothing, and are logged and counted (`stale_owner`);
//! - lock times come from the database's clock (PostgreSQL's `now()`), so
//!   API hosts with skewed clocks agree on when a lock expires.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, Statement,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::PaymentError;
use crate::{
    domain::IdempotencyKey,
    store::entities::idempotency_key::{self, Column},
};

/// A response as it is sent and, under an Idempotency-Key, stored: the
/// caller renders an outcome (its `render` argument) and the core stores
/// exactly these bytes, so a replay is byte for byte the first answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub status: u16,
    pub body: String,
}

/// How long a finished key is kept before the purge deletes it.
pub const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

const STARTED: &str = "started";
const COMPLETED: &str = "completed";

/// A key this request holds: its writes to the key must name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub client_id: Uuid,
    pub key: IdempotencyKey,
    /// Fresh for every reservation and takeover.
    pub owner: Uuid,
}

/// What the caller should do with a request that carries a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Do the work, holding `claim`. `payment_id` / `refund_id`: what an
    /// earlier, unfinished attempt created — finish that one instead of
    /// creating another.
    Proceed {
        claim: Claim,
        payment_id: Option<Uuid>,
        refund_id: Option<Uuid>,
        /// The key was new and already names the `planned` payment: no
        /// [`attach_payment`] needed once it is created.
        attached: bool,
    },
    /// Answer with what the first request answered, byte for byte.
    Replay(Rendered),
}

/// SHA-256 over the request's JSON with object keys sorted, so the same
/// request spelled with other whitespace or key order is the same request.
pub fn fingerprint(operation: &str, body: &serde_json::Value) -> String {
    let mut canonical = String::new();
    write_canonical(body, &mut canonical);
    let mut hasher = Sha256::new();
    hasher.update(operation.as_bytes());
    hasher.update([0]);
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Claims `key` for this request, or says why not. Call inside the
/// transaction that will create the payment; `planned`: the id that
/// payment will have, written with a new key (the key and its payment
/// commit together or not at all).
pub async fn reserve(
    db: &impl ConnectionTrait,
    client_id: Uuid,
    key: IdempotencyKey,
    fingerprint: &str,
    lock: Duration,
    planned: Option<Uuid>,
) -> Result<Reservation, PaymentError> {
    let claim = Claim {
        client_id,
        key,
        owner: Uuid::new_v4(),
    };
    if insert_key(db, &claim, fingerprint, lock, planned).await? {
        return Ok(Reservation::Proceed {
            claim,
            payment_id: None,
            refund_id: None,
            attached: planned.is_some(),
        });
    }
    let now = database_now(db).await?;
    let locked_until = now + lock;

    let existing = idempotency_key::Entity::find_by_id((client_id, key.as_uuid()))
        .one(db)
        .await?
        .ok_or_else(|| {
            PaymentError::Internal("idempotency key vanished after a conflict".into())
        })?;
    if existing.request_hash != fingerprint {
        return Err(PaymentError::IdempotencyKeyReused);
    }
    if existing.state == COMPLETED {
        return Ok(Reservation::Replay(Rendered {
            status: existing.response_status.unwrap_or(500) as u16,
            body: existing.response_body.unwrap_or_default(),
        }));
    }
    // Started: either running now (409) or abandoned by a crash or a 5xx.
    // Taking it over is a compare-and-set, so only one retry wins.
    let taken = idempotency_key::Entity::update_many()
        .col_expr(Column::LockedUntil, Expr::value(Some(locked_until)))
        .col_expr(Column::Owner, Expr::value(Some(claim.owner)))
        .filter(Column::ClientId.eq(client_id))
        .filter(Column::Key.eq(key.as_uuid()))
        .filter(Column::State.eq(STARTED))
        .filter(
            Column::LockedUntil
                .is_null()
                .or(Column::LockedUntil.lte(now)),
        )
        .exec(db)
        .await?;
    if taken.rows_affected == 1 {
        Ok(Reservation::Proceed {
            claim,
            payment_id: existing.payment_id,
            refund_id: existing.refund_id,
            attached: false,
        })
    } else {
        Err(PaymentError::IdempotencyInFlight)
    }
}

/// Inserts `claim`'s key, started, locked for `lock` and naming `payment`;
/// `false` if the client has used the key before. On PostgreSQL its times
/// are the database's `now()`, read by the insert itself (no round trip).
async fn insert_key(
    db: &impl ConnectionTrait,
    claim: &Claim,
    fingerprint: &str,
    lock: Duration,
    payment: Option<Uuid>,
) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let (created_at, locked_until) = if backend == DbBackend::Postgres {
        (
            Expr::cust("now()"),
            Expr::cust(format!(
                "now() + interval '{} milliseconds'",
                lock.as_millis()
            )),
        )
    } else {
        let now = Utc::now();
        (Expr::value(now), Expr::value(now + lock))
    };
    let insert = Query::insert()
        .into_table(idempotency_key::Entity)
        .columns([
            Column::ClientId,
            Column::Key,
            Column::RequestHash,
            Column::State,
            Column::PaymentId,
            Column::CreatedAt,
            Column::LockedUntil,
            Column::Owner,
        ])
        .values_panic([
            Expr::value(claim.client_id),
            Expr::value(claim.key.as_uuid()),
            Expr::value(fingerprint),
            Expr::value(STARTED),
            Expr::value(payment),
            created_at,
            locked_until,
            Expr::value(claim.owner),
        ])
        .on_conflict(
            OnConflict::columns([Column::ClientId, Column::Key])
                .do_nothing()
                .to_owned(),
        )
        .to_owned();
    let inserted = db.execute_raw(backend.build(&insert)).await?;
    Ok(inserted.rows_affected() == 1)
}

/// The database's clock (PostgreSQL), or this host's (SQLite: one host).
async fn database_now(db: &impl ConnectionTrait) -> Result<DateTime<Utc>, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(Utc::now());
    }
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT now() AS now",
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("now()".into()))?;
    row.try_get("", "now")
}

/// Rows of `claim`'s key that it still owns.
fn owned_by(
    update: sea_orm::UpdateMany<idempotency_key::Entity>,
    claim: &Claim,
) -> sea_orm::UpdateMany<idempotency_key::Entity> {
    update
        .filter(Column::ClientId.eq(claim.client_id))
        .filter(Column::Key.eq(claim.key.as_uuid()))
        .filter(Column::Owner.eq(claim.owner))
}

/// `true` if the write landed; otherwise the key was taken over by a retry
/// after this request's lock expired: logged and counted, nothing changed.
fn fenced(rows_affected: u64, claim: &Claim, write: &'static str) -> bool {
    if rows_affected == 1 {
        return true;
    }
    tracing::warn!(
        client_id = %claim.client_id,
        write,
        "a request outlived its Idempotency-Key lock and a retry took the key over; \
         its {write} changed nothing"
    );
    metrics::counter!("payorch_idempotency_total", "result" => "stale_owner").increment(1);
    false
}

/// Remembers which payment this key's request created.
pub async fn attach_payment(
    db: &impl ConnectionTrait,
    claim: &Claim,
    payment_id: Uuid,
) -> Result<bool, DbErr> {
    let update = idempotency_key::Entity::update_many()
        .col_expr(Column::PaymentId, Expr::value(Some(payment_id)));
    let done = owned_by(update, claim).exec(db).await?;
    Ok(fenced(done.rows_affected, claim, "attach_payment"))
}

/// Remembers which refund this key's request created.
pub async fn attach_refund(
    db: &impl ConnectionTrait,
    claim: &Claim,
    refund_id: Uuid,
) -> Result<bool, DbErr> {
    let update = idempotency_key::Entity::update_many()
        .col_expr(Column::RefundId, Expr::value(Some(refund_id)));
    let done = owned_by(update, claim).exec(db).await?;
    Ok(fenced(done.rows_affected, claim, "attach_refund"))
}

/// Stores the final response; later requests with the key replay it.
/// `false`: this request no longer owns the key (see [`fenced`]).
pub async fn complete(
    db: &impl ConnectionTrait,
    claim: &Claim,
    response: &Rendered,
) -> Result<bool, DbErr> {
    let done = completing(claim, response).exec(db).await?;
    Ok(completed(done.rows_affected, claim))
}

/// [`complete`] as a PostgreSQL statement, to run beside other writes
/// (see `store::changes::write_alone`); [`completed`] reads its row count.
pub fn completion(claim: &Claim, response: &Rendered) -> Statement {
    use sea_orm::QueryTrait;
    completing(claim, response).build(DbBackend::Postgres)
}

/// Whether a completion of `claim` stored its response: `rows` is what
/// its update wrote (see [`fenced`]).
pub fn completed(rows: u64, claim: &Claim) -> bool {
    fenced(rows, claim, "complete")
}

fn completing(claim: &Claim, response: &Rendered) -> sea_orm::UpdateMany<idempotency_key::Entity> {
    let update = idempotency_key::Entity::update_many()
        .col_expr(Column::State, Expr::value(COMPLETED))
        .col_expr(
            Column::ResponseStatus,
            Expr::value(Some(i32::from(response.status))),
        )
        .col_expr(
            Column::ResponseBody,
            Expr::value(Some(response.body.clone())),
        )
        .col_expr(Column::LockedUntil, Expr::value(None::<DateTime<Utc>>));
    owned_by(update, claim).filter(Column::State.eq(STARTED))
}

/// Unlocks a key whose request failed with a 5xx, so a retry may proceed.
/// `false`: this request no longer owns the key, whose new owner's lock
/// stays.
pub async fn release(db: &impl ConnectionTrait, claim: &Claim) -> Result<bool, DbErr> {
    let update = idempotency_key::Entity::update_many()
        .col_expr(Column::LockedUntil, Expr::value(None::<DateTime<Utc>>));
    let done = owned_by(update, claim)
        .filter(Column::State.eq(STARTED))
        .exec(db)
        .await?;
    Ok(fenced(done.rows_affected, claim, "release"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fingerprint_ignores_key_order_and_whitespace() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"amount":100,"currency":"NGN","metadata":{"b":1,"a":[1,2]}}"#)
                .unwrap();
        let b: serde_json::Value = serde_json::from_str(
            r#"{ "metadata": {"a": [1, 2], "b": 1}, "currency": "NGN", "amount": 100 }"#,
        )
        .unwrap();
        assert_eq!(fingerprint("initialize", &a), fingerprint("initialize", &b));
    }

    #[test]
    fn fingerprint_changes_with_any_value_or_operation() {
        let base = json!({"amount": 100, "currency": "NGN"});
        let other_amount = json!({"amount": 101, "currency": "NGN"});
        let nested = json!({"amount": 100, "currency": "NGN", "metadata": {"x": [1]}});
        let nested_other = json!({"amount": 100, "currency": "NGN", "metadata": {"x": [2]}});
        let fp = |v| fingerprint("initialize", v);
        assert_ne!(fp(&base), fp(&other_amount));
        assert_ne!(fp(&nested), fp(&nested_other));
        assert_ne!(
            fingerprint("initialize", &base),
            fingerprint("verify", &base)
        );
        // "100" the string is not 100 the number.
        assert_ne!(fp(&base), fp(&json!({"amount": "100", "currency": "NGN"})));
    }
}
