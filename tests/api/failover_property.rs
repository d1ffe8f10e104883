//! Property: for any routing table and any faults of the connectors,
//! initialize either returns a checkout from an enabled connector — held
//! by that connector alone — or a provider error (402, 502, 504): never an
//! error of payorch's own, never a second checkout anywhere.
//!
//! Each case builds the core afresh (its own breakers) from a generated
//! `PAYORCH_ROUTING`, injects generated faults into the sandbox's two
//! dialects, and runs a few initializes against the real database.

use std::{collections::HashMap, time::Duration};

use proptest::{prelude::*, test_runner::TestRunner};
use uuid::Uuid;

use crate::helpers::TestDb;
use payorch::{
    config::{SANDBOX_SECRET_KEY, Secret},
    domain::Reference,
    payments::{ActorSettings, Answer, NewPaymentRequest, PaymentError, Payments, Rendered},
    provider::ProviderError,
    store::payments::Payment,
};

#[derive(Debug, Clone)]
struct Case {
    routing: String,
    /// Per dialect: (mode, count) of initialize faults.
    faults: Vec<(&'static str, &'static str, u32)>,
    pinned: Option<&'static str>,
}

fn case() -> impl Strategy<Value = Case> {
    let entry = prop_oneof![
        Just("paystack".to_owned()),
        Just("flutterwave".to_owned()),
        (0u32..100).prop_map(|w| format!("paystack:{w}")),
        (0u32..100).prop_map(|w| format!("flutterwave:{w}")),
    ];
    let rule = prop::collection::vec(entry, 1..=2).prop_filter_map("distinct", |entries| {
        let names: Vec<&str> = entries
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect();
        (names.len() < 2 || names[0] != names[1]).then(|| entries.join(","))
    });
    let key = prop_oneof![Just("NGN"), Just("*")];
    let mode = prop_oneof![Just("error"), Just("hang"), Just("duplicate")];
    (
        prop::collection::vec((key, rule), 0..=2),
        prop::collection::vec(
            (
                prop_oneof![Just("paystack"), Just("flutterwave")],
                mode,
                0u32..4,
            ),
            0..=3,
        ),
        prop_oneof![
            4 => Just(None),
            1 => Just(Some("paystack")),
            1 => Just(Some("flutterwave")),
        ],
    )
        .prop_map(|(rules, faults, pinned)| {
            let mut seen = Vec::new();
            let routing = rules
                .into_iter()
                .filter(|(key, _)| {
                    let fresh = !seen.contains(key);
                    seen.push(*key);
                    fresh
                })
                .map(|(key, rule)| format!("{key}={rule}"))
                .collect::<Vec<_>>()
                .join(";");
            Case {
                routing,
                faults,
                pinned,
            }
        })
}

struct World {
    db_url: String,
    sandbox: String,
    http: reqwest::Client,
}

