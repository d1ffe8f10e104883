//! `POST /v1/payments/initialize`, `POST /v1/payments/{reference}/verify`,
//! `GET /v1/payments/{reference}`: thin handlers. Each operation's gate
//! (declared with its path) has authenticated and rate limited the request;
//! the handler parses the body, makes one call to the payment core
//! ([`crate::payments::Payments`]) and maps its error to problem+json.

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Header, param::Path, payload::Json};
use serde::Serialize;
use uuid::Uuid;

use super::{
    ApiTags, AppState,
    auth::ClientAuth,
    error::{ApiError, created_or_problem},
    gate::{client_operation, limit_initialize, limit_verify},
    problem::{ProblemJson, StoredJson},
    requests::{InitializeBody, idempotent, validate},
};
use crate::{
    payments::{Answer, PaymentError, Rendered},
    store::payments::{Payment, Transition},
};

pub struct PaymentsApi {
    pub state: AppState,
}

/// A payment as clients see it.
#[derive(Debug, Object, Serialize)]
pub struct PaymentView {
    pub id: Uuid,
    /// Your reference (unique among your payments).
    pub reference: String,
    /// The reference the provider knows the payment by: yours, unless
    /// another client already used it, then one payorch generated.
    pub provider_reference: String,
    /// created, pending, succeeded, failed, abandoned or refunded.
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub email: String,
    pub provider: String,
    #[oai(nullable)]
    pub authorization_url: Option<String>,
    #[oai(nullable)]
    pub access_code: Option<String>,
    #[oai(nullable)]
    pub metadata: Option<serde_json::Value>,
    /// Why a payment failed or was flagged (e.g. `amount_mismatch`).
    #[oai(nullable)]
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[oai(nullable)]
    pub paid_at: Option<DateTime<Utc>>,
    /// The sum of this payment's refunds that have not failed (pending ones
    /// included), in minor units.
    pub refunded_amount: i64,
    /// Counts this payment's changes: a later state has a higher version
    /// (merchant events can be ordered by it).
    pub version: i64,
    /// The audit trail, oldest first (GET only).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transitions: Option<Vec<TransitionView>>,
}

#[derive(Debug, Object, Serialize)]
pub struct TransitionView {
    pub from_status: String,
    pub to_status: String,
    /// What caused it: `verify:charge_succeeded`, `webhook:charge_failed:ignored_late`…
    pub cause: String,
    #[oai(nullable)]
    pub event_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl PaymentView {
    pub fn new(payment: Payment, transitions: Option<Vec<Transition>>) -> PaymentView {
        PaymentView {
            id: payment.id,
            reference: payment.client_reference,
            provider_reference: payment.reference,
            status: payment.status,
            amount: payment.amount,
            currency: payment.currency,
            email: payment.email,
            provider: payment.provider,
            authorization_url: payment.authorization_url,
            access_code: payment.access_code,
            metadata: payment.metadata,
            failure_reason: payment.failure_reason,
            created_at: payment.created_at,
            updated_at: payment.updated_at,
            paid_at: payment.paid_at,
            refunded_amount: payment.refunded_amount,
            version: i64::from(payment.version),
            transitions: transitions.map(|rows| {
                rows.into_iter()
                    .map(|t| TransitionView {
                        from_status: t.from_status,
                        to_status: t.to_status,
                        cause: t.cause,
                        event_id: t.event_id,
                        created_at: t.created_at,
                    })
                    .collect()
            }),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a payment view serializes")
    }
}

#[derive(ApiResponse)]
pub enum InitializeResponse {
    /// Created. With `Idempotent-Replayed: true`, this is the stored response
    /// of an earlier request with the same Idempotency-Key.
    #[oai(status = 201)]
    Created(
        StoredJson<PaymentView>,
        /// `true` when replayed from an earlier request with this key.
        #[oai(header = "Idempotent-Replayed")]
        Option<String>,
    ),
    /// An error stored under the Idempotency-Key (a 4xx), replayed or first sent.
    StoredError(
        StatusCode,
        ProblemJson,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum PaymentResponse {
    /// The payment.
    #[oai(status = 200)]
    Ok(Json<PaymentView>),
}

#[OpenApi(prefix_path = "/v1/payments", tag = "ApiTags::Payments")]
impl PaymentsApi {
    /// Initialize a payment.
    ///
    /// Creates the payment, opens the provider transaction and returns the
    /// checkout link. Send an `Idempotency-Key` (a UUID) to retry safely:
    /// the same key with the same body replays the first response.
    #[oai(path = "/initialize", method = "post", transform = "limit_initialize")]
    async fn initialize(
        &self,
        auth: ClientAuth,
        /// A UUID naming this attempt; retries reuse it.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: Json<InitializeBody>,
    ) -> Result<InitializeResponse, ApiError> {
        let idempotent = idempotent(idempotency_key.0, "initialize", &body.0)?;
        let answer = self
            .state
            .payments
            .initialize(auth.0.id, idempotent, validate(&body.0), render_initialize)
            .await?;
        Ok(match answer {
            Answer::Fresh(rendered) => respond(rendered, false),
            Answer::Replayed(rendered) => respond(rendered, true),
        })
    }

    /// Verify a payment with the provider.
    ///
    /// Asks the provider for the payment's state and applies it. A payment
    /// already final is returned as it is, without asking again.
    #[oai(
        path = "/:reference/verify",
        method = "post",
        transform = "limit_verify"
    )]
    async fn verify(
        &self,
        auth: ClientAuth,
        reference: Path<String>,
    ) -> Result<PaymentResponse, ApiError> {
        let payment = self.state.payments.verify(auth.0.id, &reference.0).await?;
        Ok(PaymentResponse::Ok(Json(PaymentView::new(payment, None))))
    }

    /// Get a payment with its audit trail.
    #[oai(path = "/:reference", method = "get", transform = "client_operation")]
    async fn get(
        &self,
        auth: ClientAuth,
        reference: Path<String>,
    ) -> Result<PaymentResponse, ApiError> {
        let (payment, transitions) = self.state.payments.get(auth.0.id, &reference.0).await?;
        Ok(PaymentResponse::Ok(Json(PaymentView::new(
            payment,
            Some(transitions),
        ))))
    }
}

/// What initialize answers, as sent and as stored under its key: the
/// payment, or a problem.
fn render_initialize(result: Result<Payment, PaymentError>) -> Rendered {
    created_or_problem(result, |payment| PaymentView::new(payment, None).to_json())
}

fn respond(rendered: Rendered, replayed: bool) -> InitializeResponse {
    let replayed = replayed.then(|| "true".into());
    match rendered.status {
        201 => InitializeResponse::Created(StoredJson::new(rendered.body), replayed),
        status => InitializeResponse::StoredError(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            ProblemJson(rendered.body),
            replayed,
        ),
    }
}
