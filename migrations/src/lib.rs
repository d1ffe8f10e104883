//! Schema migrations for payorch, written with sea-orm-migration so that the
//! same definitions run on PostgreSQL (production) and SQLite (the embedded
//! default). `payorch migrate` applies them; `serve` and `worker` do so on
//! start unless `PAYORCH_AUTO_MIGRATE=false`.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_initial_schema;
mod m20261129_000001_queued_messages;
mod m20261129_000002_refunds;
mod m20261130_000001_installation_settings;
mod m20261130_000002_idempotency_owner;
mod m20261130_000003_client_references;
mod m20261201_000001_merchant_events;
mod m20261206_000001_reviews;
mod m20261207_000001_money_elsewhere;
mod m20261207_000002_operators;
mod m20261208_000001_sealed_endpoint_secrets;
mod m20261209_000001_queue_lease_fence;
mod m20261209_000002_console_sessions;
mod m20261210_000001_console_pages;
mod m20261211_000001_outbox_index;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_initial_schema::Migration),
            Box::new(m20261129_000001_queued_messages::Migration),
            Box::new(m20261129_000002_refunds::Migration),
            Box::new(m20261130_000001_installation_settings::Migration),
            Box::new(m20261130_000002_idempotency_owner::Migration),
            Box::new(m20261130_000003_client_references::Migration),
            Box::new(m20261201_000001_merchant_events::Migration),
            Box::new(m20261206_000001_reviews::Migration),
            Box::new(m20261207_000001_money_elsewhere::Migration),
            Box::new(m20261207_000002_operators::Migration),
            Box::new(m20261208_000001_sealed_endpoint_secrets::Migration),
            Box::new(m20261209_000001_queue_lease_fence::Migration),
            Box::new(m20261209_000002_console_sessions::Migration),
            Box::new(m20261210_000001_console_pages::Migration),
            Box::new(m20261211_000001_outbox_index::Migration),
        ]
    }
}