impl World {
    async fn fault(&self, provider: &str, mode: &str, count: u32) {
        let response = self
            .http
            .post(format!("{}/_control/faults", self.sandbox))
            .bearer_auth(SANDBOX_SECRET_KEY)
            .json(&serde_json::json!({
                "provider": provider, "operation": "initialize", "mode": mode, "count": count
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }

    /// Whether `provider`'s dialect of the sandbox holds a transaction
    /// under `reference`.
    async fn holds(&self, provider: &str, reference: &str) -> bool {
        let url = match provider {
            "flutterwave" => format!(
                "{}/flutterwave/v3/transactions/verify_by_reference?tx_ref={reference}",
                self.sandbox
            ),
            _ => format!("{}/transaction/verify/{reference}", self.sandbox),
        };
        let response = self
            .http
            .get(url)
            .bearer_auth(SANDBOX_SECRET_KEY)
            .send()
            .await
            .unwrap();
        response.status().is_success()
    }

    async fn check(&self, case: Case) -> Result<(), TestCaseError> {
        let env = HashMap::from([
            ("DATABASE_URL", self.db_url.clone()),
            ("PAYORCH_PROVIDER", "sandbox".to_owned()),
            ("PAYSTACK_SECRET_KEY", SANDBOX_SECRET_KEY.to_owned()),
            ("PAYORCH_PROVIDERS", "paystack,flutterwave".to_owned()),
            ("PAYORCH_ROUTING", case.routing.clone()),
            ("PAYORCH_PROVIDER_TIMEOUT_MS", "200".to_owned()),
            ("PAYORCH_BREAKER_FAILURES", "2".to_owned()),
        ]);
        let cfg = payorch::Config::from_lookup(|name| env.get(name).cloned())
            .map_err(|e| TestCaseError::fail(format!("config: {e}")))?;
        let db = payorch::store::connect_url(&cfg.database_url, 5, Duration::from_secs(5))
            .await
            .unwrap();
        let connectors = payorch::provider::from_config(
            &cfg,
            Secret::new(SANDBOX_SECRET_KEY),
            Some(format!("{}/", self.sandbox).parse().unwrap()),
        );
        let actors = ActorSettings {
            idle: Duration::from_secs(5),
            mailbox: 64,
            arbiters: 1,
        };
        let payments = Payments::start(db.clone(), connectors, actors, Duration::from_secs(30))
            .expect("the core starts");
        for provider in ["paystack", "flutterwave"] {
            self.fault(provider, "error", 0).await;
        }
        for (provider, mode, count) in &case.faults {
            self.fault(provider, mode, *count).await;
        }
        let (client, _) = payorch::store::api_clients::create(&db, "p").await.unwrap();
        for _ in 0..3 {
            let request = NewPaymentRequest {
                provider: case.pinned.map(|p| p.parse().unwrap()),
                ..crate::helpers::payment_request(
                    Reference::parse(&format!("prop-{}", Uuid::new_v4().simple())).unwrap(),
                    5_000,
                )
            };
            let reference = request.reference.as_str().to_owned();
            let answer = payments
                .initialize(client.id, None, Ok(request), render)
                .await;
            let stored = payorch::store::payments::find_owned(&db, client.id, &reference)
                .await
                .unwrap();
            let held_by: Vec<&str> = {
                let mut held = Vec::new();
                for provider in ["paystack", "flutterwave"] {
                    if self.holds(provider, &reference).await {
                        held.push(provider);
                    }
                }
                held
            };
            prop_assert!(held_by.len() <= 1, "two checkouts: {held_by:?}");
            match answer {
                Ok(Answer::Fresh(rendered)) => {
                    prop_assert_eq!(rendered.status, 201, "{}", rendered.body);
                    let payment = stored.expect("an answered payment is stored");
                    if let Some(pinned) = case.pinned {
                        prop_assert_eq!(&payment.provider, pinned);
                    }
                    prop_assert_eq!(&held_by, &vec![payment.provider.as_str()]);
                    let link = payment.authorization_url.clone().unwrap_or_default();
                    prop_assert_eq!(
                        link.contains("/flutterwave/"),
                        payment.provider == "flutterwave",
                        "the checkout shown is the holder's: {}",
                        link
                    );
                }
                Ok(Answer::Replayed(_)) => prop_assert!(false, "no key, no replay"),
                Err(PaymentError::Provider(err)) => {
                    prop_assert!(
                        matches!(
                            err,
                            ProviderError::Rejected(_)
                                | ProviderError::Unavailable(_)
                                | ProviderError::Timeout
                                | ProviderError::CircuitOpen(_)
                        ),
                        "{err}"
                    );
                    if let Some(payment) = stored {
                        prop_assert!(payment.authorization_url.is_none());
                    }
                    prop_assert!(held_by.is_empty(), "nothing shown, nothing held");
                }
                Err(err) => prop_assert!(false, "payorch's own error: {err:?}"),
            }
        }
        payments.stop();
        Ok(())
    }
}

/// A checkout as 201 (errors come back as errors without a key).
fn render(result: Result<Payment, PaymentError>) -> Rendered {
    match result {
        Ok(payment) => Rendered {
            status: 201,
            body: payment.reference,
        },
        Err(PaymentError::Provider(ProviderError::Rejected(message))) => Rendered {
            status: 402,
            body: message,
        },
        Err(err) => Rendered {
            status: 500,
            body: err.to_string(),
        },
    }
}

#[test]
fn initialize_returns_a_checkout_from_one_connector_or_a_gateway_error() {
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
        tokio::spawn(payorch::serve_sandbox(
            crate::helpers::sandbox_config(),
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
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&case(), |case| runtime.block_on(world.check(case)));
    if let Err(failure) = result {
        panic!("{failure}");
    }
    drop(runtime);
}
