//! `/v1/operator/…`: what operators do, as JSON, in the same OpenAPI
//! document as the client API (tag `Operator`). Every operation is behind
//! the operator gate ([`operator_operation`]): an operator's bearer token,
//! never an API client's key. Each goes through the operator core
//! ([`crate::operators`]), as `payorch reviews` does, so a resolution is
//! recorded and audited the same way whichever way it came.

mod clients;
mod connectors;
mod endpoints;
mod payments;

use chrono::{DateTime, Utc};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;

use super::{
    ApiTags, AppState,
    auth::{ConsoleSession, OperatorAuth},
    error::{ApiError, OperatorProblem},
    gate::operator_operation,
};
use crate::{
    domain::{FieldError, ReviewAction, ReviewKind},
    operators::{Actor, ReplayError},
    payments::ReviewError,
    store::{operators::AuditEntry, reviews::ReviewFilter},
    views::ReviewView,
};

/// How long the overview waits for a queue's depth.
const QUEUE_READ: std::time::Duration = std::time::Duration::from_secs(2);
/// The most rows one listing returns.
pub const MAX_PAGE: u64 = 500;
const DEFAULT_PAGE: u64 = 100;
/// The longest note a resolution keeps, in characters.
pub const MAX_NOTE: usize = 2000;

pub use self::{
    clients::ClientsApi, connectors::ConnectorsApi, endpoints::EndpointsApi, payments::PaymentsApi,
};

pub struct OperatorApi {
    pub state: AppState,
}

/// An operator's decision on a review.
#[derive(Debug, Object, serde::Deserialize)]
pub struct ResolveBody {
    /// `mark_succeeded` or `mark_failed` (a refund's outcome, on the
    /// operator's word), `dismiss` (closed without touching money), or
    /// another action the review's kind allows.
    pub action: String,
    /// Why, for the record (at most 2000 characters).
    pub note: Option<String>,
}

/// One action in the audit log.
#[derive(Debug, Object)]
pub struct AuditEntryView {
    pub id: Uuid,
    /// Who: `operator:NAME` (this API) or `cli:USER` (the command line).
    pub operator: String,
    /// What: `review.<action>`, `operator.create`, `operator.disable`,
    /// `operator.token`, `console.sign_in`, `dead_letters.replay`,
    /// `api_client.create`, `api_client.revoke`, `api_client.rotate`,
    /// `endpoint.disable`, `event.redeliver`.
    pub action: String,
    /// On what: `review:<id>`, `operator:<name>`, `queue:<name>[/<id>]`,
    /// `client:<id>`, `endpoint:<id>`, `event:<id>`.
    pub target: String,
    #[oai(nullable)]
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(entry: AuditEntry) -> AuditEntryView {
        AuditEntryView {
            id: entry.id,
            operator: entry.operator,
            action: entry.action,
            target: entry.target,
            note: entry.note,
            at: entry.at,
        }
    }
}

/// Who is signed in, and the CSRF token their console sends back.
#[derive(Debug, Object)]
pub struct SessionView {
    /// The operator's name.
    pub operator: String,
    /// With a console session: the token to send in `X-CSRF-Token` on
    /// every request. With a bearer token: null.
    #[oai(nullable)]
    pub csrf_token: Option<String>,
}

/// One connector's circuit breaker and this instance's calls to it over
/// the last five minutes.
#[derive(Debug, Object)]
pub struct ConnectorState {
    pub name: String,
    /// `closed`, `half_open` or `open`.
    pub breaker: String,
    pub calls: u64,
    pub errors: u64,
    pub p99_ms: Option<u64>,
}

/// One queue's messages.
#[derive(Debug, Object)]
pub struct QueueState {
    /// `webhooks` or `events`.
    pub name: String,
    /// Waiting: ready, or to be retried. Null when the queue could not be
    /// read in time.
    #[oai(nullable)]
    pub waiting: Option<u64>,
    /// Parked in the dead letters.
    #[oai(nullable)]
    pub dead: Option<u64>,
}

