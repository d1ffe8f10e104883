//! What a call to a dialect's API passes before its handler runs: the bearer
//! key, then a count in [`Stats`], then any fault a test injected through
//! `/_control/faults`. A call refused for its key is not counted; one ended
//! by a fault is.

use std::time::Duration;

use poem::{Request, Response, http::StatusCode};
use subtle::ConstantTimeEq;

use super::{
    Sandbox,
    state::{FaultMode, Operation, Stats},
};
use crate::provider::routing::ConnectorName;

/// How long a "hang" fault holds a request: past any sane client timeout.
const HANG: Duration = Duration::from_secs(30);

impl Sandbox {
    /// Admits a call to `operation`: `Some(response)` ends the request there,
    /// unauthorized in this dialect's error shape or as an injected fault.
    pub(super) async fn admit(&self, req: &Request, operation: Operation) -> Option<Response> {
        if !self.authorized(req) {
            return Some(self.unauthorized());
        }
        *calls(&mut self.lock().stats, operation) += 1;
        self.fault(operation).await
    }

    pub(super) fn authorized(&self, req: &Request) -> bool {
        let expected = format!("Bearer {}", self.inner.secret.expose());
        req.headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())))
    }

    pub(super) fn unauthorized(&self) -> Response {
        self.refuse(StatusCode::UNAUTHORIZED, "Invalid key")
    }

    /// Applies a pending fault: `Some(response)` ends the request there.
    async fn fault(&self, operation: Operation) -> Option<Response> {
        match self.take_fault(operation)? {
            FaultMode::Error => Some(self.refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "sandbox: injected failure",
            )),
            FaultMode::Hang => {
                tokio::time::sleep(HANG).await;
                Some(self.refuse(StatusCode::GATEWAY_TIMEOUT, "sandbox: injected hang"))
            }
            FaultMode::Duplicate => Some(self.refuse(
                StatusCode::BAD_REQUEST,
                match self.inner.dialect {
                    ConnectorName::Paystack => "Duplicate Transaction Reference",
                    ConnectorName::Flutterwave => "Duplicate transaction reference (tx_ref)",
                },
            )),
        }
    }

    /// Consumes one pending fault for `operation`, if any.
    fn take_fault(&self, operation: Operation) -> Option<FaultMode> {
        let mut state = self.lock();
        let fault = state.faults.get_mut(&operation)?;
        if fault.remaining == 0 {
            return None;
        }
        fault.remaining -= 1;
        Some(fault.mode)
    }
}

/// The count a call to `operation` adds to. Refund lookups are counted by
/// their handlers: they take no fault.
fn calls(stats: &mut Stats, operation: Operation) -> &mut u64 {
    match operation {
        Operation::Initialize => &mut stats.initialize_calls,
        Operation::Verify => &mut stats.verify_calls,
        Operation::Refund => &mut stats.refund_calls,
    }
}
