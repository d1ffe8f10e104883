//! `/v1/operator/payments`: find payments, and one payment's timeline.

use chrono::{DateTime, Utc};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;

use super::{client_names, invalid};
use crate::{
    domain::PaymentStatus,
    http::{
        ApiTags, AppState,
        auth::OperatorAuth,
        error::{ApiError, OperatorProblem},
        gate::operator_operation,
    },
    operators::payments::TimelineEntry,
    provider::routing::ConnectorName,
    store::payments::{Payment, PaymentSearch, earlier_connectors},
};

/// The most payments one search answers with.
pub const MAX_RESULTS: u64 = 100;
const DEFAULT_RESULTS: u64 = 50;

pub struct PaymentsApi {
    pub state: AppState,
}

/// A payment in a list.
#[derive(Debug, Object)]
pub struct PaymentRow {
    pub id: Uuid,
    /// The reference the provider knows it by.
    pub reference: String,
    /// The client's own reference.
    pub client_reference: String,
    pub client_id: Uuid,
    /// The API client's name (null when it is not known).
    pub client_name: Option<String>,
    pub connector: String,
    /// In minor units.
    pub amount: i64,
    pub currency: String,
    pub email: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Payment> for PaymentRow {
    fn from(p: &Payment) -> PaymentRow {
        PaymentRow {
            id: p.id,
            reference: p.reference.clone(),
            client_reference: p.client_reference.clone(),
            client_id: p.client_id,
            client_name: None,
            connector: p.provider.clone(),
            amount: p.amount,
            currency: p.currency.clone(),
            email: p.email.clone(),
            status: p.status.clone(),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// A payment with everything payorch keeps about it.
#[derive(Debug, Object)]
pub struct PaymentDetail {
    #[oai(flatten)]
    pub row: PaymentRow,
    pub failure_reason: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    /// In minor units.
    pub refunded_amount: i64,
    /// As the client sent it.
    pub metadata: Option<serde_json::Value>,
    /// Connectors it was opened at before this one (failover), oldest first.
    pub earlier_connectors: Vec<String>,
}

#[derive(Debug, Object)]
pub struct TimelineEntryView {
    pub at: DateTime<Utc>,
    /// `transition`, `provider_call`, `webhook`, `refund`, `event`,
    /// `delivery_attempt` or `review`.
    pub kind: String,
    pub title: String,
    /// Free text; may carry what merchants and providers sent.
    pub detail: Option<String>,
    /// Provider calls and delivery attempts.
    pub duration_ms: Option<i64>,
    pub outcome: Option<String>,
}

impl From<TimelineEntry> for TimelineEntryView {
    fn from(entry: TimelineEntry) -> TimelineEntryView {
        TimelineEntryView {
            at: entry.at,
            kind: entry.kind.to_owned(),
            title: entry.title,
            detail: entry.detail,
            duration_ms: entry.duration_ms,
            outcome: entry.outcome,
        }
    }
}

#[derive(Debug, Object)]
pub struct PaymentResults {
    /// Newest first.
    pub payments: Vec<PaymentRow>,
    /// Pass as `before` for the next page; null on the last page.
    pub next_before: Option<Uuid>,
}

#[derive(Debug, Object)]
pub struct PaymentTimeline {
    pub payment: PaymentDetail,
    /// Oldest first.
    pub timeline: Vec<TimelineEntryView>,
}

#[derive(ApiResponse)]
pub enum SearchResponse {
    #[oai(status = 200)]
    Ok(Json<PaymentResults>),
}

#[derive(ApiResponse)]
pub enum TimelineResponse {
    #[oai(status = 200)]
    Ok(Json<PaymentTimeline>),
}

#[OpenApi(prefix_path = "/v1/operator", tag = "ApiTags::Operator")]
impl PaymentsApi {
    /// Search payments, newest first.
    ///
    /// Every parameter given must match: `reference` (the client's or the
    /// provider-facing one, exactly), `email` (exactly; the domain's case
    /// does not matter), `status`, `connector`, `client_id`, `from`
    /// (created at or after) and `to` (created before), RFC 3339. `limit`
    /// 1–100 (default 50); for the next page pass `next_before` as
    /// `before`.
    #[oai(path = "/payments", method = "get", transform = "operator_operation")]
    #[allow(clippy::too_many_arguments)]
    async fn search(
        &self,
        _auth: OperatorAuth,
        reference: Query<Option<String>>,
        email: Query<Option<String>>,
        status: Query<Option<String>>,
        connector: Query<Option<String>>,
        client_id: Query<Option<Uuid>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        limit: Query<Option<u64>>,
        before: Query<Option<Uuid>>,
    ) -> Result<SearchResponse, OperatorProblem> {
        let limit = limit.0.unwrap_or(DEFAULT_RESULTS);
        if !(1..=MAX_RESULTS).contains(&limit) {
            return Err(invalid(
                "limit",
                format!("must be between 1 and {MAX_RESULTS}"),
            ));
        }
        let status = given(status.0);
        if let Some(status) = &status
            && !PaymentStatus::ALL.iter().any(|s| s.as_str() == status)
        {
            return Err(invalid(
                "status",
                format!("unknown payment status `{status}`"),
            ));
        }
        let connector = given(connector.0);
        if let Some(connector) = &connector
            && ConnectorName::of_stored(connector).is_none()
        {
            return Err(invalid(
                "connector",
                format!("unknown connector `{connector}`"),
            ));
        }
        let operators = &self.state.operators;
        let after = match before.0 {
            Some(id) => match operators.payment(id).await? {
                Some(payment) => Some((payment.created_at, payment.id)),
                None => return Err(invalid("before", format!("no payment {id}"))),
            },
            None => None,
        };
        let search = PaymentSearch {
            reference: given(reference.0),
            email: given(email.0).map(|email| match email.rsplit_once('@') {
                Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
                None => email,
            }),
            status,
            connector,
            client_id: client_id.0,
            from: from.0,
            to: to.0,
            after,
            limit,
        };
        let found = operators.search_payments(&search).await?;
        let next_before = (found.len() as u64 == limit)
            .then(|| found.last().map(|p| p.id))
            .flatten();
        let names = client_names(operators).await?;
        Ok(SearchResponse::Ok(Json(PaymentResults {
            payments: found
                .iter()
                .map(|p| PaymentRow {
                    client_name: names.get(&p.client_id).cloned(),
                    ..PaymentRow::from(p)
                })
                .collect(),
            next_before,
        })))
    }

    /// A payment and its whole timeline, oldest first: transitions, calls
    /// to its connectors (with their durations), provider webhooks, refunds,
    /// reviews, merchant events and each delivery attempt.
    #[oai(
        path = "/payments/:id",
        method = "get",
        transform = "operator_operation"
    )]
    async fn timeline(
        &self,
        _auth: OperatorAuth,
        id: Path<Uuid>,
    ) -> Result<TimelineResponse, OperatorProblem> {
        let (payment, timeline) = self
            .state
            .operators
            .payment_timeline(id.0)
            .await?
            .ok_or(ApiError::NotFound)?;
        let names = client_names(&self.state.operators).await?;
        let detail = PaymentDetail {
            row: PaymentRow {
                client_name: names.get(&payment.client_id).cloned(),
                ..PaymentRow::from(&payment)
            },
            failure_reason: payment.failure_reason.clone(),
            paid_at: payment.paid_at,
            refunded_amount: payment.refunded_amount,
            metadata: payment.metadata.clone(),
            earlier_connectors: earlier_connectors(&payment).map(str::to_owned).collect(),
        };
        Ok(TimelineResponse::Ok(Json(PaymentTimeline {
            payment: detail,
            timeline: timeline.into_iter().map(TimelineEntryView::from).collect(),
        })))
    }
}

/// A query parameter, unless blank.
fn given(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}
