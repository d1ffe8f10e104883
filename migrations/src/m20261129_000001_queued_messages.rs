//! The in-process queue's table: when payorch runs without RabbitMQ, an
//! acknowledged webhook is a row here, committed before the provider hears
//! 200, so a stop or a crash loses nothing. Times are Unix milliseconds, so
//! PostgreSQL and SQLite compare them the same way.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum QueuedMessages {
    Table,
    Id,
    Queue,
    MessageId,
    Body,
    Attempt,
    Reason,
    State,
    AvailableAtMs,
    LeasedUntilMs,
    CreatedAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(QueuedMessages::Table)
                    .col(pk_auto(QueuedMessages::Id).big_integer())
                    // `{prefix}.webhooks`, with a prefix of up to 64 characters.
                    .col(string_len(QueuedMessages::Queue, 128))
                    .col(string_len(QueuedMessages::MessageId, 255))
                    .col(text(QueuedMessages::Body))
                    .col(integer(QueuedMessages::Attempt).default(0))
                    .col(text_null(QueuedMessages::Reason))
                    // `ready` or `parked`.
                    .col(string_len(QueuedMessages::State, 16))
                    .col(big_integer(QueuedMessages::AvailableAtMs))
                    .col(big_integer_null(QueuedMessages::LeasedUntilMs))
                    .col(big_integer(QueuedMessages::CreatedAtMs))
                    .to_owned(),
            )
            .await?;
        // What a consumer asks for: ready messages of a queue, oldest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_queued_messages_ready")
                    .table(QueuedMessages::Table)
                    .col(QueuedMessages::Queue)
                    .col(QueuedMessages::State)
                    .col(QueuedMessages::AvailableAtMs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(QueuedMessages::Table).to_owned())
            .await
    }
}
