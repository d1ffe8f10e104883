//! `POST /_control/burst`: settles every ongoing transaction and fires their
//! webhooks the way a bad day at a provider does — extra events, duplicates,
//! shuffled order, some with forged signatures — then reports what happened
//! and what each payment should end as.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use poem::{
    IntoResponse, Request, Response, handler,
    http::StatusCode,
    web::{Data, Json},
};
use rand::seq::{IndexedRandom, SliceRandom};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Sandbox, paystack_error, unauthorized, webhooks::Delivered};

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
/// with a wrong signature (`false`), in random order.
fn shuffled_sends(
    events: &[serde_json::Value],
    duplicates: usize,
    forged: usize,
) -> Vec<(Vec<u8>, bool)> {
    let mut rng = rand::rng();
    let mut sends: Vec<(Vec<u8>, bool)> = events
        .iter()
        .map(|event| (event.to_string().into_bytes(), true))
        .collect();
    for genuine in std::iter::repeat_n(true, duplicates).chain(std::iter::repeat_n(false, forged)) {
        if let Some(event) = events.choose(&mut rng) {
            sends.push((event.to_string().into_bytes(), genuine));
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
    if !sandbox.authorized(req) {
        return unauthorized();
    }
    let Some(sender) = sandbox.inner.webhooks.clone() else {
        return paystack_error(StatusCode::CONFLICT, "the sandbox has no webhook URL");
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
    let mut events = Vec::new();
    for (i, reference) in ongoing.iter().enumerate() {
        let outcome = match body.outcome.as_str() {
            "success" => "success",
            "failed" => "failed",
            _ if i % 5 == 4 => "failed",
            _ => "success",
        };
        if let Some((tx, _)) = sandbox.settle_quietly(reference, outcome) {
            report.expected.insert(
                reference.clone(),
                if outcome == "success" {
                    "succeeded"
                } else {
                    "failed"
                }
                .into(),
            );
            events.push(tx.webhook_body());
        }
    }
    let decisive = events.len();
    for i in 0..body.extra_events.min(decisive * 10) {
        let mut extra = events[i % decisive].clone();
        let id = {
            let mut state = sandbox.lock();
            state.next_id += 1;
            state.next_id
        };
        extra["data"]["id"] = json!(id);
        events.push(extra);
    }
    report.unique_events = events.len();
    let sends = shuffled_sends(&events, body.duplicates, body.bad_signatures);
    report.sent = sends.len();
    let outcomes: Vec<Delivered> = futures_util::stream::iter(sends)
        .map(|(body, genuine)| {
            let sender = sender.clone();
            async move {
                let mut signature = sender.sign(&body);
                if !genuine {
                    signature.replace_range(
                        0..2,
                        if signature.starts_with("00") {
                            "11"
                        } else {
                            "00"
                        },
                    );
                }
                sender.deliver(body, &signature).await
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
