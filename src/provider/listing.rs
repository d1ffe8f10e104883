//! What a connector's paged listings give payorch: every transaction in a
//! window ([`Listing`] of [`ListedTransaction`]s, for settlement
//! reconciliation), and the paging every listing and refund search shares
//! ([`Paging`]): pages 1, 2, … until the provider says the last one was
//! read or a page comes back empty, never more than a hard cap, so a
//! provider that misbehaves (ignores `page`, reports a page count that never
//! ends) cannot keep payorch asking forever.
//!
//! A listing that meets its cap is an outage (`Unavailable`), never a short
//! answer: a caller that compares payorch with the provider must not take
//! "not listed" from a listing that stopped early. A wider window than the
//! cap allows is read in parts (see [`MAX_LISTING_PAGES`]).

use chrono::{DateTime, Utc};

use super::{ChargeStatus, ProviderError};

/// At most this many pages of one transaction listing are read: with
/// Paystack's 100 a page, 100,000 transactions; with Flutterwave's 10, 10,000.
/// A window holding more fails (`Unavailable`): split it.
pub const MAX_LISTING_PAGES: u32 = 1_000;

/// At most this many pages of refunds are read when looking for one.
pub const MAX_REFUND_PAGES: u32 = 50;

/// A transaction as a connector's listing reports it, in payorch's words and
/// minor units. One row per provider transaction: a Flutterwave checkout
/// paid after a decline lists both attempts, each with its own id, so a
/// paid attempt is seen whatever came after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTransaction {
    /// payorch's reference (Paystack's `reference`, Flutterwave's `tx_ref`).
    pub reference: String,
    /// The provider's id of this transaction (this attempt).
    pub provider_transaction_id: Option<i64>,
    pub status: ChargeStatus,
    /// The provider's own status word (`success`, `successful`, `failed`, …).
    pub status_word: String,
    /// Minor units; `None` when the provider's figure cannot be read exactly
    /// (a currency payorch does not know, more decimals than the currency
    /// has): never guessed. A caller treats such a row as not matching.
    pub amount: Option<i64>,
    /// As the provider wrote it (ISO 4217).
    pub currency: String,
    /// When it was paid, where the provider says (Paystack; Flutterwave's
    /// listing does not).
    pub paid_at: Option<DateTime<Utc>>,
    /// When the provider opened it: what the window is about. `None` only
    /// when the provider's row carries no readable date; such a row is kept,
    /// since the provider listed it for the window.
    pub created_at: Option<DateTime<Utc>>,
}

/// Every transaction a connector holds in a window, and what it cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Newest first, as the provider lists them, each transaction (attempt)
    /// once.
    pub transactions: Vec<ListedTransaction>,
    /// Pages fetched: the provider calls the listing made (a retried page
    /// counts once).
    pub pages: u32,
}

/// Whether `created_at` lies in `[from, until)`: the start included, the
/// end not, so consecutive windows never list a transaction twice. A row
/// without a date is kept (see [`ListedTransaction::created_at`]).
pub(super) fn in_window(
    created_at: Option<DateTime<Utc>>,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> bool {
    created_at.is_none_or(|at| from <= at && at < until)
}

/// Keeps the first row of each transaction: a listing read while the
/// provider adds transactions can show a row again on the next page (newest
/// first, everything shifts down).
pub(super) fn dedup(transactions: &mut Vec<ListedTransaction>) {
    let mut seen = std::collections::HashSet::new();
    transactions.retain(|tx| {
        let key = match tx.provider_transaction_id {
            Some(id) => (Some(id), String::new()),
            None => (None, tx.reference.clone()),
        };
        seen.insert(key)
    });
}

/// Where a listing stands: the next page to ask for, and how many were read.
#[derive(Debug)]
pub(super) struct Paging {
    /// What is listed, for the log and the error.
    what: &'static str,
    cap: u32,
    /// Pages read so far.
    read: u32,
}

/// What a page says of the pages after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PageCount {
    /// The provider's count of pages (Paystack's `meta.pageCount`,
    /// Flutterwave's `meta.page_info.total_pages`).
    Of(u64),
    /// The page carried none: read on until an empty page.
    Unknown,
}

