//! The refund listings of both dialects, paged as the real APIs page them,
//! newest first: Paystack's `GET /refund?transaction=&page=&perPage=` (the
//! transaction by reference or id, as `POST /refund` takes it; 50 a page
//! unless `perPage` says otherwise, at most 100; `meta: {total, skipped,
//! perPage, page, pageCount}`) and Flutterwave's `GET
//! /v3/refunds?id=&page=` (`id` the refunded transaction's; 20 a page;
//! `meta.page_info`). Without a filter they list every refund of the
//! dialect. A `not_found` fault shows none: one empty last page.

use std::cmp::Reverse;

use poem::{
    IntoResponse, Request, Response, handler,
    http::StatusCode,
    web::{Data, Json, Query},
};
use serde::{Deserialize, Serialize};
use serde_json::{json, value::RawValue};

use super::{
    Sandbox, flutterwave,
    listing::{flutterwave_meta, page_number, page_of, paystack_meta, per_page},
    state::{Operation, SandboxRefund},
};

/// Refunds a Flutterwave `GET /v3/refunds` page holds (it takes no size).
const FLUTTERWAVE_PAGE_SIZE: usize = 20;

impl Sandbox {
    /// This dialect's refunds of the transaction `transaction` names (its
    /// reference or id; all refunds without it), newest first; none when
    /// the look-up is to miss.
    fn refunds_of(&self, transaction: Option<&str>, miss: bool) -> Vec<SandboxRefund> {
        if miss {
            return Vec::new();
        }
        let mut refunds: Vec<SandboxRefund> = self
            .lock()
            .refunds
            .values()
            .filter(|r| {
                transaction.is_none_or(|named| {
                    named == r.transaction_reference || named == r.transaction_id.to_string()
                })
            })
            .cloned()
            .collect();
        refunds.sort_by_key(|r| Reverse(r.id));
        refunds
    }
}

#[derive(Deserialize)]
pub struct PaystackQuery {
    transaction: Option<String>,
    reference: Option<String>,
    page: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<String>,
}

/// Paystack's `GET /refund`.
#[handler]
pub async fn paystack_refunds(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Query(query): Query<PaystackQuery>,
) -> Response {
    let admission = match sandbox.admit(req, Operation::RefundLookup).await {
        Ok(admission) => admission,
        Err(response) => return response,
    };
    let paging = page_number(query.page.as_deref())
        .and_then(|page| Ok((page, per_page(query.per_page.as_deref())?)));
    let (page, size) = match paging {
        Ok(paging) => paging,
        Err(message) => return sandbox.refuse(StatusCode::BAD_REQUEST, message),
    };
    let named = query.transaction.as_deref().or(query.reference.as_deref());
    let refunds = sandbox.refunds_of(named, admission.misses());
    let total = refunds.len();
    let data: Vec<serde_json::Value> = page_of(refunds.iter().map(SandboxRefund::view), page, size);
    Json(json!({
        "status": true,
        "message": "Refunds retrieved",
        "data": data,
        "meta": paystack_meta(total, page, size),
    }))
    .into_response()
}

#[derive(Deserialize)]
pub struct FlutterwaveQuery {
    id: Option<String>,
    page: Option<String>,
}

/// A refund as Flutterwave's `GET /v3/refunds` lists it.
#[derive(Serialize)]
struct ListedRefund<'a> {
    id: i64,
    transaction_id: i64,
    flw_ref: String,
    amount_refunded: Box<RawValue>,
    currency: &'a str,
    status: &'static str,
    comment: Option<&'a str>,
}

impl<'a> ListedRefund<'a> {
    fn of(refund: &'a SandboxRefund) -> ListedRefund<'a> {
        ListedRefund {
            id: refund.id,
            transaction_id: refund.transaction_id,
            flw_ref: format!("URF-SANDBOX-{}", refund.id),
            amount_refunded: flutterwave::major(refund.amount, &refund.currency),
            currency: &refund.currency,
            status: flutterwave::refund_word(&refund.status),
            comment: refund.merchant_note.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct FlutterwavePage<'a> {
    status: &'static str,
    message: &'static str,
    data: Vec<ListedRefund<'a>>,
    meta: serde_json::Value,
}

/// Flutterwave's `GET /v3/refunds`.
#[handler]
pub async fn flutterwave_refunds(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Query(query): Query<FlutterwaveQuery>,
) -> Response {
    let admission = match sandbox.admit(req, Operation::RefundLookup).await {
        Ok(admission) => admission,
        Err(response) => return response,
    };
    let page = match page_number(query.page.as_deref()) {
        Ok(page) => page,
        Err(message) => return sandbox.refuse(StatusCode::BAD_REQUEST, message),
    };
    let transaction = query.id.as_deref().filter(|id| !id.is_empty());
    let refunds = sandbox.refunds_of(transaction, admission.misses());
    Json(FlutterwavePage {
        status: "success",
        message: "Refunds fetched",
        data: page_of(
            refunds.iter().map(ListedRefund::of),
            page,
            FLUTTERWAVE_PAGE_SIZE,
        ),
        meta: flutterwave_meta(refunds.len(), page, FLUTTERWAVE_PAGE_SIZE),
    })
    .into_response()
}
