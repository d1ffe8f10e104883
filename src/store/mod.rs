//! Persistence: one sea-orm connection pool to PostgreSQL or SQLite, the
//! entities, and the queries each concept needs (one file per concept).

pub mod api_clients;
pub mod changes;
pub mod endpoints;
pub mod entities;
pub mod events;
pub mod operators;
pub mod payments;
pub mod provider_calls;
pub mod refunds;
pub mod reviews;
pub mod settings;
pub mod webhooks;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

use crate::config::{Config, DatabaseUrl};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the database at {location}: {source}")]
    Connect { location: String, source: DbErr },
    #[error("migrating the database at {location} failed: {source}")]
    Migrate { location: String, source: DbErr },
}

/// Begins a transaction that will write. On SQLite it takes the write lock
/// at once (`BEGIN IMMEDIATE`), waiting out the busy timeout: a deferred
/// transaction that read first and then writes fails at once with "database
/// is locked" when another writer committed meanwhile. PostgreSQL ignores it.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// Opens the pool. Every acquire is bounded by `db_acquire_timeout` so a
/// stopped database yields fast 503s instead of hung requests.
pub async fn connect(cfg: &Config) -> Result<DatabaseConnection, StoreError> {
    connect_url(
        &cfg.database_url,
        cfg.db_max_connections,
        cfg.db_acquire_timeout,
    )
    .await
}

/// How long a pooled connection may sit idle before it is checked (a
/// round trip) when taken again.
const IDLE_BEFORE_CHECK: Duration = Duration::from_secs(10);

pub async fn connect_url(
    url: &DatabaseUrl,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<DatabaseConnection, StoreError> {
    let mut options = ConnectOptions::new(url.expose().to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(acquire_timeout)
        // A connection idle long enough to have been dropped (a database
        // restart, a proxy's timeout) is checked before use; one in steady
        // use is not, which saved a round trip per statement.
        .test_before_acquire_if_idle_for(IDLE_BEFORE_CHECK)
        .sqlx_logging(false);
    let connect_error = |source| StoreError::Connect {
        location: url.location(),
        source,
    };
    let mut db = Database::connect(options).await.map_err(connect_error)?;
    db.set_metric_callback(|info| crate::timing::RequestClock::add_database(info.elapsed));
    if url.is_sqlite() {
        // WAL lets readers proceed while one writer commits; the busy timeout
        // makes concurrent writers wait for the lock instead of failing.
        for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA busy_timeout=5000"] {
            db.execute_unprepared(pragma).await.map_err(connect_error)?;
        }
    }
    Ok(db)
}

/// Any fixed number: the advisory lock that lets one process migrate at a time.
const MIGRATION_LOCK: i64 = 0x7061_796f_7263;

/// Applies pending migrations. On PostgreSQL they run in one transaction
/// holding an advisory lock, so several processes starting together (`make
/// workers N=4` on a fresh database) take turns instead of racing.
pub async fn migrate(db: &DatabaseConnection, url: &DatabaseUrl) -> Result<(), StoreError> {
    let failed = |source| StoreError::Migrate {
        location: url.location(),
        source,
    };
    if url.is_sqlite() {
        return Migrator::up(db, None).await.map_err(failed);
    }
    let txn = db.begin().await.map_err(failed)?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        .await
        .map_err(failed)?;
    Migrator::up(&txn, None).await.map_err(failed)?;
    txn.commit().await.map_err(failed)
}
