//! Refunds and reconciliation: the `refunds` table; on `payments`, the
//! amount promised back to the customer (`refunded_amount`, the sum of
//! refunds not failed, never above `amount`) and when a sweep last asked
//! the provider about it (`checked_at`); on `idempotency_keys`, the refund
//! a key's request created.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Refunds {
    Table,
    Id,
    PaymentId,
    ClientId,
    Amount,
    Currency,
    Status,
    Reason,
    Dispatch,
    ProviderRefundId,
    FailureReason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Status,
    CreatedAt,
    RefundedAmount,
    CheckedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    RefundId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Refunds::Table)
                    .col(pk_uuid(Refunds::Id))
                    .col(uuid(Refunds::PaymentId))
                    .col(uuid(Refunds::ClientId))
                    .col(big_integer(Refunds::Amount))
                    .col(string_len(Refunds::Currency, 3))
                    // pending, succeeded or failed.
                    .col(string_len(Refunds::Status, 16))
                    .col(string_len_null(Refunds::Reason, 255))
                    // unsent → sending → sent: the provider is asked at most once.
                    .col(string_len(Refunds::Dispatch, 16))
                    .col(string_len_null(Refunds::ProviderRefundId, 64))
                    .col(string_len_null(Refunds::FailureReason, 64))
                    .col(timestamp_with_time_zone(Refunds::CreatedAt))
                    .col(timestamp_with_time_zone(Refunds::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_refunds_payment")
                    .table(Refunds::Table)
                    .col(Refunds::PaymentId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_refunds_status_updated")
                    .table(Refunds::Table)
                    .col(Refunds::Status)
                    .col(Refunds::UpdatedAt)
                    .to_owned(),
            )
            .await?;
        // The sweep's question: payments pending since before a cutoff.
        manager
            .create_index(
                Index::create()
                    .name("idx_payments_status_created")
                    .table(Payments::Table)
                    .col(Payments::Status)
                    .col(Payments::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // One column per statement: SQLite alters a column at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Payments::Table)
                    .add_column(big_integer(Payments::RefundedAmount).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Payments::Table)
                    .add_column(timestamp_with_time_zone_null(Payments::CheckedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(IdempotencyKeys::Table)
                    .add_column(uuid_null(IdempotencyKeys::RefundId))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_payments_status_created")
                    .table(Payments::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(IdempotencyKeys::Table)
                    .drop_column(IdempotencyKeys::RefundId)
                    .to_owned(),
            )
            .await?;
        for column in [Payments::CheckedAt, Payments::RefundedAmount] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Payments::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(Refunds::Table).to_owned())
            .await
    }
}
