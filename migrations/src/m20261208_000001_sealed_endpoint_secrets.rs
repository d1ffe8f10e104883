//! Webhook endpoint secrets sealed at rest: `secret` and `previous_secret`
//! hold `enc:v1:<key id>:<base64 nonce ‖ ciphertext>` (XChaCha20-Poly1305
//! under `PAYORCH_SECRETS_KEY`), longer than the 128 characters a secret in
//! clear needed, so the columns become `text`.
//!
//! The schema alone changes here: a migration has no key. Rows still in
//! clear are sealed by the first `serve` or `worker` that starts with a key
//! (and by `payorch secrets rotate`); until then they are read as they are.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Secret,
    PreviousSecret,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite does not enforce a VARCHAR's length (and cannot alter a
        // column's type): nothing to do there.
        if manager.get_database_backend() != sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookEndpoints::Table)
                    .modify_column(ColumnDef::new(WebhookEndpoints::Secret).text().not_null())
                    .modify_column(
                        ColumnDef::new(WebhookEndpoints::PreviousSecret)
                            .text()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A sealed value does not fit the old width: going back needs the
        // secrets in clear first, which only the key can give.
        if manager.get_database_backend() != sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookEndpoints::Table)
                    .modify_column(
                        ColumnDef::new(WebhookEndpoints::Secret)
                            .string_len(128)
                            .not_null(),
                    )
                    .modify_column(
                        ColumnDef::new(WebhookEndpoints::PreviousSecret)
                            .string_len(128)
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }
}
