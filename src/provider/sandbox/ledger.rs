//! `GET /_control/ledger`: everything the sandbox holds, as the provider's
//! truth that tests and the chaos campaign compare payorch against. Asked
//! at the base it lists every dialect (Paystack's, then Flutterwave's);
//! `?provider=` narrows it to one; asked under `/flutterwave` it lists that
//! dialect. Each transaction with its attempts and refunds, oldest first:
//! amounts in minor units whatever the dialect, statuses in the dialect's
//! own words (what its verify and refund look-ups say), the amount and
//! currency as verify reports them (a forced report included). A dialect
//! holds at most [`MAX_TRANSACTIONS`](super::MAX_TRANSACTIONS), so the
//! ledger is bounded by that.
//!
//! A Paystack transaction is one attempt, itself. A Flutterwave checkout
//! lists each Pay or Decline made on it (none before the customer acts),
//! and its `transaction_id` and `status` are its latest attempt's, as
//! verify by reference reports them.

use std::collections::HashMap;

use poem::{
    IntoResponse, Request, Response, handler,
    web::{Data, Json, Query},
};
use serde::{Deserialize, Serialize};

use super::{Sandbox, flutterwave, state::SandboxRefund};
use crate::provider::routing::ConnectorName;

/// One transaction in the ledger.
#[derive(Debug, Serialize)]
pub(super) struct Entry {
    provider: &'static str,
    reference: String,
    transaction_id: i64,
    status: String,
    amount: i64,
    currency: String,
    attempts: Vec<Attempt>,
    refunds: Vec<Refund>,
    /// The checkout's own id: the order of opening.
    #[serde(skip)]
    opened: i64,
}

#[derive(Debug, Serialize)]
struct Attempt {
    id: i64,
    status: String,
}

#[derive(Debug, Serialize)]
struct Refund {
    id: i64,
    amount: i64,
    status: String,
    /// The merchant's note (payorch sends its own refund id): how a refund
    /// whose answer was lost is matched to the request that made it.
    merchant_note: Option<String>,
}

impl Sandbox {
    /// This dialect's part of the ledger, oldest transaction first.
    pub(super) fn ledger(&self) -> Vec<Entry> {
        let state = self.lock();
        let mut refunds: HashMap<&str, Vec<&SandboxRefund>> = HashMap::new();
        for refund in state.refunds.values() {
            refunds
                .entry(refund.transaction_reference.as_str())
                .or_default()
                .push(refund);
        }
        let mut entries: Vec<Entry> = state
            .transactions
            .values()
            .map(|tx| {
                let status = self.status_word(tx).to_owned();
                let mut theirs = refunds.remove(tx.reference.as_str()).unwrap_or_default();
                theirs.sort_by_key(|r| r.id);
                let attempts = match self.inner.dialect {
                    ConnectorName::Paystack => vec![Attempt {
                        id: tx.id,
                        status: status.clone(),
                    }],
                    ConnectorName::Flutterwave => tx
                        .attempts
                        .iter()
                        .map(|a| Attempt {
                            id: a.id,
                            status: flutterwave::status_word(&a.status).to_owned(),
                        })
                        .collect(),
                };
                Entry {
                    provider: self.inner.dialect.as_str(),
                    reference: tx.reference.clone(),
                    transaction_id: tx.current_id(),
                    status: status.clone(),
                    amount: tx.reported_amount.unwrap_or(tx.amount),
                    currency: tx
                        .reported_currency
                        .clone()
                        .unwrap_or_else(|| tx.currency.clone()),
                    attempts,
                    opened: tx.id,
                    refunds: theirs
                        .into_iter()
                        .map(|r| Refund {
                            id: r.id,
                            amount: r.amount,
                            status: self.refund_word(&r.status).to_owned(),
                            merchant_note: r.merchant_note.clone(),
                        })
                        .collect(),
                }
            })
            .collect();
        entries.sort_by_key(|e| e.opened);
        entries
    }
}

#[derive(Deserialize)]
pub struct LedgerQuery {
    /// `paystack` or `flutterwave`; default: every dialect reached from here.
    provider: Option<String>,
}

#[handler]
pub async fn ledger(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Query(query): Query<LedgerQuery>,
) -> Response {
    let target = match sandbox.control_target(req, query.provider.as_deref()) {
        Ok(target) => target,
        Err(response) => return *response,
    };
    let mut entries = target.ledger();
    if query.provider.is_none()
        && let Some(sibling) = &target.inner.flutterwave
    {
        entries.extend(sibling.ledger());
    }
    Json(entries).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        provider::{
            routing::ConnectorName,
            sandbox::state::{AfterDecline, Opening},
        },
        secret::Secret,
    };

    #[test]
    fn entries_carry_refunds_in_the_dialects_words() {
        let sandbox = Sandbox::new(Secret::new("sk"), "http://h", None).with_refund_settle(None);
        let flutterwave = sandbox.of(ConnectorName::Flutterwave).unwrap();
        let opening = |reference: &str| Opening {
            reference: reference.into(),
            amount: 1000,
            currency: "NGN".into(),
            email: "a@b.c".into(),
            callback_url: None,
        };
        for dialect in [&sandbox, flutterwave] {
            dialect.open(opening("r-1")).ok().unwrap();
            dialect.open(opening("r-2")).ok().unwrap();
            dialect
                .settle_quietly("r-1", "success", AfterDecline::Close)
                .unwrap();
            let refund = dialect.open_refund("r-1", Some(400), None).unwrap();
            dialect
                .settle_refund(refund.id, "processed", false)
                .unwrap();
        }
        let paystack = sandbox.ledger();
        assert_eq!(paystack.len(), 2);
        let text = serde_json::to_value(&paystack).unwrap();
        assert_eq!(text[0]["provider"], "paystack");
        assert_eq!(text[0]["reference"], "r-1");
        assert_eq!(text[0]["status"], "success");
        assert_eq!(text[0]["attempts"][0]["id"], text[0]["transaction_id"]);
        assert_eq!(text[0]["refunds"][0]["amount"], 400);
        assert_eq!(text[0]["refunds"][0]["status"], "processed");
        assert_eq!(text[1]["status"], "ongoing");
        assert_eq!(text[1]["refunds"], serde_json::json!([]));
        let theirs = serde_json::to_value(flutterwave.ledger()).unwrap();
        assert_eq!(theirs[0]["provider"], "flutterwave");
        assert_eq!(theirs[0]["status"], "successful");
        assert_eq!(theirs[0]["amount"], 1000, "minor units");
        assert_eq!(theirs[0]["refunds"][0]["status"], "completed");
        assert_eq!(theirs[1]["status"], "pending");
    }
}
