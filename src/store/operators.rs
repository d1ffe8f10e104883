//! Operators, their bearer tokens and the audit log of what they do.
//!
//! A token is 256 random bits shown once, `pot_` and 64 hex characters:
//! the prefix tells a leaked token (and a secret scanner) that it is an
//! operator's, and it can never have the shape of an API client's key
//! (`po_sk_…`), so neither is ever looked up as the other. A console
//! session is a token too, `pos_…`, that expires ([`issue_session`]); it
//! is accepted only from the session cookie, a `pot_` token only as a
//! bearer. Only its SHA-256
//! is stored, and a request's token is found by that hash in one indexed
//! read: the secret itself is never compared, and a slow hash buys nothing
//! for random tokens. A token works while it is not revoked and its
//! operator not disabled, checked on every request (no cache).
//!
//! Passwords arrive here already hashed (argon2id, `crate::operators`).

use chrono::Utc;
use rand::RngCore;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, Query},
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::entities::{operator, operator_audit, operator_token};

pub use operator::Model as OperatorRow;
pub use operator_audit::Model as AuditEntry;

const TOKEN_PREFIX: &str = "pot_";
const SESSION_PREFIX: &str = "pos_";

/// An operator as the code acting for them sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub id: Uuid,
    pub name: String,
}

impl From<OperatorRow> for Operator {
    fn from(row: OperatorRow) -> Operator {
        Operator {
            id: row.id,
            name: row.name,
        }
    }
}

/// A new bearer token, `pot_` and 64 hex characters.
pub fn generate_token() -> String {
    random_token(TOKEN_PREFIX)
}

fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` has the shape of a bearer token we issue (no lookup
/// needed to refuse it).
pub fn is_well_formed(token: &str) -> bool {
    has_shape(token, TOKEN_PREFIX)
}

/// Whether `token` has the shape of a console session.
pub fn is_session(token: &str) -> bool {
    has_shape(token, SESSION_PREFIX)
}

fn has_shape(token: &str, prefix: &str) -> bool {
    token.len() == prefix.len() + 64
        && token.starts_with(prefix)
        && token[prefix.len()..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Inserts an operator; a name in use is a unique violation.
pub async fn create(
    db: &impl ConnectionTrait,
    name: &str,
    password_hash: &str,
) -> Result<Operator, DbErr> {
    let id = Uuid::now_v7();
    operator::Entity::insert(operator::ActiveModel {
        id: Set(id),
        name: Set(name.to_owned()),
        password_hash: Set(password_hash.to_owned()),
        disabled_at: Set(None),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(db)
    .await?;
    Ok(Operator {
        id,
        name: name.to_owned(),
    })
}

/// The operator named `name`, enabled or not.
pub async fn find_by_name(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<OperatorRow>, DbErr> {
    operator::Entity::find()
        .filter(operator::Column::Name.eq(name))
        .one(db)
        .await
}

/// Disables the operator `id` and revokes its tokens; `false` if it was
/// disabled already (nothing changed). Run it in one transaction.
pub async fn disable(db: &impl ConnectionTrait, id: Uuid) -> Result<bool, DbErr> {
    let now = Utc::now();
    let disabled = operator::Entity::update_many()
        .col_expr(operator::Column::DisabledAt, Expr::value(Some(now)))
        .filter(operator::Column::Id.eq(id))
        .filter(operator::Column::DisabledAt.is_null())
        .exec(db)
        .await?
        .rows_affected
        == 1;
    operator_token::Entity::update_many()
        .col_expr(operator_token::Column::RevokedAt, Expr::value(Some(now)))
        .filter(operator_token::Column::OperatorId.eq(id))
        .filter(operator_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(disabled)
}

/// Issues a token for the operator `operator_id`: returns the token, of
/// which only the hash is stored.
pub async fn issue_token(
    db: &impl ConnectionTrait,
    operator_id: Uuid,
) -> Result<(Uuid, String), DbErr> {
    let token = generate_token();
    let id = Uuid::now_v7();
    operator_token::Entity::insert(operator_token::ActiveModel {
        id: Set(id),
        operator_id: Set(operator_id),
        token_hash: Set(hash_token(&token)),
        created_at: Set(Utc::now()),
        revoked_at: Set(None),
        expires_at: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    Ok((id, token))
}

/// Starts a console session of `operator_id` for `ttl`: returns the
/// session token (`pos_…`), of which only the hash is stored.
pub async fn issue_session(
    db: &impl ConnectionTrait,
    operator_id: Uuid,
    ttl: chrono::Duration,
) -> Result<String, DbErr> {
    let token = random_token(SESSION_PREFIX);
    let now = Utc::now();
    operator_token::Entity::insert(operator_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        operator_id: Set(operator_id),
        token_hash: Set(hash_token(&token)),
        created_at: Set(now),
        revoked_at: Set(None),
        expires_at: Set(Some(now + ttl)),
    })
    .exec_without_returning(db)
    .await?;
    Ok(token)
}

/// Revokes one token; `false` if it was unknown or revoked already.
pub async fn revoke_token(db: &impl ConnectionTrait, token: &str) -> Result<bool, DbErr> {
    let revoked = operator_token::Entity::update_many()
        .col_expr(
            operator_token::Column::RevokedAt,
            Expr::value(Some(Utc::now())),
        )
        .filter(operator_token::Column::TokenHash.eq(hash_token(token)))
        .filter(operator_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(revoked.rows_affected == 1)
}

/// The enabled operator holding the unrevoked, unexpired `token` (a bearer
/// token or a session), if any: one query.
pub async fn authenticate(
    db: &impl ConnectionTrait,
    token: &str,
) -> Result<Option<Operator>, DbErr> {
    if !is_well_formed(token) && !is_session(token) {
        return Ok(None);
    }
    let holder = Query::select()
        .column(operator_token::Column::OperatorId)
        .from(operator_token::Entity)
        .and_where(operator_token::Column::TokenHash.eq(hash_token(token)))
        .and_where(operator_token::Column::RevokedAt.is_null())
        .cond_where(
            sea_orm::Condition::any()
                .add(operator_token::Column::ExpiresAt.is_null())
                .add(operator_token::Column::ExpiresAt.gt(Utc::now())),
        )
        .to_owned();
    let found = operator::Entity::find()
        .filter(operator::Column::Id.in_subquery(holder))
        .filter(operator::Column::DisabledAt.is_null())
        .one(db)
        .await?;
    Ok(found.map(Operator::from))
}

/// One line of the audit log, about to be written.
pub struct NewAuditEntry<'a> {
    /// `operator:NAME` or `cli:USER`.
    pub operator: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub note: Option<&'a str>,
}

/// Appends to the audit log.
pub async fn record(
    db: &impl ConnectionTrait,
    entry: NewAuditEntry<'_>,
) -> Result<AuditEntry, DbErr> {
    let row = AuditEntry {
        id: Uuid::now_v7(),
        operator: entry.operator.to_owned(),
        action: entry.action.to_owned(),
        target: entry.target.to_owned(),
        note: entry.note.map(str::to_owned),
        at: Utc::now(),
    };
    operator_audit::Entity::insert(operator_audit::ActiveModel::from(row.clone()))
        .exec_without_returning(db)
        .await?;
    Ok(row)
}

/// The audit log, newest first.
pub async fn audit_log(db: &impl ConnectionTrait, limit: u64) -> Result<Vec<AuditEntry>, DbErr> {
    operator_audit::Entity::find()
        .order_by_desc(operator_audit::Column::At)
        .order_by_desc(operator_audit::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_never_shaped_like_api_keys() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert!(is_well_formed(&a) && is_well_formed(&b));
        assert!(!crate::store::api_clients::is_well_formed(&a));
        let key = crate::store::api_clients::generate_key();
        assert!(!is_well_formed(&key));
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), hash_token(&b));
        for bad in ["", "pot_", "pot_xyz", &a[..a.len() - 1], &format!("{a}0")] {
            assert!(!is_well_formed(bad), "{bad}");
        }
    }
}
