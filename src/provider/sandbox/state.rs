//! What a dialect remembers, in memory: its transactions (in minor units and
//! Paystack's status words whatever the dialect), its refunds, the faults a
//! test injected and the counts of what was asked. Opening and settling a
//! transaction happen here (a refund's, in `refunds.rs`); the dialects only
//! translate. The other files use this one; it uses none of them.
//!
//! In the Flutterwave dialect a transaction is a checkout that holds
//! attempts: each Pay or Decline is an [`Attempt`] with its own id under the
//! same reference (the first takes the checkout's id, so a checkout paid at
//! once is one id throughout). A Pay closes the checkout; a Decline from the
//! page leaves it payable, as Flutterwave's hosted checkout lets the
//! customer try again. The Paystack dialect records no attempts: a decision
//! closes its transaction, as before.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{MAX_TRANSACTIONS, Sandbox};
use crate::provider::routing::ConnectorName;

#[derive(Default)]
pub(super) struct State {
    pub(super) transactions: HashMap<String, Transaction>,
    pub(super) by_access_code: HashMap<String, String>,
    /// Transaction id → reference (Flutterwave refunds and verify name the
    /// id): every attempt's id too.
    pub(super) by_id: HashMap<i64, String>,
    pub(super) next_id: i64,
    pub(super) refunds: HashMap<i64, SandboxRefund>,
    pub(super) faults: HashMap<Operation, Fault>,
    pub(super) stats: Stats,
}

impl State {
    fn insert(&mut self, tx: Transaction) {
        self.by_access_code
            .insert(tx.access_code.clone(), tx.reference.clone());
        self.by_id.insert(tx.id, tx.reference.clone());
        self.transactions.insert(tx.reference.clone(), tx);
        self.stats.transactions += 1;
    }
}

/// A refund, in minor units and Paystack's words whatever the dialect.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxRefund {
    pub(super) id: i64,
    pub(super) transaction_reference: String,
    /// The refunded transaction's id (Flutterwave names it so).
    pub(super) transaction_id: i64,
    pub(super) amount: i64,
    pub(super) currency: String,
    /// `pending`, then `processed` or `failed`.
    pub(super) status: String,
    /// The merchant's note: Paystack's `merchant_note`, Flutterwave's
    /// `comments`.
    pub(super) merchant_note: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    pub initialize_calls: u64,
    pub verify_calls: u64,
    pub transactions: u64,
    #[serde(default)]
    pub refund_calls: u64,
    #[serde(default)]
    pub refund_lookups: u64,
    /// Listings of transactions by date range.
    #[serde(default)]
    pub list_calls: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Initialize,
    Verify,
    Refund,
    /// Any look-up of refunds: by id, or a listing (Paystack's by
    /// transaction, Flutterwave's pages).
    RefundLookup,
    /// A listing of transactions by date range.
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// Answer 500.
    Error,
    /// Hold the request past the client's timeout.
    Hang,
    /// Answer 400 "Duplicate Transaction Reference", as Paystack does when
    /// asked to initialize a reference it already holds.
    Duplicate,
    /// Do the work as on success (open the transaction, the refund), then
    /// answer 500: the answer is lost on the way back.
    ErrorAfter,
    /// Answer a refund look-up as if the refund did not exist.
    NotFound,
}

impl FaultMode {
    /// Whether this mode means anything for `operation`: the side-effect
    /// modes only where there is a side effect or a look-up to miss.
    pub fn fits(self, operation: Operation) -> bool {
        match self {
            FaultMode::Error | FaultMode::Hang => true,
            FaultMode::Duplicate => matches!(
                operation,
                Operation::Initialize | Operation::Verify | Operation::Refund
            ),
            FaultMode::ErrorAfter => {
                matches!(operation, Operation::Initialize | Operation::Refund)
            }
            FaultMode::NotFound => operation == Operation::RefundLookup,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Fault {
    pub(super) mode: FaultMode,
    pub(super) remaining: u32,
}

/// A transaction, in minor units and Paystack's status words whatever the
/// dialect; the Flutterwave dialect translates at its edge.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Transaction {
    pub(super) id: i64,
    pub(super) reference: String,
    pub(super) amount: i64,
    pub(super) currency: String,
    pub(super) email: String,
    /// When it was opened: what the listings by date range filter on.
    pub(super) created_at: DateTime<Utc>,
    /// `ongoing` until the customer acts, then `success`, `failed` or
    /// `abandoned`.
    pub(super) status: String,
    pub(super) access_code: String,
    pub(super) paid_at: Option<DateTime<Utc>>,
    pub(super) gateway_response: String,
    /// What verify and webhooks report, when a test forces a different amount.
    pub(super) reported_amount: Option<i64>,
    pub(super) reported_currency: Option<String>,
    /// Where the checkout sends the customer once they decided (Paystack's
    /// `callback_url`, Flutterwave's `redirect_url`).
    pub(super) callback_url: Option<String>,
    /// The Flutterwave dialect's attempts, oldest first (none in Paystack's).
    pub(super) attempts: Vec<Attempt>,
}

/// One Pay or Decline on a Flutterwave checkout.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Attempt {
    pub(super) id: i64,
    /// When the customer made it: Flutterwave's `created_at` of this
    /// transaction id, what its listing by date filters on.
    pub(super) created_at: DateTime<Utc>,
    /// `success` or `failed` (Paystack's words, as the transaction's).
    pub(super) status: String,
    pub(super) gateway_response: String,
    pub(super) paid_at: Option<DateTime<Utc>>,
}

/// Whether a Decline closes the checkout or leaves it payable. Only the
/// Flutterwave dialect leaves it payable; Paystack's always closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterDecline {
    Close,
    KeepOpen,
}

