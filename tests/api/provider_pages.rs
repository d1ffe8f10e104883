//! The connectors' paged reads against the sandbox, in both dialects,
//! calling the clients directly: a refund look-up reads every page of the
//! transaction's refunds (and only that transaction's). A provider whose
//! pages never end is given up on.

use std::time::Duration;

use payorch::{
    config::{SANDBOX_SECRET_KEY, Secret},
    domain::Reference,
    provider::{
        MAX_REFUND_PAGES, PaymentProvider, ProviderError,
        flutterwave::FlutterwaveClient,
        paystack::{self, PaystackClient},
    },
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::sandbox_ledger::Sandbox;

const TIMEOUT: Duration = Duration::from_secs(5);

fn paystack_client(sandbox: &Sandbox) -> PaystackClient {
    PaystackClient::new(
        "paystack",
        sandbox.url.parse().unwrap(),
        Secret::new(SANDBOX_SECRET_KEY),
        TIMEOUT,
    )
}

fn flutterwave_client(sandbox: &Sandbox) -> FlutterwaveClient {
    FlutterwaveClient::new(
        format!("{}/flutterwave/", sandbox.url).parse().unwrap(),
        Secret::new(SANDBOX_SECRET_KEY),
        Secret::new(SANDBOX_SECRET_KEY),
        TIMEOUT,
    )
}

fn reference(text: &str) -> Reference {
    Reference::parse(text).unwrap()
}

/// The sandbox's counts for `provider`.
async fn stats(sandbox: &Sandbox, provider: &str) -> Value {
    let (status, stats) = sandbox
        .get(&format!("/_control/stats?provider={provider}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    stats
}

/// Opens a Paystack refund of 1 kobo of `reference` noted `note`; its id.
async fn paystack_refund(sandbox: &Sandbox, reference: &str, note: &str) -> i64 {
    let (status, body) = sandbox
        .post(
            "/refund",
            json!({"transaction": reference, "amount": 1, "merchant_note": note}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["id"].as_i64().unwrap()
}

/// Opens a Flutterwave refund of 0.01 of transaction `id` noted `note`; its id.
async fn flutterwave_refund(sandbox: &Sandbox, id: i64, note: &str) -> i64 {
    let (status, body) = sandbox
        .post(
            &format!("/flutterwave/v3/transactions/{id}/refund"),
            json!({"amount": "0.01", "comments": note}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["id"].as_i64().unwrap()
}

#[tokio::test]
async fn a_paystack_refund_on_the_last_page_is_found_and_only_the_transactions() {
    let sandbox = Sandbox::start().await;
    let client = paystack_client(&sandbox);
    sandbox.paystack_initialize("pages-p1").await;
    sandbox.pay("pages-p1", "paystack").await;
    sandbox.paystack_initialize("pages-p2").await;
    sandbox.pay("pages-p2", "paystack").await;

    // The oldest is listed last: newest first, one page more than fits.
    let ours = Uuid::new_v4();
    let ours_id = paystack_refund(&sandbox, "pages-p1", &ours.to_string()).await;
    for _ in 0..paystack::PER_PAGE {
        paystack_refund(&sandbox, "pages-p1", &Uuid::new_v4().to_string()).await;
    }
    // Another transaction's refund under the same note is not ours.
    let theirs_id = paystack_refund(&sandbox, "pages-p2", &ours.to_string()).await;

    let before = stats(&sandbox, "paystack").await["refund_lookups"]
        .as_u64()
        .unwrap();
    let found = client
        .find_refund(&reference("pages-p1"), ours, None)
        .await
        .unwrap()
        .expect("found on the last page");
    assert_eq!(found.provider_refund_id, ours_id.to_string());
    let after = stats(&sandbox, "paystack").await["refund_lookups"]
        .as_u64()
        .unwrap();
    assert_eq!(after - before, 2, "two pages of the transaction's refunds");

    let missing = client
        .find_refund(&reference("pages-p1"), Uuid::new_v4(), None)
        .await
        .unwrap();
    assert_eq!(missing, None, "every page read, none is it");
    let elsewhere = client
        .find_refund(&reference("pages-p2"), ours, None)
        .await
        .unwrap()
        .expect("pages-p2's own");
    assert_eq!(elsewhere.provider_refund_id, theirs_id.to_string());

    // By the provider's id: found, unless it is another refund.
    let by_id = client
        .find_refund(&reference("pages-p1"), ours, Some(&ours_id.to_string()))
        .await
        .unwrap();
    assert_eq!(by_id, Some(found));
    let not_ours = client
        .find_refund(
            &reference("pages-p1"),
            Uuid::new_v4(),
            Some(&ours_id.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(not_ours, None, "its note names another refund");
    let other_transaction = client
        .find_refund(&reference("pages-p1"), ours, Some(&theirs_id.to_string()))
        .await
        .unwrap();
    assert_eq!(other_transaction, None, "it refunds another transaction");
}

#[tokio::test]
async fn a_flutterwave_refund_on_the_last_page_is_found_among_the_transactions_refunds() {
    let sandbox = Sandbox::start().await;
    let client = flutterwave_client(&sandbox);
    sandbox.flutterwave_initialize("pages-f1").await;
    sandbox.pay("pages-f1", "flutterwave").await;
    let transaction = sandbox.flutterwave_id("pages-f1").await;
    sandbox.flutterwave_initialize("pages-f2").await;
    sandbox.pay("pages-f2", "flutterwave").await;
    let other = sandbox.flutterwave_id("pages-f2").await;

    // Flutterwave pages refunds 20 at a time: 21 of this transaction.
    let ours = Uuid::new_v4();
    let ours_id = flutterwave_refund(&sandbox, transaction, &ours.to_string()).await;
    for _ in 0..20 {
        flutterwave_refund(&sandbox, transaction, &Uuid::new_v4().to_string()).await;
    }
    // Newer refunds of another transaction, one under the same note: read
    // unfiltered, ours would be on the third page.
    flutterwave_refund(&sandbox, other, &ours.to_string()).await;
    for _ in 0..19 {
        flutterwave_refund(&sandbox, other, &Uuid::new_v4().to_string()).await;
    }

    let before = stats(&sandbox, "flutterwave").await["refund_lookups"]
        .as_u64()
        .unwrap();
    let found = client
        .find_refund(&reference("pages-f1"), ours, None)
        .await
        .unwrap()
        .expect("found on the last page");
    assert_eq!(found.provider_refund_id, ours_id.to_string());
    let after = stats(&sandbox, "flutterwave").await["refund_lookups"]
        .as_u64()
        .unwrap();
    assert_eq!(
        after - before,
        2,
        "two pages: only the transaction's refunds"
    );

    let missing = client
        .find_refund(&reference("pages-f1"), Uuid::new_v4(), None)
        .await
        .unwrap();
    assert_eq!(missing, None);
    let by_id = client
        .find_refund(&reference("pages-f1"), ours, Some(&ours_id.to_string()))
        .await
        .unwrap();
    assert_eq!(by_id, Some(found));
    let not_ours = client
        .find_refund(
            &reference("pages-f1"),
            Uuid::new_v4(),
            Some(&ours_id.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(not_ours, None, "its comment names another refund");
}

/// A provider that answers every page of refunds with one that is not
/// payorch's and says there are always more.
async fn endless_provider() -> (String, tokio::sync::oneshot::Sender<()>) {
    use poem::{Route, Server, get, handler, listener::TcpAcceptor, web::Json};

    #[handler]
    fn page() -> Json<Value> {
        Json(json!({
            "status": true,
            "message": "Refunds retrieved",
            "data": [{"id": 1, "status": "pending", "merchant_note": "someone else's"}],
            "meta": {"total": 1_000_000, "page": 1, "perPage": 1, "pageCount": 1_000_000},
        }))
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
    tokio::spawn(
        Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
            Route::new().at("/refund", get(page)),
            async {
                let _ = stopped.await;
            },
            None,
        ),
    );
    (url, stop)
}

#[tokio::test]
async fn a_provider_whose_pages_never_end_is_given_up_on() {
    let (url, _stop) = endless_provider().await;
    let client = PaystackClient::new(
        "paystack",
        url.parse().unwrap(),
        Secret::new(SANDBOX_SECRET_KEY),
        TIMEOUT,
    );
    let searched = client
        .find_refund(&reference("endless-1"), Uuid::new_v4(), None)
        .await;
    match searched {
        Err(ProviderError::Unavailable(why)) => {
            assert!(why.contains(&MAX_REFUND_PAGES.to_string()), "{why}")
        }
        other => panic!("not given up on: {other:?}"),
    }
}
