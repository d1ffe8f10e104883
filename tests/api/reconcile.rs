//! Reconciliation and retention: payments whose webhook never came are
//! settled by `payorch reconcile`; unpaid ones are abandoned past the
//! threshold; several sweepers share the work without asking about a
//! payment twice; old keys and events are purged, the audit trail never.

use std::{process::Output, sync::Arc};

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, PaginatorTrait};
use serde_json::json;

use crate::helpers::{TestApp, TestDb, payorch_command, test_env};

/// An app whose own sweeper stays out of the way: these tests run the
/// sweep themselves, on rows they have just backdated.
async fn app() -> TestApp {
    let db = Arc::new(TestDb::postgres().await);
    let mut env = test_env(&db);
    env.insert("PAYORCH_RECONCILE_EVERY_S".into(), "3600".into());
    TestApp::spawn_with(db, env).await
}

/// `payorch reconcile` against the app's database and sandbox.
fn reconcile(app: &TestApp, abandon_after_s: &str) -> std::process::Child {
    payorch_command()
        .arg("reconcile")
        .env("DATABASE_URL", &app.database_url)
        .env("PAYORCH_PROVIDER", "sandbox")
        .env("PAYSTACK_BASE_URL", app.url("/sandbox/"))
        .env(
            "PAYORCH_RECONCILE_AFTER_S",
            crate::helpers::RECONCILE_AFTER_S,
        )
        .env("PAYORCH_ABANDON_AFTER_S", abandon_after_s)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a sweeper off the test's runtime, which serves the app (and
/// its sandbox) meanwhile.
async fn finished(child: std::process::Child) -> Output {
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    output
}

#[tokio::test]
async fn a_payment_paid_without_a_webhook_is_settled_by_one_pass() {
    let app = app().await;
    let paid = app.new_payment(2_500).await;
    let reference = paid["reference"].as_str().unwrap();
    let settled = app
        .sandbox(
            &format!("transactions/{reference}/outcome"),
            json!({"status": "success", "notify": false}),
        )
        .await;
    assert_eq!(settled.status(), 200);
    assert_eq!(app.payment(reference).await["status"], "pending");

    crate::helpers::backdate(&app.db).await;
    let output = finished(reconcile(&app, "86400")).await;
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains(&format!("payment {reference}\tpending -> succeeded")),
        "{printed}"
    );
    let payment = app.payment(reference).await;
    assert_eq!(payment["status"], "succeeded");
    let last = payment["transitions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["cause"], "reconcile:charge_succeeded");
}

/// An initialize whose answer was lost leaves its payment `created` (one
/// connector, nothing to fail over to) while the provider holds the
/// transaction; the customer pays it. The sweep asks about `created`
/// payments too, and settles it as the provider says.
#[tokio::test]
async fn a_payment_left_created_by_a_lost_answer_is_settled_by_the_sweep() {
    let app = app().await;
    let fault = app
        .sandbox(
            "faults",
            json!({"operation": "initialize", "mode": "error_after"}),
        )
        .await;
    assert_eq!(fault.status(), 204);
    let request = json!({"amount": 1_500, "currency": "NGN", "email": "a@b.co",
        "reference": "lost-answer-1"});
    let answered = app.initialize(&request, None).await;
    assert!(answered.status().is_server_error(), "{answered:?}");
    assert_eq!(app.payment("lost-answer-1").await["status"], "created");
    let paid = app
        .sandbox(
            "transactions/lost-answer-1/outcome",
            json!({"status": "success", "notify": false}),
        )
        .await;
    assert_eq!(paid.status(), 200);

    crate::helpers::backdate(&app.db).await;
    let output = finished(reconcile(&app, "86400")).await;
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("payment lost-answer-1\tcreated -> succeeded"),
        "{printed}"
    );
    assert_eq!(app.payment("lost-answer-1").await["status"], "succeeded");
}

