//! `POST /v1/payments/initialize`, `POST /v1/payments/{reference}/verify`,
//! `GET /v1/payments/{reference}`: thin handlers. Each operation's gate
//! (declared with its path) has authenticated and rate limited the request;
//! the handler parses the body, makes one call to the payment core
//! ([`crate::payments::Payments`]) and maps its error to problem+json.

use poem::http::StatusCode;
use poem_openapi::{ApiResponse, OpenApi, param::Header, param::Path, payload::Json};

use super::{
    ApiTags, AppState,
    auth::ClientAuth,
    error::{ApiError, created_or_problem},
    gate::{client_operation, limit_initialize, limit_verify},
    problem::{ProblemJson, StoredJson},
    requests::{InitializeBody, idempotent, validate},
};
pub use crate::views::{PaymentView, TransitionView};
use crate::{
    payments::{Answer, PaymentError, Rendered},
    store::payments::Payment,
};

pub struct PaymentsApi {
    pub state: AppState,
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
        let (payment, transitions, review) = self
            .state
            .payments
            .get_with_review(auth.0.id, &reference.0)
            .await?;
        Ok(PaymentResponse::Ok(Json(
            PaymentView::new(payment, Some(transitions)).with_review(review.as_ref()),
        )))
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
