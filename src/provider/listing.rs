//! The paging every connector's paged read shares ([`Paging`]): pages 1,
//! 2, … until the provider says the last one was read or a page comes back
//! empty, never more than a hard cap, so a provider that misbehaves
//! (ignores `page`, reports a page count that never ends) cannot keep
//! payorch asking forever. A read that meets its cap is an outage
//! (`Unavailable`), never a short answer.

use super::ProviderError;

/// At most this many pages of refunds are read when looking for one.
pub const MAX_REFUND_PAGES: u32 = 50;

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // A count of zero pages (Paystack's for nothing found) ends at once.
        let mut empty = Paging::new("test listing", 3);
        empty.next().unwrap();
        assert!(empty.was_last(1, PageCount::Of(0)));
    }
}