/// What needs an operator's eye, now.
#[derive(Debug, Object)]
pub struct Overview {
    pub generated_at: DateTime<Utc>,
    /// Open reviews per kind (kinds with none left out).
    pub open_reviews: std::collections::BTreeMap<String, u64>,
    /// Each enabled connector's breaker, as this process sees it.
    pub connectors: Vec<ConnectorState>,
    pub queues: Vec<QueueState>,
    /// Age of the oldest merchant event not yet relayed, in seconds (0 when
    /// the outbox is empty).
    pub outbox_lag_seconds: f64,
    /// Workers connected to the webhooks queue (RabbitMQ's consumers);
    /// null when unknown (the queue table, or no answer in time).
    pub workers: Option<u64>,
}

/// A message parked in a dead-letter queue.
#[derive(Debug, Object)]
pub struct DeadLetterView {
    /// Its identity: replay it alone with this.
    pub id: String,
    /// `webhooks` or `events`.
    pub queue: String,
    /// The provider a webhook came from; `payorch` for a merchant event's
    /// delivery.
    pub provider: String,
    /// Attempts made before it was parked.
    pub attempts: u32,
    /// Why it was parked.
    #[oai(nullable)]
    pub reason: Option<String>,
    pub received_at: DateTime<Utc>,
    /// The message as queued (a provider's webhook body, or a merchant
    /// event's delivery).
    pub message: serde_json::Value,
}

/// Which parked messages to replay.
#[derive(Debug, Object, serde::Deserialize)]
pub struct ReplayBody {
    /// `webhooks` or `events`.
    pub queue: String,
    /// One message's identity; absent: all of the queue's.
    pub id: Option<String>,
}

/// How many parked messages went back to be handled again.
#[derive(Debug, Object)]
pub struct Replayed {
    pub replayed: u64,
}

#[derive(ApiResponse)]
pub enum DeadLetterList {
    /// Oldest first.
    #[oai(status = 200)]
    Ok(Json<Vec<DeadLetterView>>),
}

#[derive(ApiResponse)]
pub enum ReplayResponse {
    #[oai(status = 200)]
    Ok(Json<Replayed>),
}

#[derive(ApiResponse)]
pub enum SessionResponse {
    #[oai(status = 200)]
    Ok(Json<SessionView>),
}

#[derive(ApiResponse)]
pub enum OverviewResponse {
    #[oai(status = 200)]
    Ok(Json<Overview>),
}

#[derive(ApiResponse)]
pub enum ReviewList {
    /// Oldest first.
    #[oai(status = 200)]
    Ok(Json<Vec<ReviewView>>),
}

#[derive(ApiResponse)]
pub enum ReviewResponse {
    #[oai(status = 200)]
    Ok(Json<ReviewView>),
}

#[derive(ApiResponse)]
pub enum AuditList {
    /// Newest first.
    #[oai(status = 200)]
    Ok(Json<Vec<AuditEntryView>>),
}

#[OpenApi(prefix_path = "/v1/operator", tag = "ApiTags::Operator")]
impl OperatorApi {
    /// Who is calling; with the console's session, its CSRF token.
    #[oai(path = "/session", method = "get", transform = "operator_operation")]
    async fn session(
        &self,
        auth: OperatorAuth,
        req: &poem::Request,
    ) -> Result<SessionResponse, OperatorProblem> {
        let csrf_token = req
            .extensions()
            .get::<ConsoleSession>()
            .map(|session| crate::operators::csrf_token(&session.0));
        Ok(SessionResponse::Ok(Json(SessionView {
            operator: auth.operator().name,
            csrf_token,
        })))
    }

