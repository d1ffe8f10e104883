//! `POST /v1/payments/{reference}/refunds`, `GET /v1/payments/{reference}/refunds`:
//! money back to the customer. Like initialize, a refund may carry an
//! `Idempotency-Key`, and its answer is stored and replayed.

use poem::http::StatusCode;
use poem_openapi::{ApiResponse, OpenApi, param::Header, param::Path, payload::Json};

use super::{
    ApiTags, AppState,
    auth::ClientAuth,
    error::{ApiError, created_or_problem},
    gate::{client_operation, limit_refund},
    problem::{ProblemJson, StoredJson},
    requests::{RefundBody, idempotent, validate_refund},
};
pub use crate::views::RefundView;
use crate::{
    payments::{Answer, PaymentError, Rendered},
    store::refunds::Refund,
};

pub struct RefundsApi {
    pub state: AppState,
}

#[derive(ApiResponse)]
pub enum RefundResponse {
    /// Created (pending, or already settled). With `Idempotent-Replayed:
    /// true`, the stored response of an earlier request with the same key.
    #[oai(status = 201)]
    Created(
        StoredJson<RefundView>,
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
pub enum RefundList {
    /// The payment's refunds, oldest first.
    #[oai(status = 200)]
    Ok(Json<Vec<RefundView>>),
}

#[OpenApi(prefix_path = "/v1/payments", tag = "ApiTags::Payments")]
impl RefundsApi {
    /// Refund a payment.
    ///
    /// Refunds all that is left of a succeeded payment, or `amount`. The
    /// refund is `pending` until the provider settles it; the refunds of a
    /// payment never add up to more than it. 409 `payment_not_refundable`
    /// unless the payment succeeded; 422 for an amount above what is left.
    /// Send an `Idempotency-Key` (a UUID) to retry safely.
    #[oai(
        path = "/:reference/refunds",
        method = "post",
        transform = "limit_refund"
    )]
    async fn create(
        &self,
        auth: ClientAuth,
        reference: Path<String>,
        /// A UUID naming this attempt; retries reuse it.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: Json<RefundBody>,
    ) -> Result<RefundResponse, ApiError> {
        let operation = format!("refund:{}", reference.0);
        let idempotent = idempotent(idempotency_key.0, &operation, &body.0)?;
        let render = |result| render_refund(result, &reference.0);
        let answer = self
            .state
            .payments
            .refund(
                auth.0.id,
                &reference.0,
                idempotent,
                validate_refund(&body.0),
                render,
            )
            .await?;
        Ok(match answer {
            Answer::Fresh(rendered) => respond(rendered, false),
            Answer::Replayed(rendered) => respond(rendered, true),
        })
    }

    /// List a payment's refunds.
    #[oai(
        path = "/:reference/refunds",
        method = "get",
        transform = "client_operation"
    )]
    async fn list(
        &self,
        auth: ClientAuth,
        reference: Path<String>,
    ) -> Result<RefundList, ApiError> {
        let payments = &self.state.payments;
        let refunds = payments.refunds(auth.0.id, &reference.0).await?;
        let ids: Vec<_> = refunds.iter().map(|refund| refund.id).collect();
        let reviews = payments.open_refund_reviews(&ids).await?;
        Ok(RefundList::Ok(Json(
            refunds
                .into_iter()
                .map(|refund| {
                    let review = reviews.get(&refund.id);
                    RefundView::new(refund, &reference.0).with_review(review)
                })
                .collect(),
        )))
    }
}

/// What a refund request answers, as sent and as stored under its key.
fn render_refund(result: Result<Refund, PaymentError>, reference: &str) -> Rendered {
    created_or_problem(result, |refund| {
        serde_json::to_string(&RefundView::new(refund, reference))
            .expect("a refund view serializes")
    })
}

fn respond(rendered: Rendered, replayed: bool) -> RefundResponse {
    let replayed = replayed.then(|| "true".into());
    match rendered.status {
        201 => RefundResponse::Created(StoredJson::new(rendered.body), replayed),
        status => RefundResponse::StoredError(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            ProblemJson(rendered.body),
            replayed,
        ),
    }
}
