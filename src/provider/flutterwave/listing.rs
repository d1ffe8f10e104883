//! Every Flutterwave transaction of a window: `GET
//! /v3/transactions?from=&to=&page=`, 10 a page (it takes no page size),
//! newest first, `meta.page_info.{current_page, total_pages}`. Each row is
//! one transaction id — one attempt of a checkout — so a checkout declined
//! then paid lists both, each with its own status.
//!
//! `from` and `to` are days (`YYYY-MM-DD`, both included) in a time zone the
//! documentation does not name; payorch asks for one day more on each side
//! and keeps exactly `[from, until)` by each row's `created_at`. That costs
//! a few pages and cannot miss a transaction whatever the provider's day.
//!
//! Source: <https://flutterwaveinc.mintlify.app/api-reference/transactions/get-multiple-transactions>.

use chrono::{DateTime, Days, Utc};

use super::{
    amounts::amount_minor,
    refunds::page_count,
    wire::{TransactionData, charge_status, envelope, id_number},
};
use crate::provider::{
    ListedTransaction, Listing, MAX_LISTING_PAGES, ProviderError,
    listing::{Paging, dedup, in_window, timestamp},
    transport::{Retry, Transport},
};

/// Every transaction (attempt) opened in `[from, until)`, all pages.
pub(super) async fn transactions(
    transport: &Transport,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Listing, ProviderError> {
    if until <= from {
        return Ok(Listing::default());
    }
    let (first_day, last_day) = asked_days(from, until);
    let mut paging = Paging::new("flutterwave transactions", MAX_LISTING_PAGES);
    let mut transactions = Vec::new();
    loop {
        let page = paging.next()?;
        let mut url = transport.endpoint(&["v3", "transactions"]);
        url.query_pairs_mut()
            .append_pair("from", &first_day)
            .append_pair("to", &last_day)
            .append_pair("page", &page.to_string());
        let (rows, meta): (Vec<TransactionData>, _) = transport
            .call(
                "list_transactions",
                Retry::Freely,
                |http| http.get(url.clone()),
                envelope::<Vec<TransactionData>>,
            )
            .await?;
        let last = paging.was_last(rows.len(), page_count(meta.as_ref()));
        transactions.extend(
            rows.into_iter()
                .map(listed)
                .filter(|tx| in_window(tx.created_at, from, until)),
        );
        if last {
            break;
        }
    }
    dedup(&mut transactions);
    Ok(Listing {
        transactions,
        pages: paging.read(),
    })
}

/// The days Flutterwave is asked for: the window's, and one more each side.
fn asked_days(from: DateTime<Utc>, until: DateTime<Utc>) -> (String, String) {
    let day = |at: DateTime<Utc>, shift: fn(DateTime<Utc>) -> Option<DateTime<Utc>>| {
        shift(at).unwrap_or(at).format("%Y-%m-%d").to_string()
    };
    (
        day(from, |at| at.checked_sub_days(Days::new(1))),
        day(until, |at| at.checked_add_days(Days::new(1))),
    )
}

/// A listed row in payorch's words: an amount that cannot be read exactly
/// is `None`, whatever the status.
fn listed(data: TransactionData) -> ListedTransaction {
    ListedTransaction {
        provider_transaction_id: data.id.as_ref().and_then(id_number),
        status: charge_status(&data.status),
        amount: amount_minor(&data.amount, &data.currency).ok(),
        created_at: timestamp(data.created_at.as_deref()),
        paid_at: None,
        reference: data.tx_ref.unwrap_or_default(),
        status_word: data.status,
        currency: data.currency,
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;
    use crate::provider::ChargeStatus;

    fn at(text: &str) -> DateTime<Utc> {
        timestamp(Some(text)).unwrap()
    }

    #[test]
    fn a_listing_page_is_read_with_its_paging() {
        // As Flutterwave documents a listed transaction, trimmed.
        let body = br#"{"status":"success","message":"Transactions fetched",
            "meta":{"page_info":{"total":158,"current_page":1,"total_pages":16}},
            "data":[{"id":1163077,"tx_ref":"akhlm-pstmn-23452",
              "flw_ref":"FLW-M03K-781621ccfe976c03515bcd07a39f3db8","amount":30300,
              "currency":"NGN","charged_amount":30300,"app_fee":11741.9,
              "processor_response":"Approved","status":"successful","payment_type":"card",
              "created_at":"2020-03-11T19:33:20.000Z","amount_settled":18558.1,
              "customer":{"id":252759,"email":"user@example.com"},"account_id":73362},
             {"id":"1163078","tx_ref":"r-2","amount":"1500.75","currency":"NGN",
              "status":"failed","created_at":"2020-03-11T19:30:00.000Z"},
             {"id":1163079,"tx_ref":"r-3","amount":10.5,"currency":"XOF",
              "status":"successful","created_at":"2020-03-11T19:20:00.000Z"}]}"#;
        let (rows, meta): (Vec<TransactionData>, _) = envelope(StatusCode::OK, body).unwrap();
        assert_eq!(
            page_count(meta.as_ref()),
            crate::provider::listing::PageCount::Of(16)
        );
        let listed: Vec<ListedTransaction> = rows.into_iter().map(listed).collect();
        assert_eq!(
            listed[0],
            ListedTransaction {
                reference: "akhlm-pstmn-23452".into(),
                provider_transaction_id: Some(1163077),
                status: ChargeStatus::Succeeded,
                status_word: "successful".into(),
                amount: Some(3_030_000),
                currency: "NGN".into(),
                paid_at: None,
                created_at: Some(at("2020-03-11T19:33:20Z")),
            }
        );
        assert_eq!(listed[1].provider_transaction_id, Some(1163078));
        assert_eq!(listed[1].status, ChargeStatus::Declined);
        assert_eq!(listed[1].amount, Some(150075), "exact, from text");
        assert_eq!(listed[2].amount, None, "XOF has no decimals: never guessed");
    }

    #[test]
    fn the_provider_is_asked_for_a_day_more_each_side() {
        assert_eq!(
            asked_days(at("2026-11-02T00:00:00Z"), at("2026-11-03T00:00:00Z")),
            ("2026-11-01".to_owned(), "2026-11-04".to_owned())
        );
        assert_eq!(
            asked_days(at("2026-12-31T23:30:00Z"), at("2026-12-31T23:45:00Z")),
            ("2026-12-30".to_owned(), "2027-01-01".to_owned())
        );
    }
}