    /// What needs attention now: open reviews by kind, breakers, queue
    /// depths and dead letters, the outbox's lag.
    ///
    /// Queue depths are read with a 2 s limit each (null when the queue
    /// did not answer in time).
    #[oai(path = "/overview", method = "get", transform = "operator_operation")]
    async fn overview(&self, _auth: OperatorAuth) -> Result<OverviewResponse, OperatorProblem> {
        let state = &self.state;
        let open_reviews = crate::store::reviews::count_open(&state.db)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(|(kind, n)| (kind, n.max(0) as u64))
            .collect();
        let now = Utc::now();
        let calls = state.payments.connectors().calls();
        let connectors = state
            .payments
            .connectors()
            .breakers()
            .into_iter()
            .map(|(name, breaker)| {
                let recent = calls.recent(name, now);
                ConnectorState {
                    name: name.to_owned(),
                    breaker: breaker.as_str().to_owned(),
                    calls: recent.calls(),
                    errors: recent.errors(),
                    p99_ms: recent.latency_ms(0.99),
                }
            })
            .collect();
        let mut queues = Vec::new();
        let mut workers = None;
        for (name, queue) in [
            ("webhooks", &state.webhooks.queue),
            ("events", state.events.queue()),
        ] {
            let status = tokio::time::timeout(QUEUE_READ, queue.status()).await;
            let (waiting, dead) = match status {
                Ok(Ok((waiting, dead, consumers))) => {
                    if name == "webhooks" {
                        workers = consumers;
                    }
                    (Some(waiting), Some(dead))
                }
                _ => (None, None),
            };
            queues.push(QueueState {
                name: name.to_owned(),
                waiting,
                dead,
            });
        }
        let generated_at = Utc::now();
        let outbox_lag_seconds = crate::store::events::oldest_unpublished(&state.db)
            .await
            .map_err(ApiError::from)?
            .map(|at| (generated_at - at).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        Ok(OverviewResponse::Ok(Json(Overview {
            generated_at,
            open_reviews,
            connectors,
            queues,
            outbox_lag_seconds,
            workers,
        })))
    }

    /// List reviews, oldest first.
    ///
    /// `open=true`: those still open; `open=false`: those resolved; absent:
    /// all. `kind` keeps one kind. `limit` 1–500 (default 100); for the
    /// next page pass the last review's id as `after`.
    #[oai(path = "/reviews", method = "get", transform = "operator_operation")]
    async fn reviews(
        &self,
        _auth: OperatorAuth,
        open: Query<Option<bool>>,
        kind: Query<Option<String>>,
        after: Query<Option<Uuid>>,
        limit: Query<Option<u64>>,
    ) -> Result<ReviewList, OperatorProblem> {
        let limit = page_limit(limit.0)?;
        if let Some(kind) = &kind.0
            && ReviewKind::parse(kind).is_none()
        {
            return Err(invalid("kind", format!("unknown review kind `{kind}`")));
        }
        let operators = &self.state.operators;
        let after = match after.0 {
            Some(id) => match operators.review(id).await {
                Ok(review) => Some(review),
                Err(ReviewError::NotFound) => {
                    return Err(invalid("after", format!("no review {id}")));
                }
                Err(err) => return Err(err.into()),
            },
            None => None,
        };
        let reviews = operators
            .reviews(ReviewFilter {
                open: open.0,
                kind: kind.0.as_deref(),
                after: after.as_ref(),
                limit,
            })
            .await?;
        Ok(ReviewList::Ok(Json(
            reviews.into_iter().map(ReviewView::new).collect(),
        )))
    }

    /// Get a review.
    #[oai(
        path = "/reviews/:id",
        method = "get",
        transform = "operator_operation"
    )]
    async fn review(
        &self,
        _auth: OperatorAuth,
        id: Path<Uuid>,
    ) -> Result<ReviewResponse, OperatorProblem> {
        let review = self.state.operators.review(id.0).await?;
        Ok(ReviewResponse::Ok(Json(ReviewView::new(review))))
    }

    /// Resolve an open review.
    ///
    /// The decision is recorded on the review (`resolved_by`
    /// `operator:NAME`, when, the action, the note) and in the audit log;
    /// an action that settles a refund settles it as the payment core does
    /// for a provider's answer. 409 `review_already_resolved` for a review
    /// resolved before; 422 `review_action_not_applicable` for an action
    /// that does not fit the review's kind.
    #[oai(
        path = "/reviews/:id/resolve",
        method = "post",
        transform = "operator_operation"
    )]
    async fn resolve(
        &self,
        auth: OperatorAuth,
        id: Path<Uuid>,
        body: Json<ResolveBody>,
    ) -> Result<ReviewResponse, OperatorProblem> {
        let ResolveBody { action, note } = body.0;
        let Some(action) = ReviewAction::parse(&action) else {
            return Err(invalid("action", format!("unknown action `{action}`")));
        };
        let note = note_of(note)?;
        let by = Actor::Operator(auth.operator().name);
        let resolved = self
            .state
            .operators
            .resolve_review(&self.state.payments, id.0, action, &by, note)
            .await?;
        Ok(ReviewResponse::Ok(Json(ReviewView::new(resolved))))
    }

    /// Messages parked in a dead-letter queue, oldest first.
    ///
    /// `queue`: `webhooks` (default) or `events`. `limit` 1–500 (default
    /// 100).
    #[oai(
        path = "/dead-letters",
        method = "get",
        transform = "operator_operation"
    )]
    async fn dead_letters(
        &self,
        _auth: OperatorAuth,
        queue: Query<Option<String>>,
        limit: Query<Option<u64>>,
    ) -> Result<DeadLetterList, OperatorProblem> {
        let limit = page_limit(limit.0)?;
        let (name, queue) = self.queue_named(queue.0.as_deref())?;
        let parked = queue
            .dead_letters(limit as usize)
            .await
            .map_err(|_| ApiError::Unavailable("the queue"))?;
        Ok(DeadLetterList::Ok(Json(
            parked
                .into_iter()
                .map(|envelope| DeadLetterView {
                    id: envelope.message.dedup_key().to_owned(),
                    queue: name.to_owned(),
                    provider: envelope.message.provider().to_owned(),
                    attempts: envelope.attempt + 1,
                    reason: envelope.reason,
                    received_at: envelope.message.received_at(),
                    message: serde_json::to_value(&envelope.message)
                        .unwrap_or(serde_json::Value::Null),
                })
                .collect(),
        )))
    }

    /// Replay parked messages: one (`id`), or all of a queue's.
    ///
    /// Each goes back to its queue with a fresh attempt count and is
    /// handled again (a message that still cannot be handled is parked
    /// again). Recorded in the audit log as `dead_letters.replay`.
    #[oai(
        path = "/dead-letters/replay",
        method = "post",
        transform = "operator_operation"
    )]
    async fn replay(
        &self,
        auth: OperatorAuth,
        body: Json<ReplayBody>,
    ) -> Result<ReplayResponse, OperatorProblem> {
        let ReplayBody { queue, id } = body.0;
        let (name, queue) = self.queue_named(Some(&queue))?;
        let by = Actor::Operator(auth.operator().name);
        let replayed = self
            .state
            .operators
            .replay_dead_letters(queue, name, id.as_deref(), &by)
            .await
            .map_err(|err| match err {
                ReplayError::Database(err) => ApiError::from(err),
                ReplayError::Queue(_) => ApiError::Unavailable("the queue"),
            })?;
        Ok(ReplayResponse::Ok(Json(Replayed {
            replayed: replayed as u64,
        })))
    }

    /// The audit log, newest first.
    ///
    /// Every operator action, whether through this API or the command
    /// line. `limit` 1–500 (default 100).
    #[oai(path = "/audit", method = "get", transform = "operator_operation")]
    async fn audit(
        &self,
        _auth: OperatorAuth,
        limit: Query<Option<u64>>,
    ) -> Result<AuditList, OperatorProblem> {
        let limit = page_limit(limit.0)?;
        let entries = self.state.operators.audit_log(limit).await?;
        Ok(AuditList::Ok(Json(
            entries.into_iter().map(AuditEntryView::from).collect(),
        )))
    }
}

