//! Merchant events: the endpoints API clients register
//! (`webhook_endpoints`), the transactional outbox of events written with
//! each payment or refund change (`events`, `published_at` unset until the
//! relay has queued its deliveries) and every delivery attempt
//! (`event_attempts`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    ClientId,
    Url,
    Description,
    EventTypes,
    Enabled,
    Secret,
    PreviousSecret,
    PreviousSecretUntil,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    ClientId,
    Type,
    PaymentId,
    RefundId,
    Body,
    CreatedAt,
    PublishedAt,
}

#[derive(DeriveIden)]
enum EventAttempts {
    Table,
    Id,
    EventId,
    EndpointId,
    Attempt,
    At,
    Status,
    ResponseStatus,
    DurationMs,
    Error,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookEndpoints::Table)
                    .col(pk_uuid(WebhookEndpoints::Id))
                    .col(uuid(WebhookEndpoints::ClientId))
                    .col(string_len(WebhookEndpoints::Url, 2048))
                    .col(string_len_null(WebhookEndpoints::Description, 255))
                    // A JSON array of event types; empty: every type.
                    .col(json(WebhookEndpoints::EventTypes))
                    .col(boolean(WebhookEndpoints::Enabled))
                    .col(string_len(WebhookEndpoints::Secret, 128))
                    // After a rotation, the old secret signs too until then.
                    .col(string_len_null(WebhookEndpoints::PreviousSecret, 128))
                    .col(timestamp_with_time_zone_null(
                        WebhookEndpoints::PreviousSecretUntil,
                    ))
                    .col(timestamp_with_time_zone(WebhookEndpoints::CreatedAt))
                    .col(timestamp_with_time_zone(WebhookEndpoints::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_endpoints_client")
                    .table(WebhookEndpoints::Table)
                    .col(WebhookEndpoints::ClientId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    // `evt_` + a UUIDv7: ordered by creation.
                    .col(string_len(Events::Id, 40).primary_key())
                    .col(uuid(Events::ClientId))
                    .col(string_len(Events::Type, 32))
                    .col(uuid_null(Events::PaymentId))
                    .col(uuid_null(Events::RefundId))
                    // The JSON body exactly as it is delivered and signed.
                    .col(text(Events::Body))
                    .col(timestamp_with_time_zone(Events::CreatedAt))
                    .col(timestamp_with_time_zone_null(Events::PublishedAt))
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            ("idx_events_client", vec![Events::ClientId, Events::Id]),
            ("idx_events_payment", vec![Events::PaymentId, Events::Id]),
            (
                "idx_events_unpublished",
                vec![Events::PublishedAt, Events::Id],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(Events::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(EventAttempts::Table)
                    .col(
                        big_integer(EventAttempts::Id)
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(string_len(EventAttempts::EventId, 40))
                    .col(uuid(EventAttempts::EndpointId))
                    .col(integer(EventAttempts::Attempt))
                    .col(timestamp_with_time_zone(EventAttempts::At))
                    // delivered, retrying (failed, another attempt is due) or failed.
                    .col(string_len(EventAttempts::Status, 16))
                    .col(integer_null(EventAttempts::ResponseStatus))
                    .col(big_integer(EventAttempts::DurationMs))
                    .col(string_len_null(EventAttempts::Error, 255))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_event_attempts_event")
                    .table(EventAttempts::Table)
                    .col(EventAttempts::EventId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            EventAttempts::Table.into_iden(),
            Events::Table.into_iden(),
            WebhookEndpoints::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
