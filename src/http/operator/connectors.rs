//! `/v1/operator/connectors`: each connector's breaker and recent calls
//! (this instance's), and the routing rules.

use chrono::{DateTime, TimeZone, Utc};
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};

use crate::{
    http::{
        ApiTags, AppState, auth::OperatorAuth, error::OperatorProblem, gate::operator_operation,
    },
    provider::calls::{BUCKET_SECONDS, BUCKETS, Recent},
};

pub struct ConnectorsApi {
    pub state: AppState,
}

#[derive(Debug, Object)]
pub struct CallBucket {
    /// Start of the bucket.
    pub at: DateTime<Utc>,
    pub calls: u64,
    pub errors: u64,
}

/// One connector: its breaker and its calls over the window.
#[derive(Debug, Object)]
pub struct ConnectorView {
    pub name: String,
    /// `closed`, `half_open` or `open`.
    pub breaker: String,
    pub calls: u64,
    /// Calls that failed (refused, unavailable, timed out).
    pub errors: u64,
    /// `errors / calls`; null without calls.
    pub error_rate: Option<f64>,
    /// Upper bound of the histogram bucket holding the median call.
    pub p50_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    /// One bucket per 30 s, oldest first.
    pub series: Vec<CallBucket>,
}

impl ConnectorView {
    pub fn new(name: &str, breaker: &str, recent: &Recent) -> ConnectorView {
        let (calls, errors) = (recent.calls(), recent.errors());
        ConnectorView {
            name: name.to_owned(),
            breaker: breaker.to_owned(),
            calls,
            errors,
            error_rate: (calls > 0).then(|| errors as f64 / calls as f64),
            p50_ms: recent.latency_ms(0.5),
            p99_ms: recent.latency_ms(0.99),
            series: recent
                .buckets
                .iter()
                .map(|b| CallBucket {
                    at: Utc.timestamp_opt(b.start, 0).single().unwrap_or_default(),
                    calls: b.calls,
                    errors: b.errors,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Object)]
pub struct RouteEntry {
    pub name: String,
    pub weight: Option<u32>,
}

/// One routing rule.
#[derive(Debug, Object)]
pub struct RouteRule {
    /// A currency code, or `*` for every other.
    pub currency: String,
    /// First choice first (weights share the first choice among them).
    pub connectors: Vec<RouteEntry>,
}

#[derive(Debug, Object)]
pub struct ConnectorsView {
    /// The window the counts cover.
    pub window_seconds: u64,
    pub connectors: Vec<ConnectorView>,
    /// `PAYORCH_ROUTING`; empty: each payment tries the enabled connectors
    /// in order.
    pub routing: Vec<RouteRule>,
    /// `PAYORCH_PROVIDERS`, in order.
    pub enabled: Vec<String>,
}

#[derive(ApiResponse)]
pub enum ConnectorsResponse {
    #[oai(status = 200)]
    Ok(Json<ConnectorsView>),
}

#[OpenApi(prefix_path = "/v1/operator", tag = "ApiTags::Operator")]
impl ConnectorsApi {
    /// Connectors: breaker state, this instance's calls over the last five
    /// minutes (count, errors, latency, a series per 30 s), and the
    /// routing table.
    #[oai(path = "/connectors", method = "get", transform = "operator_operation")]
    async fn connectors(&self, _auth: OperatorAuth) -> Result<ConnectorsResponse, OperatorProblem> {
        let connectors = self.state.payments.connectors();
        let now = Utc::now();
        let views = connectors
            .breakers()
            .into_iter()
            .map(|(name, breaker)| {
                ConnectorView::new(
                    name,
                    breaker.as_str(),
                    &connectors.calls().recent(name, now),
                )
            })
            .collect();
        let routing = connectors
            .routing()
            .rules()
            .map(|(currency, entries)| RouteRule {
                currency: currency.map_or_else(|| "*".to_owned(), |c| c.as_str().to_owned()),
                connectors: entries
                    .into_iter()
                    .map(|(name, weight)| RouteEntry {
                        name: name.as_str().to_owned(),
                        weight,
                    })
                    .collect(),
            })
            .collect();
        Ok(ConnectorsResponse::Ok(Json(ConnectorsView {
            window_seconds: (BUCKET_SECONDS as u64) * BUCKETS as u64,
            connectors: views,
            routing,
            enabled: connectors
                .enabled()
                .map(|(name, _)| name.as_str().to_owned())
                .collect(),
        })))
    }
}