impl OperatorApi {
    /// The queue `name` names (`webhooks`, the default, or `events`).
    fn queue_named(
        &self,
        name: Option<&str>,
    ) -> Result<(&'static str, &crate::queue::WebhookQueue), OperatorProblem> {
        match name.unwrap_or("webhooks") {
            "webhooks" => Ok(("webhooks", &self.state.webhooks.queue)),
            "events" => Ok(("events", self.state.events.queue())),
            other => Err(invalid(
                "queue",
                format!("`{other}`: one of webhooks, events"),
            )),
        }
    }
}

fn page_limit(limit: Option<u64>) -> Result<u64, OperatorProblem> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ))
    }
}

/// Each API client's name, by id.
async fn client_names(
    operators: &crate::operators::Operators,
) -> Result<std::collections::HashMap<Uuid, String>, OperatorProblem> {
    Ok(operators
        .clients()
        .await?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect())
}

/// An operator's note: none when blank, at most [`MAX_NOTE`] characters.
fn note_of(note: Option<String>) -> Result<Option<String>, OperatorProblem> {
    let note = note.filter(|note| !note.trim().is_empty());
    if note
        .as_ref()
        .is_some_and(|note| note.chars().count() > MAX_NOTE)
    {
        return Err(invalid("note", format!("at most {MAX_NOTE} characters")));
    }
    Ok(note)
}

fn invalid(field: &str, message: String) -> OperatorProblem {
    OperatorProblem(ApiError::Validation {
        errors: vec![FieldError::new(field, message)],
    })
}
