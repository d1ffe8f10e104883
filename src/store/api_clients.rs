//! API clients and their keys. A key is 256 random bits shown once; only its
//! SHA-256 is stored, so a database leak discloses no usable key, and a
//! lookup stays one indexed read (a slow hash buys nothing for random keys).

use chrono::Utc;
use rand::RngCore;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QuerySelect,
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

/// The enabled client owning `key`, if any.
pub async fn authenticate(db: &DatabaseConnection, key: &str) -> Result<Option<ApiClient>, DbErr> {
    if !is_well_formed(key) {
        return Ok(None);
    }
    let found = api_client::Entity::find()
        .filter(api_client::Column::KeyHash.eq(hash_key(key)))
        .filter(api_client::Column::DisabledAt.is_null())
        .one(db)
        .await?;
    Ok(found.map(|client| ApiClient {
        id: client.id,
        name: client.name,
    }))
}

pub async fn disable(db: &DatabaseConnection, id: Uuid) -> Result<(), DbErr> {
    api_client::Entity::update_many()
        .col_expr(
            api_client::Column::DisabledAt,
            sea_orm::sea_query::Expr::value(Utc::now()),
        )
        .filter(api_client::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
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