impl Transaction {
    /// The latest attempt, if any: what Flutterwave's verify by reference
    /// reports.
    pub(super) fn latest_attempt(&self) -> Option<&Attempt> {
        self.attempts.last()
    }

    /// The id verify by reference reports: the latest attempt's, else the
    /// transaction's own.
    pub(super) fn current_id(&self) -> i64 {
        self.latest_attempt().map_or(self.id, |a| a.id)
    }

    /// The transaction in Paystack's shape.
    pub(super) fn report(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "reference": self.reference,
            "status": self.status,
            "amount": self.reported_amount.unwrap_or(self.amount),
            "currency": self.reported_currency.as_deref().unwrap_or(&self.currency),
            "paid_at": self.paid_at,
            "gateway_response": self.gateway_response,
        })
    }

    /// The event announcing this transaction's outcome, in Paystack's shape.
    pub(super) fn webhook_body(&self) -> serde_json::Value {
        let event = match self.status.as_str() {
            "success" => "charge.success",
            "failed" => "charge.failed",
            _ => "charge.abandoned",
        };
        json!({"event": event, "data": self.report()})
    }
}

/// What an initialize asks for, in minor units, whichever dialect.
pub(super) struct Opening {
    pub(super) reference: String,
    pub(super) amount: i64,
    pub(super) currency: String,
    pub(super) email: String,
    pub(super) callback_url: Option<String>,
}

/// Why an initialize opens nothing.
pub(super) enum OpenRefusal {
    /// The reference is held by a transaction with other parameters.
    Conflict,
    /// [`MAX_TRANSACTIONS`] reached.
    Full,
}

impl Sandbox {
    /// Opens a transaction, or finds the one the reference already names
    /// when the parameters are the same (a repeated initialize).
    pub(super) fn open(&self, opening: Opening) -> Result<Transaction, OpenRefusal> {
        let mut state = self.lock();
        if let Some(existing) = state.transactions.get(&opening.reference) {
            let same = existing.amount == opening.amount
                && existing.currency == opening.currency
                && existing.email == opening.email;
            return if same {
                Ok(existing.clone())
            } else {
                Err(OpenRefusal::Conflict)
            };
        }
        if state.transactions.len() >= MAX_TRANSACTIONS {
            return Err(OpenRefusal::Full);
        }
        state.next_id += 1;
        let tx = Transaction {
            id: state.next_id,
            reference: opening.reference,
            amount: opening.amount,
            currency: opening.currency,
            email: opening.email,
            created_at: Utc::now(),
            status: "ongoing".into(),
            access_code: format!("ac_{}", uuid::Uuid::new_v4().simple()),
            paid_at: None,
            gateway_response: "Pending".into(),
            reported_amount: None,
            reported_currency: None,
            callback_url: opening.callback_url,
            attempts: Vec::new(),
        };
        state.insert(tx.clone());
        Ok(tx)
    }

    /// Settles a transaction as the customer (or a test) decided, and
    /// announces it by webhook (in the Flutterwave dialect, the attempt
    /// just made). Only an `ongoing` transaction changes: a provider does
    /// not re-decide.
    pub(super) fn settle(
        &self,
        reference: &str,
        outcome: &str,
        after: AfterDecline,
    ) -> Option<Transaction> {
        let (tx, changed) = self.settle_quietly(reference, outcome, after)?;
        if changed
            && let Some(sender) = &self.inner.webhooks
            && let Some(body) = self.webhook_body(&tx)
        {
            sender.send_in_background(body);
        }
        Some(tx)
    }

