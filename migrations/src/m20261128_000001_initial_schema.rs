//! The five tables of DESIGN.md: API clients, payments with their audit
//! trail, stored idempotency keys and received webhook events.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiClients {
    Table,
    Id,
    Name,
    KeyHash,
    CreatedAt,
    DisabledAt,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
    ClientId,
    Reference,
    Provider,
    Amount,
    Currency,
    Email,
    Status,
    FailureReason,
    AuthorizationUrl,
    AccessCode,
    Metadata,
    Version,
    CreatedAt,
    UpdatedAt,
    PaidAt,
}

#[derive(DeriveIden)]
enum PaymentTransitions {
    Table,
    Id,
    PaymentId,
    FromStatus,
    ToStatus,
    Cause,
    EventId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    ClientId,
    Key,
    RequestHash,
    State,
    PaymentId,
    ResponseStatus,
    ResponseBody,
    CreatedAt,
    LockedUntil,
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    Id,
    Provider,
    EventId,
    Reference,
    EventType,
    Payload,
    ReceivedAt,
    ProcessedAt,
    Outcome,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiClients::Table)
                    .col(pk_uuid(ApiClients::Id))
                    .col(string_len(ApiClients::Name, 100))
                    // SHA-256 of the secret key, hex: keys are 256-bit random, so
                    // a fast hash is safe and lookups stay one indexed read.
                    .col(string_len_uniq(ApiClients::KeyHash, 64))
                    .col(timestamp_with_time_zone(ApiClients::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiClients::DisabledAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .col(pk_uuid(Payments::Id))
                    .col(uuid(Payments::ClientId))
                    .col(string_len_uniq(Payments::Reference, 100))
                    .col(string_len(Payments::Provider, 32))
                    .col(big_integer(Payments::Amount))
                    .col(string_len(Payments::Currency, 3))
                    .col(string_len(Payments::Email, 254))
                    .col(string_len(Payments::Status, 16))
                    .col(string_len_null(Payments::FailureReason, 64))
                    .col(text_null(Payments::AuthorizationUrl))
                    .col(string_len_null(Payments::AccessCode, 128))
                    .col(json_null(Payments::Metadata))
                    .col(integer(Payments::Version).default(0))
                    .col(timestamp_with_time_zone(Payments::CreatedAt))
                    .col(timestamp_with_time_zone(Payments::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Payments::PaidAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_payments_client")
                            .from(Payments::Table, Payments::ClientId)
                            .to(ApiClients::Table, ApiClients::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_payments_client_created")
                    .table(Payments::Table)
                    .col(Payments::ClientId)
                    .col(Payments::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(PaymentTransitions::Table)
                    .col(big_pk_auto(PaymentTransitions::Id))
                    .col(uuid(PaymentTransitions::PaymentId))
                    .col(string_len(PaymentTransitions::FromStatus, 16))
                    .col(string_len(PaymentTransitions::ToStatus, 16))
                    .col(string_len(PaymentTransitions::Cause, 64))
                    .col(string_len_null(PaymentTransitions::EventId, 255))
                    .col(timestamp_with_time_zone(PaymentTransitions::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_transitions_payment")
                            .from(PaymentTransitions::Table, PaymentTransitions::PaymentId)
                            .to(Payments::Table, Payments::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_transitions_payment")
                    .table(PaymentTransitions::Table)
                    .col(PaymentTransitions::PaymentId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(uuid(IdempotencyKeys::ClientId))
                    .col(uuid(IdempotencyKeys::Key))
                    .col(string_len(IdempotencyKeys::RequestHash, 64))
                    .col(string_len(IdempotencyKeys::State, 16))
                    // The payment a first attempt created, so that a retry after a
                    // crash finishes that payment instead of creating a second one.
                    .col(uuid_null(IdempotencyKeys::PaymentId))
                    .col(integer_null(IdempotencyKeys::ResponseStatus))
                    .col(text_null(IdempotencyKeys::ResponseBody))
                    .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                    .col(timestamp_with_time_zone_null(IdempotencyKeys::LockedUntil))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::ClientId)
                            .col(IdempotencyKeys::Key),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_idempotency_created")
                    .table(IdempotencyKeys::Table)
                    .col(IdempotencyKeys::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(WebhookEvents::Table)
                    .col(pk_uuid(WebhookEvents::Id))
                    .col(string_len(WebhookEvents::Provider, 32))
                    .col(string_len(WebhookEvents::EventId, 255))
                    .col(string_len_null(WebhookEvents::Reference, 100))
                    .col(string_len(WebhookEvents::EventType, 64))
                    .col(json(WebhookEvents::Payload))
                    .col(timestamp_with_time_zone(WebhookEvents::ReceivedAt))
                    .col(timestamp_with_time_zone_null(WebhookEvents::ProcessedAt))
                    .col(string_len_null(WebhookEvents::Outcome, 32))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_webhook_events_provider_event")
                    .table(WebhookEvents::Table)
                    .col(WebhookEvents::Provider)
                    .col(WebhookEvents::EventId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_events_reference")
                    .table(WebhookEvents::Table)
                    .col(WebhookEvents::Reference)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WebhookEvents::Table.into_iden(),
            IdempotencyKeys::Table.into_iden(),
            PaymentTransitions::Table.into_iden(),
            Payments::Table.into_iden(),
            ApiClients::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
