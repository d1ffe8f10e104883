//! Finding a refund at Flutterwave: by its id when payorch learned one,
//! otherwise by searching the newest [`REFUND_PAGES`] pages of
//! `GET /v3/refunds` for the transaction's id and payorch's refund id (which
//! travels in `comments`). A search that ends before the last page fails
//! (`Unavailable`) rather than answer "none": "none" would fail a refund
//! that may exist.

use std::time::Instant;

use uuid::Uuid;

use super::wire::{RefundData, envelope, envelope_data};
use crate::provider::{
    ProviderError, ProviderRefund,
    transport::{Retry, Transport},
};

/// How many pages of refunds a search without the provider's id reads.
pub const REFUND_PAGES: u32 = 10;

/// The refund Flutterwave knows by `id` (`GET /v3/refunds/{id}`).
pub(super) async fn by_id(
    transport: &Transport,
    id: &str,
) -> Result<ProviderRefund, ProviderError> {
    let url = transport.endpoint(&["v3", "refunds", id]);
    let data: RefundData = transport
        .call(
            "find_refund",
            Retry::Freely,
            |http| http.get(url.clone()),
            envelope_data::<RefundData>,
        )
        .await?;
    Ok(data.into_refund())
}

/// payorch's refund `refund_id` of Flutterwave transaction `transaction`,
/// searched page by page before `deadline`.
pub(super) async fn search(
    transport: &Transport,
    deadline: Instant,
    transaction: i64,
    refund_id: Uuid,
) -> Result<Option<ProviderRefund>, ProviderError> {
    let ours = refund_id.to_string();
    for page in 1..=REFUND_PAGES {
        let mut url = transport.endpoint(&["v3", "refunds"]);
        url.query_pairs_mut().append_pair("page", &page.to_string());
        let (refunds, meta): (Vec<RefundData>, _) = transport
            .call_until(
                deadline,
                "find_refund",
                Retry::Freely,
                |http| http.get(url.clone()),
                envelope::<Vec<RefundData>>,
            )
            .await?;
        let last = refunds.is_empty() || is_last_page(meta.as_ref(), page);
        let is_ours = |r: &RefundData| {
            r.note() == Some(ours.as_str()) && r.transaction() == Some(transaction)
        };
        if let Some(found) = refunds.into_iter().find(is_ours) {
            return Ok(Some(found.into_refund()));
        }
        if last {
            return Ok(None);
        }
    }
    Err(ProviderError::Unavailable(format!(
        "refund {refund_id} not among the newest {REFUND_PAGES} pages of refunds"
    )))
}

/// Whether `meta.page_info` says `page` is the last one (no paging
/// information: a single page).
fn is_last_page(meta: Option<&serde_json::Value>, page: u32) -> bool {
    meta.and_then(|m| m.pointer("/page_info/total_pages"))
        .and_then(serde_json::Value::as_u64)
        .is_none_or(|total| u64::from(page) >= total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_ends_on_the_last_page() {
        let meta = serde_json::json!({
            "page_info": {"total": 43, "current_page": 1, "total_pages": 3}
        });
        assert!(!is_last_page(Some(&meta), 1));
        assert!(is_last_page(Some(&meta), 3));
        assert!(is_last_page(None, 1));
    }
}
