//! What the console's pages need beyond what payorch already kept:
//! - `api_clients.previous_key_hash` / `previous_key_expires_at`: the key
//!   before a rotation, accepted until its grace period ends;
//! - `provider_calls`: each call to a connector (what, for which payment,
//!   how long, how it ended), for a payment's timeline;
//! - indexes for the payment search (by email; by the client's reference
//!   without the client; by creation time alone, which a search by
//!   connector walks too) and for an endpoint's latest attempts (its
//!   failure streak).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiClients {
    Table,
    PreviousKeyHash,
    PreviousKeyExpiresAt,
}

#[derive(DeriveIden)]
enum ProviderCalls {
    Table,
    Id,
    Reference,
    Connector,
    Operation,
    StartedAt,
    DurationMs,
    Outcome,
    Error,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Email,
    CreatedAt,
    ClientReference,
}

#[derive(DeriveIden)]
enum EventAttempts {
    Table,
    EndpointId,
    Id,
}

/// (name, table, columns) of each index this migration adds.
fn indexes() -> Vec<(&'static str, DynIden, Vec<DynIden>)> {
    vec![
        (
            "idx_api_clients_previous_key",
            ApiClients::Table.into_iden(),
            vec![ApiClients::PreviousKeyHash.into_iden()],
        ),
        (
            "idx_provider_calls_reference",
            ProviderCalls::Table.into_iden(),
            vec![
                ProviderCalls::Reference.into_iden(),
                ProviderCalls::StartedAt.into_iden(),
            ],
        ),
        (
            "idx_provider_calls_started",
            ProviderCalls::Table.into_iden(),
            vec![ProviderCalls::StartedAt.into_iden()],
        ),
        (
            "idx_payments_email_created",
            Payments::Table.into_iden(),
            vec![Payments::Email.into_iden(), Payments::CreatedAt.into_iden()],
        ),
        (
            "idx_payments_created",
            Payments::Table.into_iden(),
            vec![Payments::CreatedAt.into_iden()],
        ),
        (
            "idx_payments_client_reference_any",
            Payments::Table.into_iden(),
            vec![Payments::ClientReference.into_iden()],
        ),
        (
            "idx_event_attempts_endpoint",
            EventAttempts::Table.into_iden(),
            vec![
                EventAttempts::EndpointId.into_iden(),
                EventAttempts::Id.into_iden(),
            ],
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ApiClients::Table)
                    .add_column(string_null(ApiClients::PreviousKeyHash))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ApiClients::Table)
                    .add_column(timestamp_with_time_zone_null(
                        ApiClients::PreviousKeyExpiresAt,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProviderCalls::Table)
                    .col(big_pk_auto(ProviderCalls::Id))
                    .col(string(ProviderCalls::Reference))
                    .col(string(ProviderCalls::Connector))
                    .col(string(ProviderCalls::Operation))
                    .col(timestamp_with_time_zone(ProviderCalls::StartedAt))
                    .col(big_integer(ProviderCalls::DurationMs))
                    .col(string(ProviderCalls::Outcome))
                    .col(text_null(ProviderCalls::Error))
                    .to_owned(),
            )
            .await?;
        for (name, table, columns) in indexes() {
            let mut index = Index::create();
            index.name(name).table(table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _) in indexes() {
            if name.starts_with("idx_provider_calls") {
                continue;
            }
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        manager
            .drop_table(Table::drop().table(ProviderCalls::Table).to_owned())
            .await?;
        for column in [
            ApiClients::PreviousKeyExpiresAt,
            ApiClients::PreviousKeyHash,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiClients::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
