//! Transactions listed by the date they were opened, in both dialects, as
//! settlement reconciliation reads them: Paystack's `GET
//! /transaction?from=&to=&page=&perPage=` (50 a page unless `perPage` says
//! otherwise, at most 100; `meta: {total, skipped, perPage, page,
//! pageCount}`) and Flutterwave's `GET /v3/transactions?from=&to=&page=`
//! (10 a page, as Flutterwave's; `meta.page_info`), newest first. `from`
//! and `to` are dates (`2026-11-02`) or RFC 3339 timestamps, both ends
//! included (a date as `to` includes that whole day, in UTC); either may be
//! left out. A Paystack row is a transaction, dated when it was opened; a
//! Flutterwave row is one transaction id — each attempt on a checkout,
//! dated when it was made, or the checkout itself before any attempt — so
//! a checkout declined then paid lists both attempts, as Flutterwave does.
//! Each row is what verify (by id, for an attempt) reports, plus
//! `created_at`. The paging helpers here serve the refund listings too
//! (`refund_listing.rs`).

use std::cmp::Reverse;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use poem::{
    IntoResponse, Request, Response, handler,
    http::StatusCode,
    web::{Data, Json, Query},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    Sandbox,
    flutterwave::TransactionView,
    state::{Attempt, Operation, Transaction},
};
use crate::provider::routing::ConnectorName;

/// A Paystack page holds this many unless `perPage` says otherwise…
const PAYSTACK_PER_PAGE: usize = 50;
/// …and never more than this.
const MAX_PER_PAGE: usize = 100;
/// A Flutterwave transactions page holds this many (it takes no page size).
const FLUTTERWAVE_PAGE_SIZE: usize = 10;

/// The span a listing covers, both ends included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Window {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

impl Window {
    fn parse(from: Option<&str>, to: Option<&str>) -> Result<Window, &'static str> {
        let from = match from.filter(|s| !s.is_empty()) {
            Some(text) => Some(instant(text, false).ok_or("Invalid from date")?),
            None => None,
        };
        let to = match to.filter(|s| !s.is_empty()) {
            Some(text) => Some(instant(text, true).ok_or("Invalid to date")?),
            None => None,
        };
        Ok(Window { from, to })
    }

    fn holds(&self, at: DateTime<Utc>) -> bool {
        self.from.is_none_or(|from| at >= from) && self.to.is_none_or(|to| at <= to)
    }
}

/// An RFC 3339 timestamp, or a date: its first instant, or with `end` its
/// last.
fn instant(text: &str, end: bool) -> Option<DateTime<Utc>> {
    // An offset's `+` arrives as a space when the caller did not encode it.
    let text = text.trim().replace(' ', "+");
    if let Ok(at) = DateTime::parse_from_rfc3339(&text) {
        return Some(at.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(&text, "%Y-%m-%d").ok()?;
    let time = if end {
        NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999)?
    } else {
        NaiveTime::from_hms_opt(0, 0, 0)?
    };
    Some(date.and_time(time).and_utc())
}

/// A page number from the query: 1 when absent, at least 1.
pub(super) fn page_number(text: Option<&str>) -> Result<usize, &'static str> {
    match text.filter(|s| !s.is_empty()) {
        None => Ok(1),
        Some(text) => text
            .parse::<usize>()
            .map(|n| n.max(1))
            .map_err(|_| "Invalid page"),
    }
}

/// Paystack's `perPage`: [`PAYSTACK_PER_PAGE`] when absent, 1 to 100.
pub(super) fn per_page(text: Option<&str>) -> Result<usize, &'static str> {
    match text.filter(|s| !s.is_empty()) {
        None => Ok(PAYSTACK_PER_PAGE),
        Some(text) => text
            .parse::<usize>()
            .map(|n| n.clamp(1, MAX_PER_PAGE))
            .map_err(|_| "Invalid perPage"),
    }
}

/// Page `page` (from 1) of `size` of `rows`.
pub(super) fn page_of<T>(rows: impl IntoIterator<Item = T>, page: usize, size: usize) -> Vec<T> {
    rows.into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .collect()
}

/// Paystack's paging `meta` of page `page` of `size`, of `total` rows.
pub(super) fn paystack_meta(total: usize, page: usize, size: usize) -> serde_json::Value {
    json!({
        "total": total,
        "skipped": (page - 1).saturating_mul(size),
        "perPage": size,
        "page": page,
        "pageCount": total.div_ceil(size).max(1),
    })
}

/// Flutterwave's paging `meta` of page `page` of `size`, of `total` rows.
pub(super) fn flutterwave_meta(total: usize, page: usize, size: usize) -> serde_json::Value {
    json!({
        "page_info": {
            "total": total,
            "current_page": page,
            "total_pages": total.div_ceil(size).max(1),
            "page_size": size,
        }
    })
}

