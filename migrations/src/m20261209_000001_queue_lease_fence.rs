//! Fenced queue-table leases: each lease of a row takes the next number in
//! `lease`, and only the consumer holding that number may settle the row.
//! A consumer that outlived its lease (a stalled process) finds the row
//! leased again by another and changes nothing.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum QueuedMessages {
    Table,
    Lease,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(QueuedMessages::Table)
                    .add_column(big_integer(QueuedMessages::Lease).default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(QueuedMessages::Table)
                    .drop_column(QueuedMessages::Lease)
                    .to_owned(),
            )
            .await
    }
}
