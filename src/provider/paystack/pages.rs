//! Paystack's paged reads: a transaction's refunds (`GET
//! /refund?transaction=&perPage=&page=`) searched for payorch's. Offset-paged
//! with `page` (from 1) and `perPage`, answering `meta: {total, skipped,
//! perPage, page, pageCount}`; pages are read until `pageCount` (or an
//! empty page, when an answer has no `meta`), at most [`MAX_REFUND_PAGES`].
//! Each page has the connector's whole request timeout.
//!
//! Sources: <https://paystack.com/docs/api/pagination/>,
//! <https://paystack.com/docs/api/refund/#list>.
//!
//! Assumption where the documentation is loose: the refund list's filter is
//! `transaction` (the reference or id, as `POST /refund` takes it). A row
//! is payorch's when its `merchant_note` is payorch's refund id and it
//! names no other transaction (`transaction_reference`, or
//! `transaction.reference`).

use super::{RefundData, envelope};
use crate::provider::{
    MAX_REFUND_PAGES, ProviderError, ProviderRefund,
    listing::{PageCount, Paging},
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

/// `meta.pageCount`, where the answer has it.
fn page_count(meta: Option<&serde_json::Value>) -> PageCount {
    meta.and_then(|m| m.get("pageCount"))
        .and_then(serde_json::Value::as_u64)
        .map_or(PageCount::Unknown, PageCount::Of)
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;

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