#[tokio::test]
async fn an_unpaid_payment_past_the_abandon_threshold_is_abandoned() {
    let app = app().await;
    let unpaid = app.new_payment(900).await;
    let reference = unpaid["reference"].as_str().unwrap();
    // Under the abandon threshold: asked about, left pending.
    crate::helpers::backdate(&app.db).await;
    let output = finished(reconcile(&app, "86400")).await;
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 checked, 0 changed"));
    assert_eq!(app.payment(reference).await["status"], "pending");

    // Recently checked payments wait for the recheck interval; a fresh
    // app's database stands in for "later" by clearing the stamp.
    app.db
        .execute_unprepared("UPDATE payments SET checked_at = NULL")
        .await
        .unwrap();
    crate::helpers::backdate(&app.db).await;
    let output = finished(reconcile(&app, "0")).await;
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("pending -> abandoned"),
        "{output:?}"
    );
    assert_eq!(app.payment(reference).await["status"], "abandoned");
}

#[tokio::test]
async fn three_sweepers_ask_about_each_of_a_thousand_stale_payments_exactly_once() {
    let app = app().await;
    const PAYMENTS: usize = 1_000;
    let (http, base) = app.clone_http();
    let creates = (0..PAYMENTS).map(|_| {
        http.post(format!("{base}/v1/payments/initialize"))
            .bearer_auth(&app.api_key)
            .json(&json!({"amount": 1_000, "currency": "NGN", "email": "a@example.com"}))
            .send()
    });
    let mut created = 0;
    for chunk in creates.collect::<Vec<_>>().chunks_mut(50) {
        for response in futures_util::future::join_all(chunk.iter_mut()).await {
            assert_eq!(response.unwrap().status(), 201);
            created += 1;
        }
    }
    assert_eq!(created, PAYMENTS);
    let before = app.sandbox_stats().await["verify_calls"].as_u64().unwrap();

    crate::helpers::backdate(&app.db).await;
    let sweepers: Vec<_> = (0..3).map(|_| reconcile(&app, "86400")).collect();
    let mut checked = 0;
    for sweeper in sweepers {
        let output = finished(sweeper).await;
        let printed = String::from_utf8_lossy(&output.stdout).into_owned();
        let count: usize = printed
            .lines()
            .last()
            .and_then(|line| line.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no summary in {printed}"));
        checked += count;
    }
    let after = app.sandbox_stats().await["verify_calls"].as_u64().unwrap();
    assert_eq!(checked, PAYMENTS, "the sweepers split the payments");
    assert_eq!(
        after - before,
        PAYMENTS as u64,
        "one provider call per payment"
    );
}

#[tokio::test]
async fn retention_purges_old_keys_and_events_but_never_the_audit_trail() {
    use payorch::{
        domain::{Amount, Currency, Email, Reference},
        store::{
            self,
            entities::{idempotency_key, payment_transition, webhook_event},
        },
    };
    // A database no running app purges behind the test's back.
    let test_db = TestDb::postgres().await;
    let db = test_db.connect().await;
    store::migrate(&db, &test_db.url.parse().unwrap())
        .await
        .unwrap();
    let (client, _) = store::api_clients::create(&db, "c").await.unwrap();
    let old = Utc::now() - chrono::Duration::days(40);
    let recent = Utc::now() - chrono::Duration::hours(1);
    let reference = Reference::generate();
    let payment = store::payments::insert(
        &db,
        store::payments::NewPayment {
            id: uuid::Uuid::now_v7(),
            client_id: client.id,
            reference: &reference,
            provider_reference: &reference,
            provider: "sandbox",
            amount: Amount::new(700).unwrap(),
            currency: Currency::NGN,
            email: &Email::parse("a@b.co").unwrap(),
            metadata: None,
        },
    )
    .await
    .unwrap()
    .expect("a fresh reference");
    // The audit trail is as old as the oldest key: age alone never purges it.
    db.execute_unprepared(&format!(
        "UPDATE payment_transitions SET created_at = now() - interval '40 days' \
         WHERE payment_id = '{}'",
        payment.id
    ))
    .await
    .unwrap();
    for (i, at) in [old, old, recent].into_iter().enumerate() {
        idempotency_key::Entity::insert(idempotency_key::ActiveModel {
            client_id: Set(client.id),
            key: Set(uuid::Uuid::new_v4()),
            request_hash: Set(format!("h{i}")),
            state: Set("completed".into()),
            payment_id: Set(None),
            refund_id: Set(None),
            response_status: Set(Some(201)),
            response_body: Set(Some("{}".into())),
            created_at: Set(at),
            locked_until: Set(None),
            owner: Set(None),
        })
        .exec(&db)
        .await
        .unwrap();
        webhook_event::Entity::insert(webhook_event::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            provider: Set("sandbox".into()),
            event_id: Set(format!("charge.success:{i}")),
            reference: Set(None),
            event_type: Set("charge.success".into()),
            payload: Set(json!({})),
            received_at: Set(at),
            processed_at: Set(Some(at)),
            outcome: Set(Some("applied:succeeded".into())),
        })
        .exec(&db)
        .await
        .unwrap();
    }
    let (keys, events) =
        payorch::payments::reconcile::purge(&db, std::time::Duration::from_secs(30 * 86_400))
            .await
            .unwrap();
    assert_eq!((keys, events), (2, 2));
    assert_eq!(idempotency_key::Entity::find().count(&db).await.unwrap(), 1);
    assert_eq!(webhook_event::Entity::find().count(&db).await.unwrap(), 1);
    assert_eq!(
        payment_transition::Entity::find().count(&db).await.unwrap(),
        1,
        "the audit trail is kept"
    );
}

