//! `POST /_control/burst`: settles every ongoing transaction and fires their
//! webhooks the way a bad day at a provider does — extra events, duplicates,
//! shuffled order, some with forged proofs (signatures, or hashes in the
//! Flutterwave dialect) — then reports what happened and what each payment
//! should end as.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use poem::{
    IntoResponse, Request, Response, handler,
    http::StatusCode,
    web::{Data, Json},
};
use rand::seq::{IndexedRandom, SliceRandom};
use serde::{Deserialize, Serialize};

use super::{
    Sandbox,
    state::AfterDecline,
    webhooks::{self, Delivered},
};
use crate::provider::routing::ConnectorName;

#[derive(Deserialize)]
pub struct BurstRequest {
    /// `success`, `failed`, or `mixed` (every fifth payment fails).
    #[serde(default = "mixed")]
    outcome: String,
    /// Further distinct events of the same kind (new transaction ids) spread
    /// over the payments: a provider re-announcing, each must be recorded
    /// and none may change the outcome.
    #[serde(default)]
    extra_events: usize,
    /// Exact repeats of events already in the burst.
    #[serde(default)]
    duplicates: usize,
    /// Copies sent with a wrong signature (must be refused).
    #[serde(default)]
    bad_signatures: usize,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    /// `paystack` or `flutterwave`; default: the dialect asked.
    provider: Option<String>,
}

fn mixed() -> String {
    "mixed".into()
}

fn default_concurrency() -> usize {
    32
}

#[derive(Serialize, Default)]
struct BurstReport {
    payments: usize,
    unique_events: usize,
    sent: usize,
    accepted: usize,
    refused: BTreeMap<u16, usize>,
    gave_up: usize,
    /// reference → the status payorch must end with.
    expected: BTreeMap<String, String>,
}

/// Every event once, `duplicates` repeats and `forged` copies to be sent
/// with a wrong proof (`false`), in random order.
fn shuffled_sends(events: &[String], duplicates: usize, forged: usize) -> Vec<(Vec<u8>, bool)> {
    let mut rng = rand::rng();
    let mut sends: Vec<(Vec<u8>, bool)> = events
        .iter()
        .map(|event| (event.clone().into_bytes(), true))
        .collect();
    for genuine in std::iter::repeat_n(true, duplicates).chain(std::iter::repeat_n(false, forged)) {
        if let Some(event) = events.choose(&mut rng) {
            sends.push((event.clone().into_bytes(), genuine));
        }
    }
    sends.shuffle(&mut rng);
    sends
}

#[handler]
pub async fn burst(
    req: &Request,
    Data(sandbox): Data<&Sandbox>,
    Json(body): Json<BurstRequest>,
) -> Response {
    let sandbox = match sandbox.control_target(req, body.provider.as_deref()) {
        Ok(target) => target,
        Err(response) => return *response,
    };
    let Some(sender) = sandbox.inner.webhooks.clone() else {
        return sandbox.refuse(StatusCode::CONFLICT, "the sandbox has no webhook URL");
    };
    let ongoing: Vec<String> = {
        let state = sandbox.lock();
        let mut refs: Vec<_> = state
            .transactions
            .values()
            .filter(|tx| tx.status == "ongoing")
            .map(|tx| tx.reference.clone())
            .collect();
        refs.sort();
        refs
    };
    let mut report = BurstReport {
        payments: ongoing.len(),
        ..BurstReport::default()
    };
    let mut settled = Vec::new();
    for (i, reference) in ongoing.iter().enumerate() {
        let outcome = match body.outcome.as_str() {
            "success" => "success",
            "failed" => "failed",
            _ if i % 5 == 4 => "failed",
            _ => "success",
        };
        if let Some((tx, _)) = sandbox.settle_quietly(reference, outcome, AfterDecline::Close) {
            // payorch does not take a declined Flutterwave attempt as final:
            // that payment stays pending until its abandon deadline.
            let expected = match (outcome, sandbox.inner.dialect) {
                ("success", _) => "succeeded",
                (_, ConnectorName::Flutterwave) => "pending",
                _ => "failed",
            };
            report.expected.insert(reference.clone(), expected.into());
            settled.push(tx);
        }
    }
    let decisive = settled.len();
    for i in 0..body.extra_events.min(decisive * 10) {
        let mut extra = settled[i % decisive].clone();
        extra.id = {
            let mut state = sandbox.lock();
            state.next_id += 1;
            state.next_id
        };
        // Flutterwave's event names the attempt.
        if let Some(attempt) = extra.attempts.last_mut() {
            attempt.id = extra.id;
        }
        settled.push(extra);
    }
    let events: Vec<String> = settled
        .iter()
        .filter_map(|tx| sandbox.webhook_body(tx))
        .collect();
    report.unique_events = events.len();
    let sends = shuffled_sends(&events, body.duplicates, body.bad_signatures);
    report.sent = sends.len();
    let outcomes: Vec<Delivered> = futures_util::stream::iter(sends)
        .map(|(body, genuine)| {
            let sender = sender.clone();
            async move {
                let proof = sender.proof(&body);
                let proof = if genuine {
                    proof
                } else {
                    webhooks::forged(&proof)
                };
                sender.deliver(body, &proof).await
            }
        })
        .buffer_unordered(body.concurrency.clamp(1, 256))
        .collect()
        .await;
    for outcome in outcomes {
        match outcome {
            Delivered::Accepted => report.accepted += 1,
            Delivered::Refused(status) => *report.refused.entry(status).or_default() += 1,
            Delivered::GaveUp => report.gave_up += 1,
        }
    }
    Json(report).into_response()
}
