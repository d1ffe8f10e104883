//! Paystack's paged reads: a transaction's refunds (`GET
//! /refund?transaction=&perPage=&page=`) searched for payorch's, and every
//! transaction of a window (`GET /transaction?from=&to=&perPage=&page=`).
//! Both are offset-paged with `page` (from 1) and `perPage`, and answer
//! `meta: {total, skipped, perPage, page, pageCount}`; pages are read until
//! `pageCount` (or an empty page, when an answer has no `meta`), at most
//! [`MAX_REFUND_PAGES`] or [`MAX_LISTING_PAGES`]. Each page has the
//! connector's whole request timeout.
//!
//! Sources: <https://paystack.com/docs/api/pagination/>,
//! <https://paystack.com/docs/api/refund/#list>,
//! <https://paystack.com/docs/api/transaction/#list>.
//!
//! Assumptions where the documentation is loose:
//! 1. The refund list's filter is `transaction` (the reference or id, as
//!    `POST /refund` takes it). A row is payorch's when its
//!    `merchant_note` is payorch's refund id and it names no other
//!    transaction (`transaction_reference`, or `transaction.reference`).
//! 2. `from` and `to` take timestamps, both ends included; payorch sends the
//!    window widened to whole seconds and keeps exactly `[from, until)` by
//!    each row's `created_at` (`createdAt` where only that is given).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Deserialize;

use super::{RefundData, charge_status, envelope};
use crate::provider::{
    ListedTransaction, Listing, MAX_LISTING_PAGES, MAX_REFUND_PAGES, ProviderError, ProviderRefund,
    listing::{PageCount, Paging, dedup, in_window, timestamp},
    transport::{Retry, Transport},
};

/// Rows a page is asked to hold: Paystack's largest.
pub const PER_PAGE: u32 = 100;

/// payorch's refund `ours` (its id, the note it was sent with) of the
/// transaction `reference`, searched through every page of its refunds.
pub(super) async fn find_refund(
    transport: &Transport,
    reference: &str,
    ours: &str,
) -> Result<Option<ProviderRefund>, ProviderError> {
    let mut paging = Paging::new("paystack refunds", MAX_REFUND_PAGES);
    loop {
        let page = paging.next()?;
        let mut url = transport.endpoint(&["refund"]);
        url.query_pairs_mut()
            .append_pair("transaction", reference)
            .append_pair("perPage", &PER_PAGE.to_string())
            .append_pair("page", &page.to_string());
        let (refunds, meta): (Vec<RefundData>, _) = transport
            .call(
                "find_refund",
                Retry::Freely,
                |http| http.get(url.clone()),
                envelope::<Vec<RefundData>>,
            )
            .await?;
        let last = paging.was_last(refunds.len(), page_count(meta.as_ref()));
        if let Some(found) = refunds.into_iter().find(|r| r.is(reference, ours)) {
            return Ok(Some(found.into_refund()));
        }
        if last {
            return Ok(None);
        }
    }
}

