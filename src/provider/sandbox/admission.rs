//! What a call to a dialect's API passes before its handler runs: the bearer
//! key, then a count in [`Stats`], then any fault a test injected through
//! `/_control/faults`. A call refused for its key is not counted; one ended
//! by a fault is. Faults that end the call come back as its response; the
//! side-effect ones (`error_after`, `not_found`) as an [`Admission`] the
//! handler honours, since only it knows what the work and the miss are.

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

/// How an admitted call is to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// As usual.
    Answer,
    /// Do the work as usual, then answer 500 instead (`error_after`).
    LoseAnswer,
    /// Answer as if the refund looked up did not exist (`not_found`).
    Miss,
}

impl Admission {
    /// The response to send once the work is done: `response`, or a 500 in
    /// its place when the answer is to be lost.
    pub(super) fn finish(self, sandbox: &Sandbox, response: Response) -> Response {
        match self {
            Admission::LoseAnswer => sandbox.refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "sandbox: injected failure after the work was done",
            ),
            Admission::Answer | Admission::Miss => response,
        }
    }

    pub(super) fn misses(self) -> bool {
        self == Admission::Miss
    }
}

impl Sandbox {
    /// Admits a call to `operation`: `Err(response)` ends the request there,
    /// unauthorized in this dialect's error shape or as an injected fault.
    pub(super) async fn admit(
        &self,
        req: &Request,
        operation: Operation,
    ) -> Result<Admission, Response> {
        if !self.authorized(req) {
            return Err(self.unauthorized());
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

    /// Applies a pending fault: `Err(response)` ends the request there.
    async fn fault(&self, operation: Operation) -> Result<Admission, Response> {
        let Some(mode) = self.take_fault(operation) else {
            return Ok(Admission::Answer);
        };
        match mode {
            FaultMode::Error => Err(self.refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "sandbox: injected failure",
            )),
            FaultMode::Hang => {
                tokio::time::sleep(HANG).await;
                Err(self.refuse(StatusCode::GATEWAY_TIMEOUT, "sandbox: injected hang"))
            }
            FaultMode::Duplicate => Err(self.refuse(
                StatusCode::BAD_REQUEST,
                match self.inner.dialect {
                    ConnectorName::Paystack => "Duplicate Transaction Reference",
                    ConnectorName::Flutterwave => "Duplicate transaction reference (tx_ref)",
                },
            )),
            FaultMode::ErrorAfter => Ok(Admission::LoseAnswer),
            FaultMode::NotFound => Ok(Admission::Miss),
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

/// The count a call to `operation` adds to.
fn calls(stats: &mut Stats, operation: Operation) -> &mut u64 {
    match operation {
        Operation::Initialize => &mut stats.initialize_calls,
        Operation::Verify => &mut stats.verify_calls,
        Operation::Refund => &mut stats.refund_calls,
        Operation::RefundLookup => &mut stats.refund_lookups,
        Operation::List => &mut stats.list_calls,
    }
}