/// One listed row: a transaction, or one attempt on a Flutterwave checkout.
struct Row {
    created_at: DateTime<Utc>,
    tx: Transaction,
    attempt: Option<Attempt>,
}

impl Sandbox {
    /// Page `page` (from 1) of `size` of the rows dated in `window`, newest
    /// first, and how many there are in all.
    fn list(&self, window: Window, page: usize, size: usize) -> (Vec<Row>, usize) {
        let attempts = self.inner.dialect == ConnectorName::Flutterwave;
        let state = self.lock();
        let mut found: Vec<(DateTime<Utc>, i64, &Transaction, Option<&Attempt>)> = Vec::new();
        for tx in state.transactions.values() {
            if attempts && !tx.attempts.is_empty() {
                found.extend(
                    tx.attempts
                        .iter()
                        .map(|a| (a.created_at, a.id, tx, Some(a))),
                );
            } else {
                found.push((tx.created_at, tx.id, tx, None));
            }
        }
        found.retain(|(at, ..)| window.holds(*at));
        found.sort_by_key(|(at, id, ..)| Reverse((*at, *id)));
        let total = found.len();
        let rows = page_of(found, page, size)
            .into_iter()
            .map(|(created_at, _, tx, attempt)| Row {
                created_at,
                tx: tx.clone(),
                attempt: attempt.cloned(),
            })
            .collect();
        (rows, total)
    }

    /// The window and page of a listing's query, once the call is admitted;
    /// otherwise the answer that ends it.
    async fn listing_of(
        &self,
        req: &Request,
        from: Option<&str>,
        to: Option<&str>,
        page: Option<&str>,
    ) -> Result<(Window, usize), Response> {
        self.admit(req, Operation::List).await?;
        let window =
            Window::parse(from, to).map_err(|m| self.refuse(StatusCode::BAD_REQUEST, m))?;
        let page = page_number(page).map_err(|m| self.refuse(StatusCode::BAD_REQUEST, m))?;
        Ok((window, page))
    }
}

#[derive(Deserialize)]
pub struct PaystackQuery {
    from: Option<String>,
    to: Option<String>,
    page: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<String>,
}

/// Paystack's `GET /transaction`: `{status, message, data, meta: {total,
/// page, perPage, pageCount}}`.
#[handler]
pub async fn paystack_transactions(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Query(query): Query<PaystackQuery>,
) -> Response {
    let (window, page) = match sandbox
        .listing_of(
            req,
            query.from.as_deref(),
            query.to.as_deref(),
            query.page.as_deref(),
        )
        .await
    {
        Ok(listing) => listing,
        Err(response) => return response,
    };
    let per_page = match per_page(query.per_page.as_deref()) {
        Ok(size) => size,
        Err(message) => return sandbox.refuse(StatusCode::BAD_REQUEST, message),
    };
    let (rows, total) = sandbox.list(window, page, per_page);
    let data: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let mut data = row.tx.report();
            data["created_at"] = json!(row.created_at);
            data
        })
        .collect();
    Json(json!({
        "status": true,
        "message": "Transactions retrieved",
        "data": data,
        "meta": paystack_meta(total, page, per_page),
    }))
    .into_response()
}

#[derive(Deserialize)]
pub struct FlutterwaveQuery {
    from: Option<String>,
    to: Option<String>,
    page: Option<String>,
}

/// A transaction as Flutterwave's `GET /v3/transactions` lists it.
#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    view: TransactionView<'a>,
    created_at: DateTime<Utc>,
}

/// Flutterwave's answer, typed so its amounts stay exact decimal text.
#[derive(Serialize)]
struct FlutterwavePage<'a> {
    status: &'static str,
    message: &'static str,
    data: Vec<Listed<'a>>,
    meta: serde_json::Value,
}

