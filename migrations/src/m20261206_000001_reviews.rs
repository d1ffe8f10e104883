//! Reviews: the cases payorch cannot settle by itself (a refund the
//! provider has no answer for, money taken where payorch did not expect
//! it), each open until the provider's word or an operator's recorded
//! decision closes it. At most one open review per kind and subject (the
//! refund, or the payment for payment-level kinds), enforced by a unique
//! partial index so two sweepers never open two.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Reviews {
    Table,
    Id,
    Kind,
    PaymentId,
    RefundId,
    Status,
    OpenedAt,
    Detail,
    ResolvedAt,
    ResolvedBy,
    Resolution,
    Note,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Reviews::Table)
                    .col(pk_uuid(Reviews::Id))
                    // refund_outcome_unknown, charged_at_other_connector…
                    .col(string_len(Reviews::Kind, 40))
                    .col(uuid(Reviews::PaymentId))
                    .col(uuid_null(Reviews::RefundId))
                    // open or resolved.
                    .col(string_len(Reviews::Status, 16))
                    .col(timestamp_with_time_zone(Reviews::OpenedAt))
                    // What payorch knew when it opened the review.
                    .col(json(Reviews::Detail))
                    .col(timestamp_with_time_zone_null(Reviews::ResolvedAt))
                    // `provider`, or the operator (`cli:alice`).
                    .col(string_len_null(Reviews::ResolvedBy, 128))
                    // The action: provider, mark_succeeded, mark_failed, dismiss…
                    .col(string_len_null(Reviews::Resolution, 40))
                    .col(text_null(Reviews::Note))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_reviews_payment", Reviews::PaymentId),
            ("idx_reviews_refund", Reviews::RefundId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Reviews::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        // Partial and on an expression: the same SQL on PostgreSQL and
        // SQLite, which sea-query's index builder does not write.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX idx_reviews_one_open ON reviews \
                 (kind, COALESCE(refund_id, payment_id)) WHERE status = 'open'",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Reviews::Table).to_owned())
            .await
    }
}
