//! What each call to a connector did, kept two ways:
//! - recent totals per connector in this process ([`CallLog::recent`]):
//!   calls, errors and a latency histogram in 30-second buckets over the
//!   last five minutes, for the console's overview and connectors page;
//! - one [`Recorded`] call per call about a payment, handed to whoever
//!   asked for them ([`CallLog::recorded`]: `serve` and `worker` write them
//!   to `provider_calls`, for the payment's timeline, in batches, off the
//!   request's path). A full queue drops the record rather than wait
//!   (`payorch_provider_calls_unrecorded_total`): it is a record for
//!   people, the payment's state does not depend on it.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::ProviderError;

/// Width of one bucket of the recent totals.
pub const BUCKET_SECONDS: i64 = 30;
/// How many buckets the recent totals keep (five minutes).
pub const BUCKETS: usize = 10;
/// Upper bounds of the latency histogram's buckets, in milliseconds (the
/// last one catches the rest).
const LATENCY_BOUNDS_MS: [u64; 14] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000,
];
/// Records waiting to be taken; past it, records are dropped.
const PENDING_RECORDS: usize = 4_096;

/// One call to a connector.
#[derive(Debug, Clone)]
pub struct Call {
    pub connector: &'static str,
    pub operation: &'static str,
    /// The payment's provider-facing reference; `None` for calls about no
    /// one payment (a listing).
    pub reference: Option<String>,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub outcome: Result<(), ProviderError>,
}

/// A call about one payment, as it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The payment's provider-facing reference.
    pub reference: String,
    pub connector: &'static str,
    pub operation: &'static str,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    /// `ok`, or the error's kind.
    pub outcome: &'static str,
    pub error: Option<String>,
}

/// One connector's calls over a bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Start of the bucket, in seconds since the epoch.
    pub start: i64,
    pub calls: u64,
    pub errors: u64,
    latencies: [u64; LATENCY_BOUNDS_MS.len() + 1],
    /// The longest call, for quantiles past the last bound.
    longest_ms: u64,
}

/// One connector's calls over the last [`BUCKETS`] buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recent {
    /// Oldest first, one per bucket (empty ones included).
    pub buckets: Vec<Bucket>,
}

impl Recent {
    pub fn calls(&self) -> u64 {
        self.buckets.iter().map(|b| b.calls).sum()
    }

    pub fn errors(&self) -> u64 {
        self.buckets.iter().map(|b| b.errors).sum()
    }

    /// The latency below which `quantile` of the calls ended, as the upper
    /// bound of its histogram bucket (past the last bound: the longest
    /// call); `None` without calls.
    pub fn latency_ms(&self, quantile: f64) -> Option<u64> {
        let mut merged = [0u64; LATENCY_BOUNDS_MS.len() + 1];
        for bucket in &self.buckets {
            for (total, count) in merged.iter_mut().zip(bucket.latencies) {
                *total += count;
            }
        }
        let calls: u64 = merged.iter().sum();
        if calls == 0 {
            return None;
        }
        let rank = ((calls as f64) * quantile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, count) in merged.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(LATENCY_BOUNDS_MS.get(i).copied().unwrap_or_else(|| {
                    self.buckets.iter().map(|b| b.longest_ms).max().unwrap_or(0)
                }));
            }
        }
        None
    }
}

/// The calls of one set of connectors (one [`super::Connectors`]).
#[derive(Default)]
pub struct CallLog {
    recent: Mutex<HashMap<&'static str, Vec<Bucket>>>,
    records: OnceLock<mpsc::Sender<Recorded>>,
}

impl CallLog {
    /// Counts `call` and, once someone asked for them
    /// ([`Self::recorded`]), hands its record over.
    pub fn add(&self, call: Call) {
        let refused = matches!(call.outcome, Err(ProviderError::CircuitOpen(_)));
        if !refused {
            self.count(&call);
        }
        let (Some(records), Some(reference)) = (self.records.get(), call.reference) else {
            return;
        };
        let (outcome, error) = match &call.outcome {
            Ok(()) => ("ok", None),
            Err(err) => (err.kind(), Some(err.to_string())),
        };
        let record = Recorded {
            reference,
            connector: call.connector,
            operation: call.operation,
            started_at: call.started_at,
            duration_ms: i64::try_from(call.duration.as_millis()).unwrap_or(i64::MAX),
            outcome,
            error,
        };
        if records.try_send(record).is_err() {
            metrics::counter!("payorch_provider_calls_unrecorded_total").increment(1);
        }
    }

