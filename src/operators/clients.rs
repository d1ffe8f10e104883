//! API clients, as operators manage them: create, revoke, rotate a key.
//! A revocation or a rotation commits with its audit row; a new client's
//! row is written right after the client.

use sea_orm::{DbErr, TransactionTrait};
use uuid::Uuid;

use super::{Actor, Operators, audit};
use crate::store::api_clients::{self, ClientRow, Rotated};

/// The longest name an API client can have.
pub const MAX_CLIENT_NAME: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no API client {0}")]
    NotFound(Uuid),
    #[error("API client {0} is revoked")]
    Revoked(Uuid),
    #[error("database: {0}")]
    Database(#[from] DbErr),
}

fn client_target(id: Uuid) -> String {
    format!("client:{id}")
}

impl Operators {
    /// Every API client, newest first.
    pub async fn clients(&self) -> Result<Vec<ClientRow>, DbErr> {
        api_clients::list(&self.db).await
    }

    /// Creates an API client; its key is returned to be shown once.
    pub async fn create_client(
        &self,
        name: &str,
        by: &Actor,
    ) -> Result<(ClientRow, String), ClientError> {
        let (client, key) = api_clients::create(&self.db, name).await?;
        audit(
            &self.db,
            by,
            "api_client.create",
            &client_target(client.id),
            Some(name),
        )
        .await?;
        let row = api_clients::find(&self.db, client.id)
            .await?
            .ok_or(ClientError::NotFound(client.id))?;
        Ok((row, key))
    }

    /// Revokes every key of the client. Revoking a revoked client changes
    /// nothing and records nothing.
    pub async fn revoke_client(
        &self,
        id: Uuid,
        note: Option<&str>,
        by: &Actor,
    ) -> Result<ClientRow, ClientError> {
        let txn = self.db.begin().await?;
        let before = api_clients::find(&txn, id)
            .await?
            .ok_or(ClientError::NotFound(id))?;
        let after = api_clients::revoke(&txn, id)
            .await?
            .ok_or(ClientError::NotFound(id))?;
        if before.disabled_at.is_none() {
            audit(&txn, by, "api_client.revoke", &client_target(id), note).await?;
        }
        txn.commit().await?;
        Ok(after)
    }

    /// Gives the client a new key (returned to be shown once); the old one
    /// keeps working for `grace`.
    pub async fn rotate_client_key(
        &self,
        id: Uuid,
        grace: chrono::Duration,
        note: Option<&str>,
        by: &Actor,
    ) -> Result<(ClientRow, String), ClientError> {
        let txn = self.db.begin().await?;
        let (row, key) = match api_clients::rotate(&txn, id, grace).await? {
            Rotated::Done(row, key) => (row, key),
            Rotated::NotFound => return Err(ClientError::NotFound(id)),
            Rotated::Disabled => return Err(ClientError::Revoked(id)),
        };
        let until = row
            .previous_key_expires_at
            .map_or_else(|| "-".to_owned(), |t| t.to_rfc3339());
        let recorded = match note {
            Some(note) => format!("previous key valid until {until}; {note}"),
            None => format!("previous key valid until {until}"),
        };
        audit(
            &txn,
            by,
            "api_client.rotate",
            &client_target(id),
            Some(&recorded),
        )
        .await?;
        txn.commit().await?;
        Ok((row, key))
    }
}
