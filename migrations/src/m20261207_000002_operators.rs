//! Operators: the people who resolve reviews and, later, use the console.
//! Each has a name and an argon2id password hash (`operators`), bearer
//! tokens stored as their SHA-256 only (`operator_tokens`), and every
//! action an operator — or the command line on their behalf — takes is a
//! row of `operator_audit`, never updated or deleted.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Operators {
    Table,
    Id,
    Name,
    PasswordHash,
    DisabledAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum OperatorTokens {
    Table,
    Id,
    OperatorId,
    TokenHash,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum OperatorAudit {
    Table,
    Id,
    Operator,
    Action,
    Target,
    Note,
    At,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Operators::Table)
                    .col(pk_uuid(Operators::Id))
                    .col(string_len_uniq(Operators::Name, 64))
                    // An argon2id PHC string: `$argon2id$v=19$m=…,t=…,p=…$salt$hash`.
                    .col(string_len(Operators::PasswordHash, 255))
                    .col(timestamp_with_time_zone_null(Operators::DisabledAt))
                    .col(timestamp_with_time_zone(Operators::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OperatorTokens::Table)
                    .col(pk_uuid(OperatorTokens::Id))
                    .col(uuid(OperatorTokens::OperatorId))
                    // Hex SHA-256 of the token; the token itself is never stored.
                    .col(string_len_uniq(OperatorTokens::TokenHash, 64))
                    .col(timestamp_with_time_zone(OperatorTokens::CreatedAt))
                    .col(timestamp_with_time_zone_null(OperatorTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_operator_tokens_operator")
                            .from(OperatorTokens::Table, OperatorTokens::OperatorId)
                            .to(Operators::Table, Operators::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_operator_tokens_operator")
                    .table(OperatorTokens::Table)
                    .col(OperatorTokens::OperatorId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OperatorAudit::Table)
                    .col(pk_uuid(OperatorAudit::Id))
                    // Who: `operator:NAME` (the operator API) or `cli:USER`.
                    .col(string_len(OperatorAudit::Operator, 160))
                    // What: `review.mark_failed`, `operator.create`…
                    .col(string_len(OperatorAudit::Action, 64))
                    // On what: `review:<id>`, `operator:<name>`.
                    .col(string_len(OperatorAudit::Target, 160))
                    .col(text_null(OperatorAudit::Note))
                    .col(timestamp_with_time_zone(OperatorAudit::At))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_operator_audit_at")
                    .table(OperatorAudit::Table)
                    .col(OperatorAudit::At)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OperatorAudit::Table.into_iden(),
            OperatorTokens::Table.into_iden(),
            Operators::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
