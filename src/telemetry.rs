//! Structured logs via `tracing`: `RUST_LOG` filters (default `info`),
//! `PAYORCH_LOG_FORMAT=json` switches to one JSON object per line.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(fmt::layer().json().with_current_span(true))
            .try_init(),
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).try_init(),
    };
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process's Prometheus recorder, installed on first use.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may exist (an embedding program's); ours still renders.
        let _ = metrics::set_global_recorder(recorder);
        register_known_series();
        // Histogram samples are folded in by upkeep; without it they pile
        // up in a process nobody scrapes (a worker without a listener).
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("payorch-metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        handle
    })
}

/// Every counter and histogram whose labels are a fixed set starts at
/// zero, so alert rules and dashboards see the series before the first
/// event (a rate over a series that does not exist yet is no rate at all).
/// Connectors register theirs as they are built (their names are config);
/// the HTTP layer's request series are registered by [`crate::Core::start`]
/// beside this, since telemetry sits below `http`.
fn register_known_series() {
    use crate::ratelimit::Route;
    for result in ["applied", "duplicate", "ignored", "retried", "parked"] {
        metrics::counter!("payorch_webhooks_processed_total", "result" => result).increment(0);
    }
    for status in ["queued", "parked"] {
        metrics::counter!("payorch_webhooks_received_total", "status" => status).increment(0);
    }
    metrics::counter!("payorch_webhooks_rejected_total", "reason" => "signature").increment(0);
    for result in ["replayed", "in_flight", "reused", "error", "stale_owner"] {
        metrics::counter!("payorch_idempotency_total", "result" => result).increment(0);
    }
    for route in Route::ALL {
        for decision in ["allowed", "limited"] {
            for backend in ["redis", "local"] {
                metrics::counter!(
                    "payorch_ratelimit_decisions_total",
                    "route" => route.as_str(),
                    "decision" => decision,
                    "backend" => backend,
                )
                .increment(0);
            }
        }
    }
    for to in ["redis", "local"] {
        metrics::counter!("payorch_ratelimit_backend_switches_total", "to" => to).increment(0);
    }
    metrics::counter!("payorch_ratelimit_fallback_total").increment(0);
    metrics::counter!("payorch_queue_unroutable_total").increment(0);
    for result in ["delivered", "retrying", "failed", "deferred", "skipped"] {
        metrics::counter!("payorch_event_deliveries_total", "result" => result).increment(0);
    }
    // A histogram is registered by taking its handle; it renders empty.
    let _ = metrics::histogram!("payorch_webhook_processing_seconds");
    let _ = metrics::histogram!("payorch_event_attempt_seconds");
    metrics::counter!("payorch_events_relayed_total").increment(0);
    metrics::gauge!("payorch_events_outbox_lag_seconds").set(0.0);
    for kind in crate::domain::ReviewKind::ALL {
        metrics::gauge!("payorch_reviews_open", "kind" => kind.as_str()).set(0.0);
    }
    for kind in ["payment", "refund"] {
        for result in ["checked", "changed", "error"] {
            metrics::counter!("payorch_reconcile_total", "kind" => kind, "result" => result)
                .increment(0);
        }
    }
}

/// `GET /metrics`: the Prometheus text format.
#[poem::handler]
pub fn render_metrics() -> poem::Response {
    let mut text = metrics().render();
    failure_streak::render(&mut text);
    poem::Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}

/// `payorch_event_endpoint_failure_streak{endpoint}`: failed delivery
/// attempts in a row to one endpoint, in this process. Kept here rather
/// than in the `metrics` registry because a series must go when its
/// endpoint is deleted or disabled, and the Prometheus exporter can only
/// drop series by idleness, for every gauge at once.
pub mod failure_streak {
    use std::{fmt::Write, sync::OnceLock};

    use dashmap::DashMap;
    use uuid::Uuid;

    const NAME: &str = "payorch_event_endpoint_failure_streak";

    fn streaks() -> &'static DashMap<Uuid, u64> {
        static STREAKS: OnceLock<DashMap<Uuid, u64>> = OnceLock::new();
        STREAKS.get_or_init(DashMap::new)
    }

    /// An attempt to `endpoint` ended: a delivery resets its streak, a
    /// failure lengthens it.
    pub fn record(endpoint: Uuid, delivered: bool) {
        let mut streak = streaks().entry(endpoint).or_insert(0);
        *streak = if delivered { 0 } else { *streak + 1 };
    }

    /// The endpoint is gone (deleted or disabled): its series goes too.
    pub fn forget(endpoint: Uuid) {
        streaks().remove(&endpoint);
    }

    /// The endpoints that have a series.
    pub fn endpoints() -> Vec<Uuid> {
        streaks().iter().map(|entry| *entry.key()).collect()
    }

    pub fn get(endpoint: Uuid) -> Option<u64> {
        streaks().get(&endpoint).map(|streak| *streak)
    }

    pub(super) fn render(out: &mut String) {
        let mut series: Vec<(Uuid, u64)> = streaks()
            .iter()
            .map(|entry| (*entry.key(), *entry.value()))
            .collect();
        if series.is_empty() {
            return;
        }
        series.sort();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        let _ = writeln!(out, "# TYPE {NAME} gauge");
        for (endpoint, streak) in series {
            let _ = writeln!(out, "{NAME}{{endpoint=\"{endpoint}\"}} {streak}");
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_forgotten_endpoint_leaves_no_series() {
            let (kept, gone) = (Uuid::now_v7(), Uuid::now_v7());
            record(kept, false);
            record(kept, false);
            record(gone, false);
            forget(gone);
            let mut text = String::new();
            render(&mut text);
            assert!(
                text.contains(&format!("{NAME}{{endpoint=\"{kept}\"}} 2")),
                "{text}"
            );
            assert!(!text.contains(&gone.to_string()), "{text}");
            record(kept, true);
            assert_eq!(get(kept), Some(0));
        }
    }
}
