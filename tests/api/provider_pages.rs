//! The connectors' paged reads against the sandbox, in both dialects,
//! calling the clients directly: a refund look-up reads every page of the
//! transaction's refunds (and only that transaction's), and a listing
//! returns every transaction of a window — across pages, within its bounds
//! exactly, each attempt of a Flutterwave checkout — and says how many
//! provider calls it took. A provider whose pages never end is given up on.

use std::time::Duration;

use chrono::{DateTime, Utc};
use payorch::{
    config::{SANDBOX_SECRET_KEY, Secret},
    domain::Reference,
    provider::{
        ChargeStatus, ListedTransaction, MAX_REFUND_PAGES, PaymentProvider, ProviderError,
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

/// Waits a little, so instants taken either side differ from every
/// transaction's date.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

fn references(listed: &[ListedTransaction]) -> Vec<&str> {
    listed.iter().map(|tx| tx.reference.as_str()).collect()
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

/// Opens `count` Paystack transactions named `{prefix}-{n}`.
async fn paystack_transactions(sandbox: &Sandbox, prefix: &str, count: usize) -> Vec<String> {
    let mut opened = Vec::new();
    for n in 0..count {
        let reference = format!("{prefix}-{n:03}");
        let (status, body) = sandbox.paystack_initialize(&reference).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        opened.push(reference);
    }
    opened
}

#[tokio::test]
async fn paystack_lists_every_transaction_of_a_window_across_pages() {
    let sandbox = Sandbox::start().await;
    let client = paystack_client(&sandbox);
    let early = paystack_transactions(&sandbox, "early", 3).await;
    tick().await;
    let from = Utc::now();
    let count = 2 * paystack::PER_PAGE as usize + 5;
    let inside = paystack_transactions(&sandbox, "in", count).await;
    sandbox.pay("in-000", "paystack").await;
    let (status, _) = sandbox
        .post(
            "/_control/transactions/in-001/outcome",
            json!({"status": "failed", "notify": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let until = Utc::now();
    tick().await;
    let late = paystack_transactions(&sandbox, "late", 3).await;

    let calls_before = stats(&sandbox, "paystack").await["list_calls"]
        .as_u64()
        .unwrap();
    let listing = client.list_transactions(from, until).await.unwrap();
    let calls = stats(&sandbox, "paystack").await["list_calls"]
        .as_u64()
        .unwrap()
        - calls_before;
    assert_eq!(
        listing.pages,
        3,
        "{count} rows, {} a page",
        paystack::PER_PAGE
    );
    assert_eq!(
        u64::from(listing.pages),
        calls,
        "each page one provider call"
    );
    let mut listed = references(&listing.transactions);
    listed.sort_unstable();
    assert_eq!(listed, inside, "all of them, each once, nothing outside");
    for outside in early.iter().chain(&late) {
        assert!(!listed.contains(&outside.as_str()), "{outside}");
    }

    let row = |reference: &str| {
        listing
            .transactions
            .iter()
            .find(|tx| tx.reference == reference)
            .unwrap()
            .clone()
    };
    let paid = row("in-000");
    assert_eq!(paid.status, ChargeStatus::Succeeded);
    assert_eq!(paid.status_word, "success");
    assert_eq!((paid.amount, paid.currency.as_str()), (Some(5000), "NGN"));
    assert!(paid.paid_at.is_some() && paid.provider_transaction_id.is_some());
    let created = paid.created_at.unwrap();
    assert!(from <= created && created < until);
    assert_eq!(row("in-001").status, ChargeStatus::Failed);
    assert_eq!(row("in-002").status, ChargeStatus::Pending);
    assert_eq!(row("in-002").paid_at, None);
    let newest_first: Vec<DateTime<Utc>> = listing
        .transactions
        .iter()
        .map(|tx| tx.created_at.unwrap())
        .collect();
    assert!(newest_first.windows(2).all(|w| w[0] >= w[1]));

    // The window's bounds: the start included, the end not.
    let first = row("in-000").created_at.unwrap();
    let last = row(&format!("in-{:03}", count - 1)).created_at.unwrap();
    let exact = client.list_transactions(first, last).await.unwrap();
    assert_eq!(exact.transactions.len(), count - 1);
    assert!(exact.transactions.iter().any(|tx| tx.reference == "in-000"));
    assert!(!references(&exact.transactions).contains(&format!("in-{:03}", count - 1).as_str()));
    let empty = client.list_transactions(until, from).await.unwrap();
    assert_eq!((empty.transactions.len(), empty.pages), (0, 0), "no window");
}

/// Opens `count` Flutterwave checkouts named `{prefix}-{n}`.
async fn flutterwave_checkouts(sandbox: &Sandbox, prefix: &str, count: usize) -> Vec<String> {
    let mut opened = Vec::new();
    for n in 0..count {
        let reference = format!("{prefix}-{n:03}");
        let (status, body) = sandbox.flutterwave_initialize(&reference).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        opened.push(reference);
    }
    opened
}

#[tokio::test]
async fn flutterwave_lists_every_transaction_of_a_window_across_pages() {
    let sandbox = Sandbox::start().await;
    let client = flutterwave_client(&sandbox);
    // Flutterwave filters by day: these share the window's day, and only
    // payorch's own filter leaves them out.
    let early = flutterwave_checkouts(&sandbox, "early", 3).await;
    tick().await;
    let from = Utc::now();
    let inside = flutterwave_checkouts(&sandbox, "in", 25).await;
    sandbox.pay("in-000", "flutterwave").await;
    let until = Utc::now();
    tick().await;
    let late = flutterwave_checkouts(&sandbox, "late", 3).await;
    sandbox.pay("late-000", "flutterwave").await;

    let listing = client.list_transactions(from, until).await.unwrap();
    // The provider filters by day: all 31 checkouts of the day, 10 a page.
    assert_eq!(listing.pages, 4);
    let mut listed = references(&listing.transactions);
    listed.sort_unstable();
    assert_eq!(listed, inside);
    for outside in early.iter().chain(&late) {
        assert!(!listed.contains(&outside.as_str()), "{outside}");
    }
    let paid = listing
        .transactions
        .iter()
        .find(|tx| tx.reference == "in-000")
        .unwrap();
    assert_eq!(paid.status, ChargeStatus::Succeeded);
    assert_eq!(paid.status_word, "successful");
    assert_eq!(paid.amount, Some(5000), "minor units");
    assert_eq!(
        paid.provider_transaction_id,
        Some(sandbox.flutterwave_id("in-000").await)
    );
    let unpaid = listing
        .transactions
        .iter()
        .find(|tx| tx.reference == "in-001")
        .unwrap();
    assert_eq!(unpaid.status, ChargeStatus::Pending);

    // An attempt is dated when it was made: a checkout opened before the
    // window and paid after it is in neither.
    let later = client.list_transactions(until, Utc::now()).await.unwrap();
    assert_eq!(
        references(&later.transactions),
        ["late-000", "late-002", "late-001"]
    );
}

#[tokio::test]
async fn a_flutterwave_checkout_declined_then_paid_lists_both_attempts() {
    let sandbox = Sandbox::start().await;
    let client = flutterwave_client(&sandbox);
    let from = Utc::now();
    sandbox.flutterwave_initialize("attempts-f1").await;
    let (status, declined) = sandbox
        .post(
            "/_control/transactions/attempts-f1/outcome",
            json!({"status": "failed", "attempt_only": true, "notify": false,
                   "provider": "flutterwave"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{declined}");
    let declined_id = declined["id"].as_i64().unwrap();
    tick().await;
    sandbox.pay("attempts-f1", "flutterwave").await;
    let paid_id = sandbox.flutterwave_id("attempts-f1").await;
    assert_ne!(paid_id, declined_id);

    let listing = client.list_transactions(from, Utc::now()).await.unwrap();
    let attempts: Vec<(Option<i64>, ChargeStatus, &str)> = listing
        .transactions
        .iter()
        .map(|tx| {
            assert_eq!(tx.reference, "attempts-f1");
            (
                tx.provider_transaction_id,
                tx.status,
                tx.status_word.as_str(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            (Some(paid_id), ChargeStatus::Succeeded, "successful"),
            (Some(declined_id), ChargeStatus::Declined, "failed"),
        ],
        "each attempt, newest first"
    );
    assert_eq!(listing.pages, 1);
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