/// Flutterwave's `GET /v3/transactions`: `{status, message, data, meta:
/// {page_info: {total, current_page, total_pages}}}`.
#[handler]
pub async fn flutterwave_transactions(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Query(query): Query<FlutterwaveQuery>,
) -> Response {
    let (window, page) = match sandbox
        .listing_of(
            req,
            query.from.as_deref(),
            query.to.as_deref(),
            query.page.as_deref(),
        )
        .await
    {
        Ok(listing) => listing,
        Err(response) => return response,
    };
    let (rows, total) = sandbox.list(window, page, FLUTTERWAVE_PAGE_SIZE);
    let data: Vec<Listed> = rows
        .iter()
        .map(|row| Listed {
            view: match &row.attempt {
                Some(attempt) => TransactionView::of_attempt(&row.tx, attempt),
                None => TransactionView::of(&row.tx),
            },
            created_at: row.created_at,
        })
        .collect();
    Json(FlutterwavePage {
        status: "success",
        message: "Transactions fetched",
        data,
        meta: flutterwave_meta(total, page, FLUTTERWAVE_PAGE_SIZE),
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn bounds_are_dates_or_timestamps() {
        assert_eq!(
            instant("2026-11-02", false),
            Some(at("2026-11-02T00:00:00Z"))
        );
        assert_eq!(
            instant("2026-11-02", true),
            Some(at("2026-11-02T23:59:59.999999999Z"))
        );
        assert_eq!(
            instant("2026-11-02T10:00:00+01:00", false),
            Some(at("2026-11-02T09:00:00Z"))
        );
        assert_eq!(
            instant("2026-11-02T10:00:00 01:00", true),
            Some(at("2026-11-02T09:00:00Z")),
            "an unencoded +"
        );
        assert_eq!(instant("yesterday", false), None);
        assert_eq!(instant("2026-13-01", false), None);
    }

    #[test]
    fn a_window_includes_both_ends() {
        let window = Window::parse(Some("2026-11-02"), Some("2026-11-03")).unwrap();
        assert!(window.holds(at("2026-11-02T00:00:00Z")));
        assert!(window.holds(at("2026-11-03T23:59:59Z")));
        assert!(!window.holds(at("2026-11-01T23:59:59Z")));
        assert!(!window.holds(at("2026-11-04T00:00:00Z")));
        let open = Window::parse(None, Some("")).unwrap();
        assert_eq!(open, Window::default());
        assert!(open.holds(at("1970-01-01T00:00:00Z")));
        assert!(Window::parse(Some("x"), None).is_err());
        assert!(Window::parse(None, Some("x")).is_err());
    }

    #[test]
    fn listed_amounts_stay_exact_decimals() {
        let tx = Transaction {
            id: 7_000_001,
            reference: "r-1".into(),
            amount: 150075,
            currency: "NGN".into(),
            email: "a@b.c".into(),
            created_at: at("2026-11-02T10:00:00Z"),
            status: "success".into(),
            access_code: "ac_1".into(),
            paid_at: None,
            gateway_response: "Approved".into(),
            reported_amount: None,
            reported_currency: None,
            callback_url: None,
            attempts: Vec::new(),
        };
        let listed = Listed {
            view: TransactionView::of(&tx),
            created_at: tx.created_at,
        };
        let text = serde_json::to_string(&listed).unwrap();
        assert!(text.contains(r#""amount":1500.75,"#), "{text}");
        assert!(text.contains(r#""tx_ref":"r-1""#), "{text}");
        assert!(
            text.ends_with(r#""created_at":"2026-11-02T10:00:00Z"}"#),
            "{text}"
        );
    }

    #[test]
    fn a_flutterwave_checkout_lists_each_attempt_and_paystack_each_transaction() {
        use crate::{
            provider::sandbox::state::{AfterDecline, Opening},
            secret::Secret,
        };
        let sandbox = Sandbox::new(Secret::new("sk"), "http://h", None).with_refund_settle(None);
        let flutterwave = sandbox.of(ConnectorName::Flutterwave).unwrap();
        let opening = |reference: &str| Opening {
            reference: reference.into(),
            amount: 500,
            currency: "NGN".into(),
            email: "a@b.c".into(),
            callback_url: None,
        };
        for dialect in [&sandbox, flutterwave] {
            dialect.open(opening("r-1")).ok().unwrap();
            dialect.open(opening("r-2")).ok().unwrap();
            dialect.settle_quietly("r-1", "failed", AfterDecline::KeepOpen);
            dialect.settle_quietly("r-1", "success", AfterDecline::KeepOpen);
        }
        let rows = |dialect: &Sandbox| {
            let (rows, total) = dialect.list(Window::default(), 1, 10);
            let seen: Vec<(String, Option<String>)> = rows
                .iter()
                .map(|r| {
                    (
                        r.tx.reference.clone(),
                        r.attempt.as_ref().map(|a| a.status.clone()),
                    )
                })
                .collect();
            (seen, total)
        };
        let attempt = |reference: &str, status: Option<&str>| {
            (reference.to_owned(), status.map(str::to_owned))
        };
        assert_eq!(
            rows(flutterwave),
            (
                vec![
                    attempt("r-1", Some("success")),
                    attempt("r-1", Some("failed")),
                    attempt("r-2", None),
                ],
                3
            ),
            "newest first: the attempts were made after r-2 opened"
        );
        assert_eq!(
            rows(&sandbox),
            (vec![attempt("r-2", None), attempt("r-1", None)], 2),
            "Paystack: the declined transaction is closed, one row each"
        );
        let (second, total) = flutterwave.list(Window::default(), 2, 2);
        assert_eq!((second.len(), total), (1, 3));
        assert_eq!(second[0].tx.reference, "r-2");
    }

    #[test]
    fn pages_start_at_one() {
        assert_eq!(page_number(None), Ok(1));
        assert_eq!(page_number(Some("0")), Ok(1));
        assert_eq!(page_number(Some("3")), Ok(3));
        assert!(page_number(Some("-1")).is_err());
    }
}
