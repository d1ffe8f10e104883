//! API clients and their keys. A key is 256 random bits shown once; only its
//! SHA-256 is stored, so a database leak discloses no usable key, and a
//! lookup stays one indexed read (a slow hash buys nothing for random keys).

use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::entities::api_client;

const KEY_PREFIX: &str = "po_sk_";

/// An authenticated caller of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiClient {
    pub id: Uuid,
    pub name: String,
}

/// A client as operators see it (never its key).
pub use api_client::Model as ClientRow;

/// The longest grace period a rotated key can get.
pub const MAX_GRACE: chrono::Duration = chrono::Duration::days(7);

/// Makes a new secret key: the prefix lets secret scanners recognise a leak.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a client and returns it with its secret key, which is not stored.
pub async fn create(db: &DatabaseConnection, name: &str) -> Result<(ApiClient, String), DbErr> {
    let key = generate_key();
    let id = Uuid::now_v7();
    api_client::Entity::insert(api_client::ActiveModel {
        id: Set(id),
        name: Set(name.to_owned()),
        key_hash: Set(hash_key(&key)),
        created_at: Set(Utc::now()),
        disabled_at: Set(None),
        previous_key_hash: Set(None),
        previous_key_expires_at: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    Ok((
        ApiClient {
            id,
            name: name.to_owned(),
        },
        key,
    ))
}

/// Whether `key` has the shape of a key we issue (no lookup needed to refuse it).
pub fn is_well_formed(key: &str) -> bool {
    key.len() == KEY_PREFIX.len() + 64
        && key.starts_with(KEY_PREFIX)
        && key[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
}

/// The enabled client owning `key` — its key, or its previous key while
/// that one's grace period lasts — if any, with when a previous key stops
/// working (`None` for the current key).
pub async fn authenticate(
    db: &DatabaseConnection,
    key: &str,
) -> Result<Option<(ApiClient, Option<DateTime<Utc>>)>, DbErr> {
    if !is_well_formed(key) {
        return Ok(None);
    }
    let hash = hash_key(key);
    let found = api_client::Entity::find()
        .filter(api_client::Column::DisabledAt.is_null())
        .filter(
            Condition::any()
                .add(api_client::Column::KeyHash.eq(hash.clone()))
                .add(
                    Condition::all()
                        .add(api_client::Column::PreviousKeyHash.eq(hash.clone()))
                        .add(api_client::Column::PreviousKeyExpiresAt.gt(Utc::now())),
                ),
        )
        .one(db)
        .await?;
    Ok(found.map(|client| {
        let until = (client.key_hash != hash)
            .then_some(client.previous_key_expires_at)
            .flatten();
        (
            ApiClient {
                id: client.id,
                name: client.name,
            },
            until,
        )
    }))
}

/// Every client, newest first.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<ClientRow>, DbErr> {
    api_client::Entity::find()
        .order_by_desc(api_client::Column::CreatedAt)
        .order_by_desc(api_client::Column::Id)
        .all(db)
        .await
}

pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<ClientRow>, DbErr> {
    api_client::Entity::find_by_id(id).one(db).await
}

/// Disables the client (its keys stop working); a client disabled before
/// keeps its first `disabled_at`. `None`: no such client.
pub async fn revoke(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<ClientRow>, DbErr> {
    api_client::Entity::update_many()
        .col_expr(api_client::Column::DisabledAt, Expr::value(Utc::now()))
        .filter(api_client::Column::Id.eq(id))
        .filter(api_client::Column::DisabledAt.is_null())
        .exec(db)
        .await?;
    find(db, id).await
}

/// What rotating a client's key did.
pub enum Rotated {
    /// The new key (shown once) and the client as it is now.
    Done(ClientRow, String),
    NotFound,
    Disabled,
}

/// Gives the client a new key; the one it had keeps working for `grace`
/// (none: it stops at once). A key still in its grace period from an
/// earlier rotation stops now.
pub async fn rotate(
    db: &impl ConnectionTrait,
    id: Uuid,
    grace: chrono::Duration,
) -> Result<Rotated, DbErr> {
    let until = Utc::now() + grace.clamp(chrono::Duration::zero(), MAX_GRACE);
    loop {
        let Some(client) = find(db, id).await? else {
            return Ok(Rotated::NotFound);
        };
        if client.disabled_at.is_some() {
            return Ok(Rotated::Disabled);
        }
        let key = generate_key();
        let changed = api_client::Entity::update_many()
            .col_expr(api_client::Column::KeyHash, Expr::value(hash_key(&key)))
            .col_expr(
                api_client::Column::PreviousKeyHash,
                Expr::value(client.key_hash.clone()),
            )
            .col_expr(api_client::Column::PreviousKeyExpiresAt, Expr::value(until))
            .filter(api_client::Column::Id.eq(id))
            // Two rotations at once: only one replaces the key it read; the
            // other reads again and rotates the key the first one made.
            .filter(api_client::Column::KeyHash.eq(client.key_hash))
            .filter(api_client::Column::DisabledAt.is_null())
            .exec(db)
            .await?
            .rows_affected;
        if changed == 1 {
            return Ok(match find(db, id).await? {
                Some(row) => Rotated::Done(row, key),
                None => Rotated::NotFound,
            });
        }
    }
}

pub async fn count(db: &DatabaseConnection) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    api_client::Entity::find().count(db).await
}

/// Holds the client's row lock until `txn` ends (PostgreSQL `FOR UPDATE`;
/// SQLite's write transaction already excludes every other writer), so
/// changes bounded per client — its endpoints — are checked and made one
/// at a time. `false`: no such client.
pub async fn lock(txn: &impl ConnectionTrait, id: Uuid) -> Result<bool, DbErr> {
    Ok(api_client::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hash_to_64_hex() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 64);
        let hash = hash_key(&a);
        assert_eq!(hash.len(), 64);
        assert_ne!(hash, hash_key(&b));
        assert!(!hash.contains(&a[KEY_PREFIX.len()..]));
    }
}