    fn count(&self, call: &Call) {
        let start = bucket_start(call.started_at.timestamp());
        let millis = u64::try_from(call.duration.as_millis()).unwrap_or(u64::MAX);
        let slot = LATENCY_BOUNDS_MS
            .iter()
            .position(|bound| millis <= *bound)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        let mut recent = self
            .recent
            .lock()
            .expect("the call log's lock is never poisoned");
        let buckets = recent.entry(call.connector).or_default();
        let bucket = match buckets.iter_mut().find(|b| b.start == start) {
            Some(bucket) => bucket,
            None => {
                buckets.retain(|b| b.start > start - BUCKETS as i64 * BUCKET_SECONDS);
                buckets.push(Bucket {
                    start,
                    ..Bucket::default()
                });
                buckets.last_mut().expect("just pushed")
            }
        };
        bucket.calls += 1;
        bucket.errors += u64::from(call.outcome.is_err());
        bucket.latencies[slot] += 1;
        bucket.longest_ms = bucket.longest_ms.max(millis);
    }

    /// `connector`'s calls over the last [`BUCKETS`] buckets up to `now`.
    pub fn recent(&self, connector: &str, now: DateTime<Utc>) -> Recent {
        let newest = bucket_start(now.timestamp());
        let recent = self
            .recent
            .lock()
            .expect("the call log's lock is never poisoned");
        let kept = recent.get(connector);
        let buckets = (0..BUCKETS as i64)
            .rev()
            .map(|back| newest - back * BUCKET_SECONDS)
            .map(|start| {
                kept.and_then(|buckets| buckets.iter().find(|b| b.start == start))
                    .cloned()
                    .unwrap_or(Bucket {
                        start,
                        ..Bucket::default()
                    })
            })
            .collect();
        Recent { buckets }
    }

    /// From now on, each call about a payment is handed over on the
    /// returned channel (the first caller gets it; later ones `None`). The
    /// channel closes when the log is dropped.
    pub fn recorded(&self) -> Option<mpsc::Receiver<Recorded>> {
        let (tx, rx) = mpsc::channel(PENDING_RECORDS);
        self.records.set(tx).ok().map(|()| rx)
    }
}

fn bucket_start(seconds: i64) -> i64 {
    seconds - seconds.rem_euclid(BUCKET_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(at: DateTime<Utc>, millis: u64, ok: bool) -> Call {
        Call {
            connector: "paystack",
            operation: "verify",
            reference: None,
            started_at: at,
            duration: Duration::from_millis(millis),
            outcome: if ok {
                Ok(())
            } else {
                Err(ProviderError::Timeout)
            },
        }
    }

    #[test]
    fn recent_totals_count_calls_errors_and_latency_per_bucket() {
        let log = CallLog::default();
        let now: DateTime<Utc> = "2026-12-07T10:00:05Z".parse().unwrap();
        for _ in 0..98 {
            log.add(call(now, 8, true));
        }
        log.add(call(now, 700, false));
        log.add(call(now - chrono::Duration::seconds(60), 3, true));
        // Too old for the window, and refused by the breaker: not counted.
        log.add(call(now - chrono::Duration::seconds(400), 3, true));
        log.add(Call {
            outcome: Err(ProviderError::CircuitOpen("paystack")),
            ..call(now, 0, false)
        });

        let recent = log.recent("paystack", now);
        assert_eq!(recent.buckets.len(), BUCKETS);
        assert_eq!(recent.calls(), 100);
        assert_eq!(recent.errors(), 1);
        assert_eq!(recent.buckets.last().unwrap().calls, 99);
        assert_eq!(recent.buckets[BUCKETS - 3].calls, 1);
        assert_eq!(recent.latency_ms(0.5), Some(10));
        assert_eq!(recent.latency_ms(0.99), Some(10));
        assert_eq!(recent.latency_ms(1.0), Some(1_000));
        log.add(call(now, 45_000, false));
        assert_eq!(log.recent("paystack", now).latency_ms(1.0), Some(45_000));
        assert_eq!(log.recent("flutterwave", now).calls(), 0);
        assert_eq!(log.recent("flutterwave", now).latency_ms(0.5), None);
    }
}
