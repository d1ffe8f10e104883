//! A client's reference is unique for that client only: client B may use
//! `order-1` too, and learns nothing of A's. `payments.reference` stays
//! globally unique: it is what the provider sees (the client's own reference
//! when no other client holds it, else a generated one).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Payments {
    Table,
    ClientId,
    Reference,
    ClientReference,
}

const INDEX: &str = "idx_payments_client_reference";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Payments::Table)
                    .add_column(string_len(Payments::ClientReference, 100).default(""))
                    .to_owned(),
            )
            .await?;
        // Every existing payment was opened under its client's reference.
        manager
            .exec_stmt(
                Query::update()
                    .table(Payments::Table)
                    .value(Payments::ClientReference, Expr::col(Payments::Reference))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Payments::Table)
                    .col(Payments::ClientId)
                    .col(Payments::ClientReference)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(Payments::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Payments::Table)
                    .drop_column(Payments::ClientReference)
                    .to_owned(),
            )
            .await
    }
}