    /// [`Self::settle`] without the webhook; also whether anything changed.
    /// In the Flutterwave dialect `success` and `failed` are attempts, and
    /// a `failed` one with [`AfterDecline::KeepOpen`] leaves the checkout
    /// `ongoing`; `abandoned` closes it without an attempt.
    pub(super) fn settle_quietly(
        &self,
        reference: &str,
        outcome: &str,
        after: AfterDecline,
    ) -> Option<(Transaction, bool)> {
        let attempts = self.inner.dialect == ConnectorName::Flutterwave;
        let mut guard = self.lock();
        let state = &mut *guard;
        let tx = state.transactions.get_mut(reference)?;
        let changed = tx.status == "ongoing";
        if changed {
            let gateway_response = match outcome {
                "success" => "Approved",
                "failed" => "Declined",
                _ => "Abandoned",
            }
            .to_owned();
            let paid_at = (outcome == "success").then(Utc::now);
            if attempts && matches!(outcome, "success" | "failed") {
                let id = if tx.attempts.is_empty() {
                    tx.id
                } else {
                    state.next_id += 1;
                    state.by_id.insert(state.next_id, reference.to_owned());
                    state.next_id
                };
                tx.attempts.push(Attempt {
                    id,
                    created_at: Utc::now(),
                    status: outcome.to_owned(),
                    gateway_response: gateway_response.clone(),
                    paid_at,
                });
            }
            let keep_open = attempts && outcome == "failed" && after == AfterDecline::KeepOpen;
            if !keep_open {
                tx.status = outcome.to_owned();
            }
            tx.gateway_response = gateway_response;
            tx.paid_at = paid_at;
        }
        Some((tx.clone(), changed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{provider::routing::ConnectorName, secret::Secret};

    #[test]
    fn each_dialect_holds_its_own_transactions() {
        let sandbox = Sandbox::new(Secret::new("sk"), "http://h", None).with_refund_settle(None);
        let opening = || Opening {
            reference: "r-1".into(),
            amount: 500,
            currency: "NGN".into(),
            email: "a@b.c".into(),
            callback_url: None,
        };
        let first = sandbox.open(opening()).ok().unwrap();
        let again = sandbox.open(opening()).ok().unwrap();
        assert_eq!(first.access_code, again.access_code, "idempotent");
        let other = Opening {
            amount: 600,
            ..opening()
        };
        assert!(matches!(sandbox.open(other), Err(OpenRefusal::Conflict)));
        let flutterwave = sandbox.of(ConnectorName::Flutterwave).unwrap();
        let theirs = flutterwave.open(opening()).ok().unwrap();
        assert_ne!(theirs.id, first.id);
        assert_eq!(sandbox.stats().transactions, 1);
        assert_eq!(flutterwave.stats().transactions, 1);
        assert!(flutterwave.inner.refund_settle.is_none());
    }

    #[test]
    fn a_flutterwave_decline_is_an_attempt_that_leaves_the_checkout_payable() {
        let sandbox = Sandbox::new(Secret::new("sk"), "http://h", None).with_refund_settle(None);
        let flutterwave = sandbox.of(ConnectorName::Flutterwave).unwrap();
        let opening = |reference: &str| Opening {
            reference: reference.into(),
            amount: 500,
            currency: "NGN".into(),
            email: "a@b.c".into(),
            callback_url: None,
        };
        let opened = flutterwave.open(opening("r-1")).ok().unwrap();
        let (declined, changed) = flutterwave
            .settle_quietly("r-1", "failed", AfterDecline::KeepOpen)
            .unwrap();
        assert!(changed);
        assert_eq!(declined.status, "ongoing", "still payable");
        assert_eq!(declined.attempts.len(), 1);
        assert_eq!(declined.attempts[0].id, opened.id, "the first takes its id");
        assert_eq!(declined.attempts[0].status, "failed");
        let (paid, changed) = flutterwave
            .settle_quietly("r-1", "success", AfterDecline::KeepOpen)
            .unwrap();
        assert!(changed);
        assert_eq!(paid.status, "success");
        let ids: Vec<i64> = paid.attempts.iter().map(|a| a.id).collect();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1], "each attempt has its own id");
        assert_eq!(paid.current_id(), ids[1]);
        assert_eq!(
            flutterwave.lock().by_id.get(&ids[1]).map(String::as_str),
            Some("r-1")
        );
        let (_, changed) = flutterwave
            .settle_quietly("r-1", "failed", AfterDecline::KeepOpen)
            .unwrap();
        assert!(!changed, "a paid checkout takes no more attempts");

        // Without KeepOpen a decline closes the checkout, as it did.
        flutterwave.open(opening("r-2")).ok().unwrap();
        let (closed, _) = flutterwave
            .settle_quietly("r-2", "failed", AfterDecline::Close)
            .unwrap();
        assert_eq!(closed.status, "failed");
        assert_eq!(closed.attempts.len(), 1);

        // Paystack's dialect: a decline closes, and no attempts are kept.
        sandbox.open(opening("r-1")).ok().unwrap();
        let (paystack, _) = sandbox
            .settle_quietly("r-1", "failed", AfterDecline::KeepOpen)
            .unwrap();
        assert_eq!(paystack.status, "failed");
        assert!(paystack.attempts.is_empty());
    }

    #[test]
    fn side_effect_modes_fit_only_their_operations() {
        use {FaultMode::*, Operation::*};
        for operation in [Initialize, Verify, Refund, RefundLookup, List] {
            assert!(Error.fits(operation) && Hang.fits(operation));
        }
        assert!(Duplicate.fits(Verify), "as before: any of the first three");
        assert!(!Duplicate.fits(RefundLookup) && !Duplicate.fits(List));
        assert!(ErrorAfter.fits(Initialize) && ErrorAfter.fits(Refund));
        assert!(!ErrorAfter.fits(Verify) && !ErrorAfter.fits(RefundLookup));
        assert!(!ErrorAfter.fits(List));
        assert!(NotFound.fits(RefundLookup));
        assert!(!NotFound.fits(Initialize) && !NotFound.fits(List));
    }
}
