//! The schema goes up, down and up again on both supported databases.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::helpers::TestDb;

const TABLES: [&str; 5] = [
    "api_clients",
    "payments",
    "payment_transitions",
    "idempotency_keys",
    "webhook_events",
];

async fn table_exists(db: &DatabaseConnection, table: &str) -> bool {
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Sqlite => {
            format!("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '{table}'")
        }
        _ => format!("SELECT tablename FROM pg_tables WHERE tablename = '{table}'"),
    };
    db.query_all_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        sql,
    ))
    .await
    .unwrap()
    .len()
        == 1
}

async fn up_down_up(db: &DatabaseConnection) {
    Migrator::up(db, None).await.expect("first up");
    for table in TABLES {
        assert!(table_exists(db, table).await, "{table} after up");
    }
    Migrator::down(db, None).await.expect("down");
    for table in TABLES {
        assert!(!table_exists(db, table).await, "{table} after down");
    }
    Migrator::up(db, None).await.expect("second up");
    for table in TABLES {
        assert!(table_exists(db, table).await, "{table} after second up");
    }
    // Applying again is a no-op, as every `serve` start does.
    Migrator::up(db, None).await.expect("idempotent up");
}

#[tokio::test]
async fn migrations_go_up_down_and_up_on_postgres() {
    let test_db = TestDb::postgres().await;
    up_down_up(&test_db.connect().await).await;
}

#[tokio::test]
async fn migrations_go_up_down_and_up_on_sqlite() {
    let test_db = TestDb::sqlite();
    up_down_up(&test_db.connect().await).await;
}

/// Inserting the same row twice must fail on a unique constraint.
async fn second_insert_fails<A>(db: &DatabaseConnection, row: A)
where
    A: sea_orm::ActiveModelTrait + sea_orm::ActiveModelBehavior + Clone + Send,
    <A::Entity as sea_orm::EntityTrait>::Model: sea_orm::IntoActiveModel<A>,
{
    use sea_orm::EntityTrait;
    A::Entity::insert(row.clone())
        .exec_without_returning(db)
        .await
        .expect("first insert");
    assert!(
        A::Entity::insert(row)
            .exec_without_returning(db)
            .await
            .is_err(),
        "the second insert must violate a unique constraint"
    );
}

#[tokio::test]
async fn unique_constraints_hold_on_both_databases() {
    use payorch::store::entities::{idempotency_key, payment, webhook_event};
    use sea_orm::ActiveValue::Set;

    for test_db in [TestDb::postgres().await, TestDb::sqlite()] {
        let db = test_db.connect().await;
        Migrator::up(&db, None).await.unwrap();
        let (client, _) = payorch::store::api_clients::create(&db, "c").await.unwrap();
        let now = chrono::Utc::now();
        second_insert_fails(
            &db,
            payment::ActiveModel {
                id: Set(uuid::Uuid::now_v7()),
                client_id: Set(client.id),
                reference: Set("ref-1".into()),
                provider: Set("sandbox".into()),
                amount: Set(100),
                currency: Set("NGN".into()),
                email: Set("a@b.co".into()),
                status: Set("created".into()),
                failure_reason: Set(None),
                authorization_url: Set(None),
                access_code: Set(None),
                metadata: Set(None),
                version: Set(0),
                created_at: Set(now),
                updated_at: Set(now),
                paid_at: Set(None),
            },
        )
        .await;
        second_insert_fails(
            &db,
            idempotency_key::ActiveModel {
                client_id: Set(client.id),
                key: Set(uuid::Uuid::new_v4()),
                request_hash: Set("h".into()),
                state: Set("started".into()),
                payment_id: Set(None),
                response_status: Set(None),
                response_body: Set(None),
                created_at: Set(now),
                locked_until: Set(None),
            },
        )
        .await;
        // A different row id, the same (provider, event_id): still a duplicate.
        let event = |id| webhook_event::ActiveModel {
            id: Set(id),
            provider: Set("sandbox".into()),
            event_id: Set("charge.success:1".into()),
            reference: Set(None),
            event_type: Set("charge.success".into()),
            payload: Set(serde_json::json!({})),
            received_at: Set(now),
            processed_at: Set(None),
            outcome: Set(None),
        };
        use sea_orm::EntityTrait;
        webhook_event::Entity::insert(event(uuid::Uuid::now_v7()))
            .exec_without_returning(&db)
            .await
            .unwrap();
        assert!(
            webhook_event::Entity::insert(event(uuid::Uuid::now_v7()))
                .exec_without_returning(&db)
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn processes_starting_together_take_turns_migrating() {
    let test_db = TestDb::postgres().await;
    let url: payorch::config::DatabaseUrl = test_db.url.parse().unwrap();
    let mut connections = Vec::new();
    for _ in 0..4 {
        connections.push(test_db.connect().await);
    }
    let runs = connections
        .iter()
        .map(|db| payorch::store::migrate(db, &url));
    for result in futures_util::future::join_all(runs).await {
        result.expect("every concurrent migrate succeeds");
    }
    assert!(table_exists(&connections[0], "payments").await);
}
