//! The schema goes up, down and up again on both supported databases.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::helpers::TestDb;

const TABLES: [&str; 10] = [
    "api_clients",
    "payments",
    "payment_transitions",
    "idempotency_keys",
    "webhook_events",
    "queued_messages",
    "refunds",
    "operators",
    "operator_tokens",
    "operator_audit",
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

/// `first` goes in; `second` — another primary key, the same value in the
/// unique column under test — is refused as a unique violation, and only
/// as that.
async fn second_insert_violates_uniqueness<A>(
    db: &DatabaseConnection,
    what: &str,
    first: A,
    second: A,
) where
    A: sea_orm::ActiveModelTrait + sea_orm::ActiveModelBehavior + Send,
    <A::Entity as sea_orm::EntityTrait>::Model: sea_orm::IntoActiveModel<A>,
{
    use sea_orm::EntityTrait;
    A::Entity::insert(first)
        .exec_without_returning(db)
        .await
        .unwrap_or_else(|err| panic!("{what}: first insert: {err}"));
    let err = A::Entity::insert(second)
        .exec_without_returning(db)
        .await
        .expect_err(what);
    assert!(
        matches!(
            err.sql_err(),
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
        ),
        "{what}: not a unique violation: {err}"
    );
}

#[tokio::test]
async fn unique_constraints_hold_on_both_databases() {
    use payorch::store::entities::{
        api_client, idempotency_key, operator, operator_token, payment, webhook_event,
    };
    use sea_orm::ActiveValue::Set;

    for test_db in [TestDb::postgres().await, TestDb::sqlite()] {
        let db = test_db.connect().await;
        Migrator::up(&db, None).await.unwrap();
        let (client, _) = payorch::store::api_clients::create(&db, "c").await.unwrap();
        let now = chrono::Utc::now();
        let payment = |id, reference: &str, client_reference: &str| payment::ActiveModel {
            id: Set(id),
            client_id: Set(client.id),
            reference: Set(reference.into()),
            client_reference: Set(client_reference.into()),
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
            refunded_amount: Set(0),
            checked_at: Set(None),
            earlier_connectors: Set(None),
        };
        second_insert_violates_uniqueness(
            &db,
            "payments.reference",
            payment(uuid::Uuid::now_v7(), "ref-1", "ref-1"),
            payment(uuid::Uuid::now_v7(), "ref-1", "other-1"),
        )
        .await;
        // The client's own reference, under two provider references.
        second_insert_violates_uniqueness(
            &db,
            "payments (client_id, client_reference)",
            payment(uuid::Uuid::now_v7(), "ref-2", "ref-2"),
            payment(uuid::Uuid::now_v7(), "po-other", "ref-2"),
        )
        .await;
        let key = uuid::Uuid::new_v4();
        let idempotency_key = |hash: &str| idempotency_key::ActiveModel {
            client_id: Set(client.id),
            key: Set(key),
            request_hash: Set(hash.into()),
            state: Set("started".into()),
            payment_id: Set(None),
            refund_id: Set(None),
            response_status: Set(None),
            response_body: Set(None),
            created_at: Set(now),
            locked_until: Set(None),
            owner: Set(None),
        };
        second_insert_violates_uniqueness(
            &db,
            "idempotency_keys (client_id, key)",
            idempotency_key("first"),
            idempotency_key("second"),
        )
        .await;
        let event = |id, provider: &str| webhook_event::ActiveModel {
            id: Set(id),
            provider: Set(provider.to_owned()),
            event_id: Set("charge.success:1".into()),
            reference: Set(None),
            event_type: Set("charge.success".into()),
            payload: Set(serde_json::json!({})),
            received_at: Set(now),
            processed_at: Set(None),
            outcome: Set(None),
        };
        second_insert_violates_uniqueness(
            &db,
            "webhook_events (provider, event_id)",
            event(uuid::Uuid::now_v7(), "sandbox"),
            event(uuid::Uuid::now_v7(), "sandbox"),
        )
        .await;
        // The pair is unique, not the event id alone: another provider may
        // use the same id.
        {
            use sea_orm::EntityTrait;
            webhook_event::Entity::insert(event(uuid::Uuid::now_v7(), "paystack"))
                .exec_without_returning(&db)
                .await
                .expect("the same event id from another provider");
        }
        let api_client = |id| api_client::ActiveModel {
            id: Set(id),
            name: Set("twin".into()),
            key_hash: Set("same-hash".into()),
            created_at: Set(now),
            disabled_at: Set(None),
            previous_key_hash: Set(None),
            previous_key_expires_at: Set(None),
        };
        second_insert_violates_uniqueness(
            &db,
            "api_clients.key_hash",
            api_client(uuid::Uuid::now_v7()),
            api_client(uuid::Uuid::now_v7()),
        )
        .await;
        let operator = |id| operator::ActiveModel {
            id: Set(id),
            name: Set("alice".into()),
            password_hash: Set("$argon2id$…".into()),
            disabled_at: Set(None),
            created_at: Set(now),
        };
        let alice = uuid::Uuid::now_v7();
        second_insert_violates_uniqueness(
            &db,
            "operators.name",
            operator(alice),
            operator(uuid::Uuid::now_v7()),
        )
        .await;
        let token = |id| operator_token::ActiveModel {
            id: Set(id),
            operator_id: Set(alice),
            token_hash: Set("same-hash".into()),
            created_at: Set(now),
            revoked_at: Set(None),
            expires_at: Set(None),
        };
        second_insert_violates_uniqueness(
            &db,
            "operator_tokens.token_hash",
            token(uuid::Uuid::now_v7()),
            token(uuid::Uuid::now_v7()),
        )
        .await;
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
