//! Console sessions: an operator token that expires. A session is a row
//! of `operator_tokens` like a bearer token (its SHA-256 only, revoked on
//! sign-out or when its operator is disabled), with `expires_at` set;
//! tokens for automation (`payorch operator token`) keep it NULL.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OperatorTokens {
    Table,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OperatorTokens::Table)
                    .add_column(timestamp_with_time_zone_null(OperatorTokens::ExpiresAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OperatorTokens::Table)
                    .drop_column(OperatorTokens::ExpiresAt)
                    .to_owned(),
            )
            .await
    }
}
