//! The sandbox as the provider's truth: its ledger, the side-effect faults
//! (`error_after`, refund look-ups that miss) and transactions listed by
//! date range, in both dialects, over real HTTP against a standalone
//! sandbox on port 0. Refunds settle only by control call and webhooks go
//! nowhere reachable, so every test sees exactly what it did.

use std::{sync::Arc, time::Duration};

use chrono::{SecondsFormat, Utc};
use payorch::config::{Config, SANDBOX_SECRET_KEY};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A sandbox of its own, served until dropped (also used by
/// `provider_pages`).
pub(crate) struct Sandbox {
    pub(crate) url: String,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

impl Sandbox {
    pub(crate) async fn start() -> Sandbox {
        crate::helpers::init_logs();
        let cfg = Config::from_lookup(|name| match name {
            "PAYSTACK_SECRET_KEY" => Some(SANDBOX_SECRET_KEY.into()),
            // Refunds stay pending until a test settles them.
            "PAYORCH_SANDBOX_REFUND_SETTLE_MS" => Some("0".into()),
            // Nothing listens there: no test's webhooks reach another's app.
            "PAYORCH_SANDBOX_WEBHOOK_URL" => Some("http://127.0.0.1:9/v1/webhooks/sandbox".into()),
            _ => None,
        })
        .expect("the sandbox's test configuration is valid");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(payorch::serve_sandbox(Arc::new(cfg), listener, async {
            let _ = stopped.await;
        }));
        Sandbox {
            url,
            http: reqwest::Client::new(),
            _stop: stop,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(SANDBOX_SECRET_KEY)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(SANDBOX_SECRET_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn fault(&self, body: Value) {
        let (status, _) = self.post("/_control/faults", body).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }

    /// Opens a Paystack transaction of 5000 NGN minor units.
    pub(crate) async fn paystack_initialize(&self, reference: &str) -> (StatusCode, Value) {
        self.post(
            "/transaction/initialize",
            json!({"reference": reference, "amount": 5000, "currency": "NGN", "email": "a@b.c"}),
        )
        .await
    }

    /// Opens a Flutterwave transaction of 50.00 NGN.
    pub(crate) async fn flutterwave_initialize(&self, tx_ref: &str) -> (StatusCode, Value) {
        self.post(
            "/flutterwave/v3/payments",
            json!({"tx_ref": tx_ref, "amount": "50.00", "currency": "NGN",
                   "customer": {"email": "a@b.c"}}),
        )
        .await
    }

    /// Settles a transaction as paid, quietly.
    pub(crate) async fn pay(&self, reference: &str, provider: &str) {
        let (status, _) = self
            .post(
                &format!("/_control/transactions/{reference}/outcome"),
                json!({"status": "success", "notify": false, "provider": provider}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    pub(crate) async fn ledger(&self) -> Vec<Value> {
        let (status, body) = self.get("/_control/ledger").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_array().expect("the ledger is an array").clone()
    }

    /// The ledger's entry for `reference` at `provider`.
    pub(crate) async fn entry(&self, provider: &str, reference: &str) -> Option<Value> {
        self.ledger()
            .await
            .into_iter()
            .find(|e| e["provider"] == provider && e["reference"] == reference)
    }

    /// A Flutterwave transaction's id, as its verify reports it.
    pub(crate) async fn flutterwave_id(&self, tx_ref: &str) -> i64 {
        let (status, body) = self
            .get(&format!(
                "/flutterwave/v3/transactions/verify_by_reference?tx_ref={tx_ref}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"]["id"].as_i64().unwrap()
    }
}

#[tokio::test]
async fn the_ledger_holds_transactions_and_refunds_of_both_dialects() {
    let sandbox = Sandbox::start().await;
    let (status, _) = sandbox.paystack_initialize("led-p1").await;
    assert_eq!(status, StatusCode::OK);
    sandbox.pay("led-p1", "paystack").await;
    let (status, refund) = sandbox
        .post("/refund", json!({"transaction": "led-p1", "amount": 1500}))
        .await;
    assert_eq!(status, StatusCode::OK, "{refund}");
    let (status, _) = sandbox.flutterwave_initialize("led-f1").await;
    assert_eq!(status, StatusCode::OK);
    sandbox.pay("led-f1", "flutterwave").await;
    let id = sandbox.flutterwave_id("led-f1").await;
    let (status, fw_refund) = sandbox
        .post(
            &format!("/flutterwave/v3/transactions/{id}/refund"),
            json!({"amount": "20.00"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{fw_refund}");
    sandbox.paystack_initialize("led-p2").await;

    let ledger = sandbox.ledger().await;
    assert_eq!(ledger.len(), 3, "{ledger:?}");
    let paystack = &ledger[0];
    let transaction_id = paystack["transaction_id"].as_i64().unwrap();
    assert_eq!(
        *paystack,
        json!({
            "provider": "paystack",
            "reference": "led-p1",
            "transaction_id": transaction_id,
            "status": "success",
            "amount": 5000,
            "currency": "NGN",
            "attempts": [{"id": transaction_id, "status": "success"}],
            "refunds": [{"id": refund["data"]["id"], "amount": 1500, "status": "pending",
                "merchant_note": null}],
        })
    );
    assert_eq!(ledger[1]["reference"], "led-p2", "oldest first per dialect");
    assert_eq!(ledger[1]["status"], "ongoing");
    assert_eq!(ledger[1]["refunds"], json!([]));
    assert_eq!(
        ledger[2],
        json!({
            "provider": "flutterwave",
            "reference": "led-f1",
            "transaction_id": id,
            "status": "successful",
            "amount": 5000,
            "currency": "NGN",
            "attempts": [{"id": id, "status": "successful"}],
            "refunds": [{"id": fw_refund["data"]["id"], "amount": 2000, "status": "pending",
                "merchant_note": null}],
        }),
        "minor units, Flutterwave's words"
    );

    // Narrowed to one dialect, from the base or under its own path.
    let (_, only) = sandbox.get("/_control/ledger?provider=flutterwave").await;
    assert_eq!(only.as_array().unwrap().len(), 1);
    let (_, own) = sandbox.get("/flutterwave/_control/ledger").await;
    assert_eq!(own, only);
    let (status, _) = sandbox.get("/_control/ledger?provider=stripe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let unauthorized = sandbox
        .http
        .get(format!("{}/_control/ledger", sandbox.url))
        .bearer_auth("sk_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_initialize_that_loses_its_answer_still_opens_the_transaction() {
    let sandbox = Sandbox::start().await;
    sandbox
        .fault(json!({"operation": "initialize", "mode": "error_after"}))
        .await;
    let (status, body) = sandbox.paystack_initialize("lost-p1").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["status"], false);
    let entry = sandbox.entry("paystack", "lost-p1").await;
    assert_eq!(entry.expect("opened")["status"], "ongoing");
    // The fault was for one call: a retry finds the same transaction.
    let (status, again) = sandbox.paystack_initialize("lost-p1").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(sandbox.ledger().await.len(), 1);

    // The same in Flutterwave's dialect, set from the base.
    sandbox
        .fault(
            json!({"operation": "initialize", "mode": "error_after", "count": 1,
                      "provider": "flutterwave"}),
        )
        .await;
    let (status, body) = sandbox.flutterwave_initialize("lost-f1").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["status"], "error");
    let entry = sandbox.entry("flutterwave", "lost-f1").await;
    assert_eq!(entry.expect("opened")["status"], "pending");
    let (_, stats) = sandbox.get("/_control/stats?provider=flutterwave").await;
    assert_eq!(stats["initialize_calls"], 1);
    assert_eq!(stats["transactions"], 1);
}

#[tokio::test]
async fn a_refund_that_loses_its_answer_is_still_made() {
    let sandbox = Sandbox::start().await;
    sandbox.paystack_initialize("lost-r1").await;
    sandbox.pay("lost-r1", "paystack").await;
    sandbox
        .fault(json!({"operation": "refund", "mode": "error_after", "count": 1}))
        .await;
    let (status, _) = sandbox
        .post("/refund", json!({"transaction": "lost-r1"}))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let entry = sandbox.entry("paystack", "lost-r1").await.unwrap();
    let refunds = entry["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["amount"], 5000);
    assert_eq!(refunds[0]["status"], "pending");
    // Sent again, the refund is refused: the money is already promised.
    let (status, body) = sandbox
        .post("/refund", json!({"transaction": "lost-r1"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    sandbox.flutterwave_initialize("lost-r2").await;
    sandbox.pay("lost-r2", "flutterwave").await;
    let id = sandbox.flutterwave_id("lost-r2").await;
    sandbox
        .fault(json!({"operation": "refund", "mode": "error_after",
                      "provider": "flutterwave"}))
        .await;
    let (status, _) = sandbox
        .post(
            &format!("/flutterwave/v3/transactions/{id}/refund"),
            json!({"amount": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let entry = sandbox.entry("flutterwave", "lost-r2").await.unwrap();
    assert_eq!(entry["refunds"][0]["amount"], 1000);
}

#[tokio::test]
async fn refund_look_ups_miss_as_many_times_as_asked() {
    let sandbox = Sandbox::start().await;
    sandbox.paystack_initialize("miss-p1").await;
    sandbox.pay("miss-p1", "paystack").await;
    let (_, refund) = sandbox
        .post("/refund", json!({"transaction": "miss-p1", "amount": 100}))
        .await;
    let refund_id = refund["data"]["id"].as_i64().unwrap();

    sandbox
        .fault(json!({"operation": "refund_lookup", "mode": "not_found", "count": 1}))
        .await;
    let (status, first) = sandbox.get("/refund?transaction=miss-p1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["data"], json!([]), "the first look-up misses");
    let (_, second) = sandbox.get("/refund?transaction=miss-p1").await;
    assert_eq!(second["data"][0]["id"], refund_id, "the second finds it");

    sandbox
        .fault(json!({"operation": "refund_lookup", "mode": "not_found", "count": 1}))
        .await;
    let (status, _) = sandbox.get(&format!("/refund/{refund_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, found) = sandbox.get(&format!("/refund/{refund_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["data"]["amount"], 100);

    // Flutterwave: by id, and its pages (a miss is one empty last page).
    sandbox.flutterwave_initialize("miss-f1").await;
    sandbox.pay("miss-f1", "flutterwave").await;
    let id = sandbox.flutterwave_id("miss-f1").await;
    let (_, refund) = sandbox
        .post(
            &format!("/flutterwave/v3/transactions/{id}/refund"),
            json!({}),
        )
        .await;
    let refund_id = refund["data"]["id"].as_i64().unwrap();
    sandbox
        .fault(
            json!({"operation": "refund_lookup", "mode": "not_found", "count": 2,
                      "provider": "flutterwave"}),
        )
        .await;
    let (status, _) = sandbox
        .get(&format!("/flutterwave/v3/refunds/{refund_id}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, page) = sandbox.get("/flutterwave/v3/refunds?page=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["data"], json!([]));
    assert_eq!(page["meta"]["page_info"]["total"], 0);
    assert_eq!(page["meta"]["page_info"]["total_pages"], 1);
    let (_, page) = sandbox.get("/flutterwave/v3/refunds?page=1").await;
    assert_eq!(page["data"][0]["id"], refund_id);
    let (status, _) = sandbox
        .get(&format!("/flutterwave/v3/refunds/{refund_id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, stats) = sandbox.get("/_control/stats?provider=flutterwave").await;
    assert_eq!(stats["refund_lookups"], 4, "misses are counted too");

    // A mode that means nothing for the operation is refused.
    let (status, _) = sandbox
        .post(
            "/_control/faults",
            json!({"operation": "verify", "mode": "not_found", "count": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = sandbox
        .post(
            "/_control/faults",
            json!({"operation": "refund_lookup", "mode": "error_after"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Now, to the microsecond, in RFC 3339.
fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `text` fit for a query string (the `+` of an offset, the `:`s).
fn encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn transactions_are_listed_by_date_range_and_paged() {
    let sandbox = Sandbox::start().await;
    let before = now();
    sandbox.paystack_initialize("list-p1").await;
    sandbox.paystack_initialize("list-p2").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    sandbox.paystack_initialize("list-p3").await;
    sandbox.pay("list-p3", "paystack").await;
    let after = now();

    let (status, all) = sandbox
        .get(&format!(
            "/transaction?from={}&to={}",
            encoded(&before),
            encoded(&after)
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["status"], true);
    let references: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tx| tx["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        references,
        ["list-p3", "list-p2", "list-p1"],
        "newest first"
    );
    assert_eq!(
        all["meta"],
        json!({"total": 3, "skipped": 0, "page": 1, "perPage": 50, "pageCount": 1})
    );
    let newest = &all["data"][0];
    assert_eq!(newest["status"], "success");
    assert_eq!(newest["amount"], 5000);
    assert!(newest["id"].is_i64() && newest["created_at"].is_string());

    // Inside the window and not outside it: the window ends between them.
    let (_, early) = sandbox
        .get(&format!(
            "/transaction?from={}&to={}",
            encoded(&before),
            encoded(&between)
        ))
        .await;
    assert_eq!(early["meta"]["total"], 2);
    assert!(
        early["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|tx| tx["reference"] != "list-p3")
    );
    let (_, late) = sandbox
        .get(&format!("/transaction?from={}", encoded(&between)))
        .await;
    assert_eq!(late["meta"]["total"], 1);
    assert_eq!(late["data"][0]["reference"], "list-p3");

    // Days: yesterday to tomorrow holds them all, a day long past none.
    let today = Utc::now().date_naive();
    let (yesterday, tomorrow) = (today.pred_opt().unwrap(), today.succ_opt().unwrap());
    let (_, by_day) = sandbox
        .get(&format!("/transaction?from={yesterday}&to={tomorrow}"))
        .await;
    assert_eq!(by_day["meta"]["total"], 3);
    let (_, past) = sandbox
        .get("/transaction?from=2000-01-01&to=2000-01-02")
        .await;
    assert_eq!(past["data"], json!([]));
    assert_eq!(past["meta"]["total"], 0);

    // Paged: one a page, three pages, each a different transaction.
    let mut seen = Vec::new();
    for page in 1..=3 {
        let (_, one) = sandbox
            .get(&format!(
                "/transaction?from={}&perPage=1&page={page}",
                encoded(&before)
            ))
            .await;
        assert_eq!(
            one["meta"],
            json!({"total": 3, "skipped": page - 1, "page": page, "perPage": 1, "pageCount": 3})
        );
        seen.push(one["data"][0]["reference"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["list-p3", "list-p2", "list-p1"]);
    let (_, beyond) = sandbox.get("/transaction?perPage=1&page=4").await;
    assert_eq!(beyond["data"], json!([]));
    let (_, capped) = sandbox.get("/transaction?perPage=100000").await;
    assert_eq!(capped["meta"]["perPage"], 100, "bounded pages");
    let (status, bad) = sandbox.get("/transaction?from=last-tuesday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["status"], false);
}

#[tokio::test]
async fn flutterwave_lists_its_transactions_by_date_range() {
    let sandbox = Sandbox::start().await;
    let before = now();
    for n in 0..21 {
        let (status, _) = sandbox.flutterwave_initialize(&format!("fl-{n:02}")).await;
        assert_eq!(status, StatusCode::OK);
    }
    sandbox.pay("fl-20", "flutterwave").await;
    // Paystack's transactions are not Flutterwave's.
    sandbox.paystack_initialize("list-other").await;
    let after = now();

    let window = format!("from={}&to={}", encoded(&before), encoded(&after));
    let (status, first) = sandbox
        .get(&format!("/flutterwave/v3/transactions?{window}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["status"], "success");
    assert_eq!(
        first["data"].as_array().unwrap().len(),
        10,
        "Flutterwave's 10"
    );
    assert_eq!(first["meta"]["page_info"]["total"], 21);
    assert_eq!(first["meta"]["page_info"]["current_page"], 1);
    assert_eq!(first["meta"]["page_info"]["total_pages"], 3);
    let newest = &first["data"][0];
    assert_eq!(
        newest["tx_ref"], "fl-20",
        "dated by its attempt, the latest"
    );
    assert_eq!(newest["status"], "successful");
    assert_eq!(
        newest["amount"].as_f64(),
        Some(50.0),
        "major units, as verify"
    );
    assert!(newest["created_at"].is_string());
    let (_, last) = sandbox
        .get(&format!("/flutterwave/v3/transactions?{window}&page=3"))
        .await;
    assert_eq!(last["data"].as_array().unwrap().len(), 1);
    assert_eq!(last["data"][0]["tx_ref"], "fl-00");
    assert_eq!(last["meta"]["page_info"]["current_page"], 3);

    let (_, future) = sandbox
        .get("/flutterwave/v3/transactions?from=2999-01-01&to=2999-12-31")
        .await;
    assert_eq!(future["data"], json!([]));
    assert_eq!(future["meta"]["page_info"]["total"], 0);
    let (status, bad) = sandbox.get("/flutterwave/v3/transactions?to=soon").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["status"], "error");
}

#[tokio::test]
async fn a_flutterwave_checkout_holds_its_attempts_each_verifiable_by_id() {
    let sandbox = Sandbox::start().await;
    sandbox.flutterwave_initialize("att-f1").await;
    let decline = json!({"status": "failed", "attempt_only": true, "notify": false,
                         "provider": "flutterwave"});
    let (status, first) = sandbox
        .post("/_control/transactions/att-f1/outcome", decline.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["status"], "failed");
    let first_id = first["id"].as_i64().unwrap();
    // Still payable: a second decline is another attempt, then a payment.
    let (_, second) = sandbox
        .post("/_control/transactions/att-f1/outcome", decline)
        .await;
    let second_id = second["id"].as_i64().unwrap();
    assert_ne!(second_id, first_id);
    sandbox.pay("att-f1", "flutterwave").await;
    let paid_id = sandbox.flutterwave_id("att-f1").await;
    assert!(paid_id != first_id && paid_id != second_id);

    // Each attempt answers for itself by id; by reference, the latest.
    for (id, word) in [
        (first_id, "failed"),
        (second_id, "failed"),
        (paid_id, "successful"),
    ] {
        let (status, body) = sandbox
            .get(&format!("/flutterwave/v3/transactions/{id}/verify"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["id"], id);
        assert_eq!(body["data"]["tx_ref"], "att-f1");
        assert_eq!(body["data"]["status"], word);
    }
    let (status, body) = sandbox
        .get("/flutterwave/v3/transactions/999999999/verify")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A declined attempt cannot be refunded; the paid one can.
    let (status, _) = sandbox
        .post(
            &format!("/flutterwave/v3/transactions/{first_id}/refund"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, refund) = sandbox
        .post(
            &format!("/flutterwave/v3/transactions/{paid_id}/refund"),
            json!({"amount": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{refund}");
    assert_eq!(refund["data"]["tx_id"], paid_id);

    let entry = sandbox.entry("flutterwave", "att-f1").await.unwrap();
    assert_eq!(entry["transaction_id"], paid_id);
    assert_eq!(entry["status"], "successful");
    assert_eq!(
        entry["attempts"],
        json!([
            {"id": first_id, "status": "failed"},
            {"id": second_id, "status": "failed"},
            {"id": paid_id, "status": "successful"},
        ])
    );

    // Without attempt_only a decline closes the checkout, as before.
    sandbox.flutterwave_initialize("att-f2").await;
    let (_, closed) = sandbox
        .post(
            "/_control/transactions/att-f2/outcome",
            json!({"status": "failed", "notify": false, "provider": "flutterwave"}),
        )
        .await;
    assert_eq!(closed["status"], "failed");
    let (_, again) = sandbox
        .post(
            "/_control/transactions/att-f2/outcome",
            json!({"status": "success", "notify": false, "provider": "flutterwave"}),
        )
        .await;
    assert_eq!(
        again["status"], "failed",
        "a closed checkout takes no attempt"
    );
    let entry = sandbox.entry("flutterwave", "att-f2").await.unwrap();
    assert_eq!(entry["attempts"].as_array().unwrap().len(), 1);

    // Paystack's dialect has no attempts to keep open.
    sandbox.paystack_initialize("att-p1").await;
    let (status, _) = sandbox
        .post(
            "/_control/transactions/att-p1/outcome",
            json!({"status": "failed", "attempt_only": true}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = sandbox
        .post(
            "/_control/transactions/att-f2/outcome",
            json!({"status": "success", "attempt_only": true, "provider": "flutterwave"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "attempt_only is for a decline"
    );
}

#[tokio::test]
async fn refund_listings_are_paged_as_the_providers_page_them() {
    let sandbox = Sandbox::start().await;
    sandbox.paystack_initialize("rl-p1").await;
    sandbox.pay("rl-p1", "paystack").await;
    sandbox.paystack_initialize("rl-p2").await;
    sandbox.pay("rl-p2", "paystack").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, refund) = sandbox
            .post("/refund", json!({"transaction": "rl-p1", "amount": 10}))
            .await;
        ids.push(refund["data"]["id"].as_i64().unwrap());
    }
    sandbox
        .post("/refund", json!({"transaction": "rl-p2", "amount": 10}))
        .await;
    let transaction_id = sandbox.entry("paystack", "rl-p1").await.unwrap()["transaction_id"]
        .as_i64()
        .unwrap();

    // Paystack: `page` and `perPage`, newest first, by reference or id.
    for filter in [
        "transaction=rl-p1".to_owned(),
        "reference=rl-p1".to_owned(),
        format!("transaction={transaction_id}"),
    ] {
        let (status, page) = sandbox
            .get(&format!("/refund?{filter}&perPage=2&page=2"))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(
            page["meta"],
            json!({"total": 3, "skipped": 2, "perPage": 2, "page": 2, "pageCount": 2}),
            "{filter}"
        );
        assert_eq!(page["data"].as_array().unwrap().len(), 1);
        assert_eq!(page["data"][0]["id"], ids[0], "the oldest last");
    }
    let (_, all) = sandbox.get("/refund").await;
    assert_eq!(all["meta"]["total"], 4, "unfiltered: every refund");
    assert_eq!(all["meta"]["perPage"], 50, "Paystack's default");
    let (status, bad) = sandbox.get("/refund?transaction=rl-p1&page=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["status"], false);

    // Flutterwave: `page` of 20, `id` the refunded transaction's.
    sandbox.flutterwave_initialize("rl-f1").await;
    sandbox.pay("rl-f1", "flutterwave").await;
    let id = sandbox.flutterwave_id("rl-f1").await;
    for _ in 0..21 {
        let (status, _) = sandbox
            .post(
                &format!("/flutterwave/v3/transactions/{id}/refund"),
                json!({"amount": "0.01"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, last) = sandbox
        .get(&format!("/flutterwave/v3/refunds?id={id}&page=2"))
        .await;
    assert_eq!(
        last["meta"]["page_info"],
        json!({"total": 21, "current_page": 2, "total_pages": 2, "page_size": 20})
    );
    assert_eq!(last["data"].as_array().unwrap().len(), 1);
    assert_eq!(last["data"][0]["transaction_id"], id);
    let (_, none) = sandbox.get("/flutterwave/v3/refunds?id=1").await;
    assert_eq!(none["data"], json!([]));
    assert_eq!(none["meta"]["page_info"]["total"], 0);
}
