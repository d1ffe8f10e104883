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
    poem::Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(metrics().render())
}
