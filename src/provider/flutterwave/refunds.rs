//! Finding a refund at Flutterwave: by its id when payorch learned one
//! (`GET /v3/refunds/{id}`), otherwise among the refunds of the
//! transaction (`GET /v3/refunds?id={transaction id}&page=N`, 20 a page,
//! `meta.page_info.{current_page, total_pages}`), every page of them up to
//! [`MAX_REFUND_PAGES`], for the row whose `comment` is payorch's refund id
//! and whose `transaction_id` is the transaction's. A search cut short fails
//! (`Unavailable`) rather than answer "none": "none" would fail a refund
//! that may exist.

use uuid::Uuid;

use super::wire::{RefundData, envelope, envelope_data};
use crate::provider::{
    MAX_REFUND_PAGES, ProviderError, ProviderRefund,
    listing::{PageCount, Paging},
    transport::{Retry, Transport},
};

/// The refund Flutterwave knows by `id` (`GET /v3/refunds/{id}`), if it can
/// be payorch's `refund_id`: one whose note is another's is not.
pub(super) async fn by_id(
    transport: &Transport,
    id: &str,
    refund_id: Uuid,
) -> Result<Option<ProviderRefund>, ProviderError> {
    let url = transport.endpoint(&["v3", "refunds", id]);
    let data: RefundData = transport
        .call(
            "find_refund",
            Retry::Freely,
            |http| http.get(url.clone()),
            envelope_data::<RefundData>,
        )
        .await?;
    let ours = refund_id.to_string();
    if data.note().is_some_and(|note| note != ours) {
        tracing::warn!(%refund_id, provider_refund_id = id, "the provider's refund by that id is another one");
        return Ok(None);
    }
    Ok(Some(data.into_refund()))
}

/// payorch's refund `refund_id` of Flutterwave transaction `transaction`,
/// searched page by page, each page within its own timeout.
pub(super) async fn search(
    transport: &Transport,
    transaction: i64,
    refund_id: Uuid,
) -> Result<Option<ProviderRefund>, ProviderError> {
    let ours = refund_id.to_string();
    let mut paging = Paging::new("flutterwave refunds", MAX_REFUND_PAGES);
    loop {
        let page = paging.next()?;
        let mut url = transport.endpoint(&["v3", "refunds"]);
        url.query_pairs_mut()
            .append_pair("id", &transaction.to_string())
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
        if let Some(found) = refunds.into_iter().find(|r| r.is(transaction, &ours)) {
            return Ok(Some(found.into_refund()));
        }
        if last {
            return Ok(None);
        }
    }
}

/// `meta.page_info.total_pages`, where the answer has it.
pub(super) fn page_count(meta: Option<&serde_json::Value>) -> PageCount {
    meta.and_then(|m| m.pointer("/page_info/total_pages"))
        .and_then(serde_json::Value::as_u64)
        .map_or(PageCount::Unknown, PageCount::Of)
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;

    #[test]
    fn a_refund_page_is_read_with_its_paging() {
        // The fields Flutterwave documents for `GET /v3/refunds`.
        let body = br#"{"status":"success","message":"Refunds fetched",
            "meta":{"page_info":{"total":43,"current_page":1,"total_pages":3,"page_size":20}},
            "data":[{"id":75923,"amount_refunded":6900,"status":"completed",
              "flw_ref":"URF_1577867664541_3572735","comment":"ours","settlement_id":"NEW",
              "meta":"{}","created_at":"2020-01-01T08:34:24.000Z","account_id":17321,
              "transaction_id":1004}]}"#;
        let (refunds, meta): (Vec<RefundData>, _) = envelope(StatusCode::OK, body).unwrap();
        assert_eq!(page_count(meta.as_ref()), PageCount::Of(3));
        assert_eq!(page_count(None), PageCount::Unknown);
        assert!(refunds[0].is(1004, "ours"));
        assert!(!refunds[0].is(1005, "ours"), "another transaction's");
        assert!(!refunds[0].is(1004, "theirs"), "another refund");
    }
}