#[tokio::test]
async fn a_worker_sweeps_on_its_own() {
    let app = app().await;
    let paid = app.new_payment(1_200).await;
    let reference = paid["reference"].as_str().unwrap().to_owned();
    let settled = app
        .sandbox(
            &format!("transactions/{reference}/outcome"),
            json!({"status": "success", "notify": false}),
        )
        .await;
    assert_eq!(settled.status(), 200);

    // A `payorch worker` beside the app, sweeping every second.
    let prefix = crate::helpers::random_name("q");
    let env = std::collections::HashMap::from([
        ("DATABASE_URL".to_owned(), app.database_url.clone()),
        ("AMQP_URL".to_owned(), crate::webhooks::AMQP.to_owned()),
        ("PAYORCH_QUEUE_PREFIX".to_owned(), prefix),
        ("PAYSTACK_BASE_URL".to_owned(), app.url("/sandbox/")),
        ("PAYORCH_PROVIDER".to_owned(), "sandbox".to_owned()),
        (
            "PAYSTACK_SECRET_KEY".to_owned(),
            payorch::config::SANDBOX_SECRET_KEY.to_owned(),
        ),
        (
            "PAYORCH_RECONCILE_AFTER_S".to_owned(),
            crate::helpers::RECONCILE_AFTER_S.to_owned(),
        ),
        ("PAYORCH_RECONCILE_EVERY_S".to_owned(), "1".to_owned()),
        (
            "PAYORCH_SECRETS_KEY".to_owned(),
            payorch::sealing::SealingKey::generate()
                .encoded()
                .expose()
                .to_owned(),
        ),
    ]);
    let cfg = Arc::new(crate::helpers::config_from(&env));
    let (cfg_prefix, event_retry) = (cfg.queue_prefix.clone(), cfg.event_retry_policy.clone());
    let queue = payorch::queue::amqp::AmqpQueue::new(
        crate::webhooks::AMQP,
        &cfg.queue_prefix,
        cfg.retry_policy.clone(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    crate::helpers::backdate(&app.db).await;
    let worker = tokio::spawn(payorch::run_worker(cfg, async {
        let _ = stopped.await;
    }));

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let payment = loop {
        let payment = app.payment(&reference).await;
        if payment["status"] == "succeeded" {
            break payment;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never swept: {payment}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let last = payment["transitions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["cause"], "reconcile:charge_succeeded");
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
    queue.delete_topology().await.unwrap();
    // The worker delivers merchant events too: their queues go as well.
    payorch::queue::amqp::AmqpQueue::new(crate::webhooks::AMQP, &cfg_prefix, event_retry)
        .of_kind(payorch::queue::EVENTS, 0)
        .delete_topology()
        .await
        .unwrap();
}