/// Every transaction opened in `[from, until)`, all pages.
pub(super) async fn list_transactions(
    transport: &Transport,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Listing, ProviderError> {
    if until <= from {
        return Ok(Listing::default());
    }
    let (after, before) = asked_bounds(from, until);
    let mut paging = Paging::new("paystack transactions", MAX_LISTING_PAGES);
    let mut transactions = Vec::new();
    loop {
        let page = paging.next()?;
        let mut url = transport.endpoint(&["transaction"]);
        url.query_pairs_mut()
            .append_pair("from", &after)
            .append_pair("to", &before)
            .append_pair("perPage", &PER_PAGE.to_string())
            .append_pair("page", &page.to_string());
        let (rows, meta): (Vec<ListedData>, _) = transport
            .call(
                "list_transactions",
                Retry::Freely,
                |http| http.get(url.clone()),
                envelope::<Vec<ListedData>>,
            )
            .await?;
        let last = paging.was_last(rows.len(), page_count(meta.as_ref()));
        transactions.extend(
            rows.into_iter()
                .map(ListedData::listed)
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

/// `meta.pageCount`, where the answer has it.
fn page_count(meta: Option<&serde_json::Value>) -> PageCount {
    meta.and_then(|m| m.get("pageCount"))
        .and_then(serde_json::Value::as_u64)
        .map_or(PageCount::Unknown, PageCount::Of)
}

/// The `from` and `to` Paystack is asked for: the window widened to whole
/// seconds, `from` down and `until` up.
fn asked_bounds(from: DateTime<Utc>, until: DateTime<Utc>) -> (String, String) {
    let second = TimeDelta::seconds(1);
    let floor = |at: DateTime<Utc>| at.duration_trunc(second).unwrap_or(at);
    let ceil = |at: DateTime<Utc>| {
        let down = floor(at);
        if down == at { at } else { down + second }
    };
    let text = |at: DateTime<Utc>| at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    (text(floor(from)), text(ceil(until)))
}

/// A transaction as `GET /transaction` lists it.
#[derive(Deserialize)]
struct ListedData {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    reference: String,
    status: String,
    amount: i64,
    currency: String,
    #[serde(default)]
    paid_at: Option<String>,
    #[serde(default, rename = "paidAt")]
    paid_at_camel: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default, rename = "createdAt")]
    created_at_camel: Option<String>,
}

impl ListedData {
    fn listed(self) -> ListedTransaction {
        ListedTransaction {
            provider_transaction_id: self.id,
            status: charge_status(&self.status),
            status_word: self.status,
            amount: Some(self.amount),
            currency: self.currency,
            paid_at: timestamp(self.paid_at.as_deref().or(self.paid_at_camel.as_deref())),
            created_at: timestamp(
                self.created_at
                    .as_deref()
                    .or(self.created_at_camel.as_deref()),
            ),
            reference: self.reference,
        }
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
        // As Paystack documents a listed transaction, trimmed.
        let body = br#"{"status":true,"message":"Transactions retrieved","data":[
            {"id":4099260516,"domain":"test","status":"success","reference":"re4lyvq3s3",
             "amount":40333,"message":null,"gateway_response":"Successful",
             "paid_at":"2024-08-22T09:15:02.000Z","created_at":"2024-08-22T09:14:24.000Z",
             "channel":"card","currency":"NGN","paidAt":"2024-08-22T09:15:02.000Z",
             "createdAt":"2024-08-22T09:14:24.000Z"},
            {"id":4099260517,"status":"abandoned","reference":"r-2","amount":100,
             "currency":"NGN","paid_at":null,"createdAt":"2024-08-22T09:10:00.000Z"}],
            "meta":{"total":7316,"skipped":0,"perPage":50,"page":1,"pageCount":147}}"#;
        let (rows, meta): (Vec<ListedData>, _) = envelope(StatusCode::OK, body).unwrap();
        assert_eq!(page_count(meta.as_ref()), PageCount::Of(147));
        let listed: Vec<ListedTransaction> = rows.into_iter().map(ListedData::listed).collect();
        assert_eq!(
            listed[0],
            ListedTransaction {
                reference: "re4lyvq3s3".into(),
                provider_transaction_id: Some(4099260516),
                status: ChargeStatus::Succeeded,
                status_word: "success".into(),
                amount: Some(40333),
                currency: "NGN".into(),
                paid_at: Some(at("2024-08-22T09:15:02Z")),
                created_at: Some(at("2024-08-22T09:14:24Z")),
            }
        );
        assert_eq!(listed[1].status, ChargeStatus::Pending);
        assert_eq!(listed[1].paid_at, None);
        assert_eq!(listed[1].created_at, Some(at("2024-08-22T09:10:00Z")));
        assert_eq!(page_count(None), PageCount::Unknown);
    }

    #[test]
    fn the_provider_is_asked_for_whole_seconds_around_the_window() {
        let (from, to) = asked_bounds(
            at("2026-11-02T10:00:00.750Z"),
            at("2026-11-03T10:00:00.250Z"),
        );
        assert_eq!(from, "2026-11-02T10:00:00Z");
        assert_eq!(to, "2026-11-03T10:00:01Z");
        let (_, whole) = asked_bounds(at("2026-11-02T10:00:00Z"), at("2026-11-03T10:00:00Z"));
        assert_eq!(whole, "2026-11-03T10:00:00Z");
    }

    #[test]
    fn refund_pages_say_how_many_there_are() {
        let body = br#"{"status":true,"message":"Refunds retrieved","data":[],
            "meta":{"total":101,"skipped":100,"perPage":100,"page":2,"pageCount":2}}"#;
        let (refunds, meta): (Vec<RefundData>, _) = envelope(StatusCode::OK, body).unwrap();
        assert!(refunds.is_empty());
        assert_eq!(page_count(meta.as_ref()), PageCount::Of(2));
        assert_eq!(page_count(None), PageCount::Unknown);
    }

    #[test]
    fn a_refund_is_ours_by_its_note_and_transaction() {
        let refund = |body: &str| -> RefundData { serde_json::from_str(body).unwrap() };
        let listed =
            refund(r#"{"id":1,"status":"pending","merchant_note":"ours","transaction":77}"#);
        assert!(listed.is("r-1", "ours"), "a bare id says nothing");
        assert!(!listed.is("r-1", "theirs"));
        let other = refund(
            r#"{"id":1,"status":"pending","merchant_note":"ours","transaction_reference":"r-2"}"#,
        );
        assert!(!other.is("r-1", "ours") && !other.may_be("r-1", "ours"));
        let created =
            refund(r#"{"id":1,"status":"pending","transaction":{"id":77,"reference":"r-1"}}"#);
        assert_eq!(created.transaction_reference(), Some("r-1"));
        assert!(!created.is("r-1", "ours"), "a list row must carry our note");
        assert!(
            created.may_be("r-1", "ours"),
            "fetched by id, no note is no objection"
        );
        assert!(!created.may_be("r-2", "ours"));
    }
}
