//! Property: whatever the provider does to refunds — answers lost before or
//! after the work, look-ups that miss, refunds it settles either way, in
//! any order with payorch's sweeps — payorch never calls a refund `failed`
//! while the provider holds it as paid out (or paying), never sends one
//! twice, and the payment's reserved amount always covers what the
//! provider may pay. The sandbox's ledger is the provider's truth.

use std::time::Duration;

use proptest::{prelude::*, test_runner::TestRunner};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::TestDb;
use payorch::{
    config::SANDBOX_SECRET_KEY,
    domain::Reference,
    payments::{ActorSettings, Answer, NewRefundRequest, PaymentError, Payments, Rendered, Sweep},
    store::{payments::Payment, refunds::Refund},
};

const AMOUNT: i64 = 10_000;

#[derive(Debug, Clone)]
enum Step {
    /// The next refund call: lost before the work, after it, or answered.
    Refund {
        amount: Option<i64>,
        fault: Option<&'static str>,
    },
    /// The next `misses` look-ups miss.
    Misses(u32),
    /// The provider settles its oldest pending refund.
    ProviderSettles(&'static str),
    /// A sweep; `review`: past the review window.
    Sweep { review: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (
            prop_oneof![Just(None), (1i64..=4_000).prop_map(Some)],
            prop_oneof![Just(None), Just(Some("error")), Just(Some("error_after"))],
        )
            .prop_map(|(amount, fault)| Step::Refund { amount, fault }),
        1 => (0u32..3).prop_map(Step::Misses),
        2 => prop_oneof![Just("processed"), Just("failed")].prop_map(Step::ProviderSettles),
        3 => any::<bool>().prop_map(|review| Step::Sweep { review }),
    ]
}

struct World {
    db_url: String,
    sandbox: String,
    http: reqwest::Client,
}

impl World {
    async fn control(&self, path: &str, body: Value) -> reqwest::StatusCode {
        self.http
            .post(format!("{}/_control/{path}", self.sandbox))
            .bearer_auth(SANDBOX_SECRET_KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// The sandbox's refunds of `reference`: `(id, amount, status)`.
    async fn ledger(&self, reference: &str) -> Vec<(String, i64, String)> {
        let ledger: Value = self
            .http
            .get(format!("{}/_control/ledger", self.sandbox))
            .bearer_auth(SANDBOX_SECRET_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ledger
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["reference"] == reference)
            .map(|t| {
                t["refunds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            r["id"].to_string().trim_matches('"').to_owned(),
                            r["amount"].as_i64().unwrap(),
                            r["status"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn check(&self, steps: Vec<Step>) -> Result<(), TestCaseError> {
        let db =
            payorch::store::connect_url(&self.db_url.parse().unwrap(), 5, Duration::from_secs(5))
                .await
                .unwrap();
        let client = crate::helpers::SandboxServer::client_at(&self.sandbox, "paystack");
        let payments = Payments::start(
            db.clone(),
            payorch::provider::Connectors::single(client),
            ActorSettings {
                idle: Duration::from_secs(5),
                mailbox: 64,
                arbiters: 1,
            },
            Duration::from_secs(30),
        )
        .unwrap();
        for operation in ["refund", "refund_lookup"] {
            let mode = if operation == "refund" {
                "error"
            } else {
                "not_found"
            };
            self.control(
                "faults",
                json!({"operation": operation, "mode": mode, "count": 0}),
            )
            .await;
        }
        let (client, _) = payorch::store::api_clients::create(&db, "p").await.unwrap();
        let reference = format!("rprop-{}", Uuid::new_v4().simple());
        let request =
            crate::helpers::payment_request(Reference::parse(&reference).unwrap(), AMOUNT);
        let created = payments
            .initialize(client.id, None, Ok(request), render_payment)
            .await;
        prop_assert!(matches!(created, Ok(Answer::Fresh(_))), "{created:?}");
        let paid = self
            .control(
                &format!("transactions/{reference}/outcome"),
                json!({"status": "success", "notify": false}),
            )
            .await;
        prop_assert_eq!(paid, reqwest::StatusCode::OK);
        let verified = payments.verify(client.id, &reference).await.unwrap();
        prop_assert_eq!(verified.status.as_str(), "succeeded");

        for step in steps {
            match step {
                Step::Refund { amount, fault } => {
                    if let Some(mode) = fault {
                        self.control(
                            "faults",
                            json!({"operation": "refund", "mode": mode, "count": 1}),
                        )
                        .await;
                    }
                    let request = NewRefundRequest {
                        amount,
                        reason: None,
                    };
                    // Refused (nothing left) or accepted: both fine here.
                    let _ = payments
                        .refund(client.id, &reference, None, Ok(request), render_refund)
                        .await;
                    self.control(
                        "faults",
                        json!({"operation": "refund", "mode": "error", "count": 0}),
                    )
                    .await;
                }
                Step::Misses(count) => {
                    self.control(
                        "faults",
                        json!({"operation": "refund_lookup", "mode": "not_found", "count": count}),
                    )
                    .await;
                }
                Step::ProviderSettles(status) => {
                    if let Some((id, _, _)) = self
                        .ledger(&reference)
                        .await
                        .into_iter()
                        .find(|(_, _, s)| s == "pending")
                    {
                        self.control(&format!("refunds/{id}/outcome"), json!({"status": status}))
                            .await;
                    }
                }
                Step::Sweep { review } => {
                    let sweep = Sweep {
                        after: Duration::ZERO,
                        abandon_after: Duration::from_secs(86_400),
                        review_after: if review {
                            Duration::ZERO
                        } else {
                            Duration::from_secs(86_400)
                        },
                    };
                    payments.reconcile(sweep).await.unwrap();
                }
            }
            self.invariants(&db, &payments, client.id, &reference)
                .await?;
        }
        payments.stop();
        Ok(())
    }

    async fn invariants(
        &self,
        db: &sea_orm::DatabaseConnection,
        payments: &Payments,
        client_id: Uuid,
        reference: &str,
    ) -> Result<(), TestCaseError> {
        let ours: Vec<Refund> = payments.refunds(client_id, reference).await.unwrap();
        let theirs = self.ledger(reference).await;
        prop_assert!(
            theirs.len() <= ours.len(),
            "a refund sent twice: {theirs:?} for {ours:?}"
        );
        for refund in ours.iter().filter(|r| r.status == "failed") {
            if let Some(id) = &refund.provider_refund_id {
                let held = theirs.iter().find(|(their_id, _, _)| their_id == id);
                prop_assert!(
                    held.is_none_or(|(_, _, status)| status == "failed"),
                    "refund {} failed while the provider holds it as {:?}",
                    refund.id,
                    held
                );
            }
        }
        let reserved: i64 = ours
            .iter()
            .filter(|r| r.status != "failed")
            .map(|r| r.amount)
            .sum();
        let paying: i64 = theirs
            .iter()
            .filter(|(_, _, status)| status != "failed")
            .map(|(_, amount, _)| amount)
            .sum();
        prop_assert!(
            paying <= reserved,
            "the provider pays {paying}, payorch reserves {reserved}: {ours:?} {theirs:?}"
        );
        let payment: Payment = payorch::store::payments::find_by_reference(db, reference)
            .await
            .unwrap()
            .unwrap();
        prop_assert_eq!(payment.refunded_amount, reserved);
        prop_assert!(payment.refunded_amount <= AMOUNT);
        Ok(())
    }
}

fn render_payment(result: Result<Payment, PaymentError>) -> Rendered {
    Rendered {
        status: if result.is_ok() { 201 } else { 500 },
        body: String::new(),
    }
}

fn render_refund(result: Result<Refund, PaymentError>) -> Rendered {
    Rendered {
        status: if result.is_ok() { 201 } else { 422 },
        body: String::new(),
    }
}

#[test]
fn no_refund_is_failed_while_the_provider_holds_it_as_paid_out() {
    crate::helpers::init_logs();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let test_db = runtime.block_on(TestDb::postgres());
    let world = runtime.block_on(async {
        let db = test_db.connect().await;
        payorch::store::migrate(&db, &test_db.url.parse().unwrap())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sandbox = format!("http://{}", listener.local_addr().unwrap());
        let mut cfg = (*crate::helpers::sandbox_config()).clone();
        // Refunds stay pending until a step settles them.
        cfg.sandbox_refund_settle = None;
        tokio::spawn(payorch::serve_sandbox(
            std::sync::Arc::new(cfg),
            listener,
            std::future::pending(),
        ));
        World {
            db_url: test_db.url.clone(),
            sandbox,
            http: reqwest::Client::new(),
        }
    });
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&prop::collection::vec(step(), 1..10), |steps| {
        runtime.block_on(world.check(steps))
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    drop(runtime);
}
