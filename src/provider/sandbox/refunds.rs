//! The sandbox's refund ledger, the same in both dialects: a refund of a
//! successful transaction, never above what is left of it, `pending` until
//! it settles (after `refund_settle`, or when a test decides through
//! `/_control/refunds/{id}/outcome`). A settled Paystack refund is announced
//! with a signed `refund.processed` or `refund.failed` webhook; a
//! Flutterwave one is not announced. The dialects' refund endpoints
//! (`paystack.rs`, `flutterwave.rs`) translate to and from this.

use std::time::Duration;

use poem::http::StatusCode;
use serde_json::json;

use super::{Sandbox, state::SandboxRefund};
use crate::provider::routing::ConnectorName;

/// How long a refund stays pending when nothing settles it sooner.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(1);

impl SandboxRefund {
    /// The refund in Paystack's shape (the shape every dialect stores).
    pub(super) fn view(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "transaction_reference": self.transaction_reference,
            "amount": self.amount,
            "currency": self.currency,
            "status": self.status,
            "merchant_note": self.merchant_note,
        })
    }

    fn webhook_body(&self) -> serde_json::Value {
        let event = match self.status.as_str() {
            "processed" => "refund.processed",
            _ => "refund.failed",
        };
        json!({"event": event, "data": self.view()})
    }
}

/// Why a refund is refused: the status and the provider's words.
pub(super) type Refusal = (StatusCode, &'static str);

impl Sandbox {
    /// Opens a refund of the transaction `reference`: `amount` (minor
    /// units) or all that is left of it.
    pub(super) fn open_refund(
        &self,
        reference: &str,
        amount: Option<i64>,
        note: Option<String>,
    ) -> Result<SandboxRefund, Refusal> {
        let mut state = self.lock();
        let Some(tx) = state.transactions.get(reference) else {
            return Err((StatusCode::NOT_FOUND, "Transaction not found"));
        };
        if tx.status != "success" {
            return Err((
                StatusCode::BAD_REQUEST,
                "Cannot refund an unsuccessful transaction",
            ));
        }
        // A Flutterwave checkout's paid attempt is its latest: the id refunds name.
        let (total, currency, transaction_id) = (tx.amount, tx.currency.clone(), tx.current_id());
        let promised: i64 = state
            .refunds
            .values()
            .filter(|r| r.transaction_reference == reference && r.status != "failed")
            .map(|r| r.amount)
            .sum();
        let amount = amount.unwrap_or(total - promised);
        if amount <= 0 || promised + amount > total {
            return Err((
                StatusCode::BAD_REQUEST,
                "Refund amount cannot be more than the transaction amount",
            ));
        }
        state.next_id += 1;
        let refund = SandboxRefund {
            id: state.next_id,
            transaction_reference: reference.to_owned(),
            transaction_id,
            amount,
            currency,
            status: "pending".into(),
            merchant_note: note,
        };
        state.refunds.insert(refund.id, refund.clone());
        drop(state);
        if let Some(after) = self.inner.refund_settle {
            let (sandbox, id) = (self.clone(), refund.id);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                sandbox.settle_refund(id, "processed", true);
            });
        }
        Ok(refund)
    }

    /// Settles a pending refund and announces it; `None` if unknown.
    pub(super) fn settle_refund(
        &self,
        id: i64,
        status: &str,
        notify: bool,
    ) -> Option<SandboxRefund> {
        let (refund, changed) = {
            let mut state = self.lock();
            let refund = state.refunds.get_mut(&id)?;
            let changed = refund.status == "pending";
            if changed {
                refund.status = status.to_owned();
            }
            (refund.clone(), changed)
        };
        if changed
            && notify
            && self.inner.dialect == ConnectorName::Paystack
            && let Some(sender) = &self.inner.webhooks
        {
            sender.send_in_background(refund.webhook_body().to_string());
        }
        Some(refund)
    }
}
