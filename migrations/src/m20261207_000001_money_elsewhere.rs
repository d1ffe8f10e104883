//! Money payorch may not hold: the connectors a payment failed over from
//! (each may hold a transaction under its reference), refunds sent to a
//! connector other than the payment's own (`refund_at_connector`, at most
//! one per payment and connector, ever), and reviews about a transaction
//! payorch never made (named by connector and reference).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Payments {
    Table,
    EarlierConnectors,
}

#[derive(DeriveIden)]
enum Refunds {
    Table,
    Connector,
    ReviewId,
}

#[derive(DeriveIden)]
enum Reviews {
    Table,
    Connector,
    Reference,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a column at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Payments::Table)
                    // Comma-separated connector names, oldest first.
                    .add_column(string_len_null(Payments::EarlierConnectors, 128))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Refunds::Table)
                    // Set when the refund goes to another connector than
                    // the payment's (a review's `refund_at_connector`).
                    .add_column(string_len_null(Refunds::Connector, 32))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Refunds::Table)
                    .add_column(uuid_null(Refunds::ReviewId))
                    .to_owned(),
            )
            .await?;
        for column in [Reviews::Connector, Reviews::Reference] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Reviews::Table)
                        .add_column(string_len_null(column, 255))
                        .to_owned(),
                )
                .await?;
        }
        // Partial indexes: the same SQL on PostgreSQL and SQLite.
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE UNIQUE INDEX idx_refunds_one_per_review ON refunds (review_id) \
             WHERE review_id IS NOT NULL AND status <> 'failed'",
        )
        .await?;
        // The money a connector took for a payment outside its own flow is
        // given back once, whichever review asked for it; a refund the
        // provider failed leaves room for another try.
        db.execute_unprepared(
            "CREATE UNIQUE INDEX idx_refunds_once_at_connector ON refunds (payment_id, connector) \
             WHERE review_id IS NOT NULL AND status <> 'failed'",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX idx_refunds_once_at_connector")
            .await?;
        db.execute_unprepared("DROP INDEX idx_refunds_one_per_review")
            .await?;
        for column in [Reviews::Reference, Reviews::Connector] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Reviews::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for column in [Refunds::ReviewId, Refunds::Connector] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Refunds::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Payments::Table)
                    .drop_column(Payments::EarlierConnectors)
                    .to_owned(),
            )
            .await
    }
}