impl Paging {
    pub(super) fn new(what: &'static str, cap: u32) -> Paging {
        Paging { what, cap, read: 0 }
    }

    /// The next page to ask for (from 1); `Err` once `cap` pages were read
    /// and the provider still has more.
    pub(super) fn next(&mut self) -> Result<u32, ProviderError> {
        if self.read >= self.cap {
            tracing::warn!(
                listing = self.what,
                pages = self.read,
                "a provider listing did not end within its page cap; giving up"
            );
            return Err(ProviderError::Unavailable(format!(
                "{} did not end within {} pages",
                self.what, self.cap
            )));
        }
        self.read += 1;
        Ok(self.read)
    }

    /// Whether the page just read (holding `items` rows) was the last.
    pub(super) fn was_last(&self, items: usize, count: PageCount) -> bool {
        items == 0
            || match count {
                PageCount::Of(total) => u64::from(self.read) >= total,
                PageCount::Unknown => false,
            }
    }

    /// Pages read so far.
    pub(super) fn read(&self) -> u32 {
        self.read
    }
}

/// A date the provider wrote (RFC 3339, as both providers do), if readable.
pub(super) fn timestamp(text: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text?.trim())
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        timestamp(Some(text)).unwrap()
    }

    fn listed(id: Option<i64>, reference: &str) -> ListedTransaction {
        ListedTransaction {
            reference: reference.into(),
            provider_transaction_id: id,
            status: ChargeStatus::Succeeded,
            status_word: "success".into(),
            amount: Some(100),
            currency: "NGN".into(),
            paid_at: None,
            created_at: None,
        }
    }

    #[test]
    fn a_window_includes_its_start_and_not_its_end() {
        let (from, until) = (at("2026-11-02T00:00:00Z"), at("2026-11-03T00:00:00Z"));
        assert!(in_window(Some(from), from, until));
        assert!(in_window(Some(at("2026-11-02T23:59:59.999Z")), from, until));
        assert!(!in_window(Some(until), from, until));
        assert!(!in_window(Some(at("2026-11-01T23:59:59Z")), from, until));
        assert!(in_window(None, from, until), "undated rows are kept");
    }

    #[test]
    fn paging_ends_on_the_last_page_an_empty_one_or_the_cap() {
        let mut paging = Paging::new("test listing", 3);
        assert_eq!(paging.next(), Ok(1));
        assert!(!paging.was_last(10, PageCount::Of(2)));
        assert_eq!(paging.next(), Ok(2));
        assert!(paging.was_last(10, PageCount::Of(2)));
        assert!(paging.was_last(0, PageCount::Of(5)), "an empty page");
        assert!(!paging.was_last(10, PageCount::Unknown));
        assert_eq!(paging.next(), Ok(3));
        assert!(matches!(paging.next(), Err(ProviderError::Unavailable(_))));
        assert_eq!(paging.read(), 3);
        // A count of zero pages (Paystack's for nothing found) ends at once.
        let mut empty = Paging::new("test listing", 3);
        empty.next().unwrap();
        assert!(empty.was_last(1, PageCount::Of(0)));
    }

    #[test]
    fn each_transaction_is_kept_once() {
        let mut rows = vec![
            listed(Some(1), "a"),
            listed(Some(2), "a"),
            listed(Some(1), "a"),
            listed(None, "b"),
            listed(None, "b"),
            listed(None, "c"),
        ];
        dedup(&mut rows);
        let kept: Vec<_> = rows
            .iter()
            .map(|r| (r.provider_transaction_id, r.reference.as_str()))
            .collect();
        assert_eq!(
            kept,
            [(Some(1), "a"), (Some(2), "a"), (None, "b"), (None, "c")]
        );
    }

    #[test]
    fn provider_dates_are_rfc3339() {
        assert_eq!(
            timestamp(Some("2020-03-11T19:33:20.000Z")),
            Some(at("2020-03-11T19:33:20Z"))
        );
        assert_eq!(
            timestamp(Some("2020-03-11T20:33:20+01:00")),
            Some(at("2020-03-11T19:33:20Z"))
        );
        assert_eq!(timestamp(Some("yesterday")), None);
        assert_eq!(timestamp(None), None);
    }
}
