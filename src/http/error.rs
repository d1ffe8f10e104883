//! The error type of the HTTP API and its problem+json rendering (RFC 9457).
//! Every error carries a stable `code` that client developers match on;
//! anything unexpected becomes an opaque 500 whose cause goes to the log,
//! never to the client. The core's [`PaymentError`] and [`ReviewError`] and
//! the ingest's [`IngestError`] become HTTP errors here, and only here.

use std::time::Duration;

use poem::{Response, error::ResponseError, http::StatusCode};
use poem_openapi::Object;
use sea_orm::DbErr;

use crate::{
    domain::FieldError,
    payments::{PaymentError, ReviewError},
    provider::ProviderError,
    webhook::ingest::IngestError,
};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The problem+json body every error response carries.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:payorch:error:<code>`.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable error code.
    pub code: String,
    /// For `validation_failed`: every field that was wrong, and why.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub errors: Option<Vec<InvalidField>>,
}

/// One wrong field of a request, and why.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct InvalidField {
    pub field: String,
    pub message: String,
}

impl From<&FieldError> for InvalidField {
    fn from(err: &FieldError) -> InvalidField {
        InvalidField {
            field: err.field.clone(),
            message: err.message.clone(),
        }
    }
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:payorch:error:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            errors: None,
        }
    }

    /// The body as sent, so a stored response can be replayed byte for byte.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a problem serializes")
    }

    pub fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Response::builder()
            .status(status)
            .content_type(PROBLEM_JSON)
            .body(self.to_json())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid API key is required: send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// Operator routes: an API key is never accepted there.
    #[error("a valid operator token is required: send `Authorization: Bearer pot_…`")]
    OperatorUnauthorized,
    /// A console session's request (any: reads too) without the
    /// session's CSRF token in `X-CSRF-Token`.
    #[error("this request needs the console session's CSRF token in `X-CSRF-Token`")]
    CsrfTokenInvalid,
    #[error("{0}")]
    BadRequest(String),
    #[error("{}", errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Validation { errors: Vec<FieldError> },
    #[error("no such payment")]
    NotFound,
    #[error("no such webhook provider")]
    UnknownProvider,
    #[error("no such webhook endpoint")]
    EndpointNotFound,
    #[error("no such event")]
    EventNotFound,
    #[error("no such review")]
    ReviewNotFound,
    #[error("no such API client")]
    ClientNotFound,
    #[error("{0}")]
    ReviewAlreadyResolved(String),
    #[error("{0}")]
    ReviewActionNotApplicable(String),
    #[error("{0}")]
    EndpointUrlNotAllowed(String),
    #[error("the webhook signature is missing or wrong")]
    InvalidSignature,
    #[error("{0}")]
    Conflict(String),
    #[error("only a succeeded payment can be refunded")]
    NotRefundable,
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    IdempotencyInFlight,
    #[error("too many requests; retry after {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    #[error("the payment provider declined the request: {0}")]
    ProviderRejected(String),
    /// The cause goes to the log; the client learns only that it failed.
    #[error("the payment provider failed or refused us; retry later")]
    ProviderUnavailable(String),
    #[error("the payment provider did not answer in time")]
    ProviderTimeout,
    #[error("{0} is temporarily unavailable; retry later")]
    Unavailable(&'static str),
    #[error("this payment is handling too many requests at once; retry shortly")]
    Busy,
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized | ApiError::OperatorUnauthorized => StatusCode::UNAUTHORIZED,
            ApiError::CsrfTokenInvalid => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation { .. } | ApiError::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::NotFound
            | ApiError::UnknownProvider
            | ApiError::EndpointNotFound
            | ApiError::EventNotFound
            | ApiError::ReviewNotFound
            | ApiError::ClientNotFound => StatusCode::NOT_FOUND,
            ApiError::EndpointUrlNotAllowed(_) | ApiError::ReviewActionNotApplicable(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::ReviewAlreadyResolved(_) => StatusCode::CONFLICT,
            ApiError::InvalidSignature => StatusCode::UNAUTHORIZED,
            ApiError::Conflict(_) | ApiError::IdempotencyInFlight | ApiError::NotRefundable => {
                StatusCode::CONFLICT
            }
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ProviderRejected(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::ProviderUnavailable(_) => StatusCode::BAD_GATEWAY,
            ApiError::ProviderTimeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable(_) | ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable code, documented in docs/api.md.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized | ApiError::OperatorUnauthorized => "unauthorized",
            ApiError::CsrfTokenInvalid => "csrf_token_invalid",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Validation { .. } => "validation_failed",
            ApiError::NotFound => "payment_not_found",
            ApiError::UnknownProvider => "unknown_provider",
            ApiError::EndpointNotFound => "endpoint_not_found",
            ApiError::EventNotFound => "event_not_found",
            ApiError::ReviewNotFound => "review_not_found",
            ApiError::ClientNotFound => "client_not_found",
            ApiError::ReviewAlreadyResolved(_) => "review_already_resolved",
            ApiError::ReviewActionNotApplicable(_) => "review_action_not_applicable",
            ApiError::EndpointUrlNotAllowed(_) => "endpoint_url_not_allowed",
            ApiError::InvalidSignature => "invalid_signature",
            ApiError::Conflict(_) => "conflict",
            ApiError::NotRefundable => "payment_not_refundable",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::IdempotencyInFlight => "idempotency_key_in_flight",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::ProviderRejected(_) => "provider_rejected",
            ApiError::ProviderUnavailable(_) => "provider_unavailable",
            ApiError::ProviderTimeout => "provider_timeout",
            ApiError::Unavailable(_) => "service_unavailable",
            ApiError::Busy => "payment_busy",
            ApiError::Internal(_) => "internal_error",
        }
    }

    pub fn problem(&self) -> Problem {
        let mut problem = Problem::new(self.status(), self.code(), self.to_string());
        if let ApiError::Validation { errors } = self {
            problem.errors = Some(errors.iter().map(InvalidField::from).collect());
        }
        problem
    }
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        ApiError::status(self)
    }

    fn as_response(&self) -> Response {
        match self {
            ApiError::Internal(cause) => tracing::error!(%cause, "request failed"),
            ApiError::ProviderUnavailable(cause) => {
                tracing::warn!(%cause, "provider unavailable")
            }
            _ => {}
        }
        let mut response = self.problem().into_response();
        let retry_after = match self {
            ApiError::RateLimited { retry_after } => Some(retry_after.as_secs().max(1)),
            ApiError::Unavailable(_) | ApiError::Busy => Some(1),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", poem::http::HeaderValue::from(seconds));
        }
        response
    }
}

/// An [`ApiError`] on an operator route: the same problem+json, documented
/// with the operator API's own statuses (`super::problem`).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct OperatorProblem(pub ApiError);

impl<E> From<E> for OperatorProblem
where
    ApiError: From<E>,
{
    fn from(err: E) -> OperatorProblem {
        OperatorProblem(ApiError::from(err))
    }
}

impl ResponseError for OperatorProblem {
    fn status(&self) -> StatusCode {
        self.0.status()
    }

    fn as_response(&self) -> Response {
        ResponseError::as_response(&self.0)
    }
}

impl From<PaymentError> for ApiError {
    fn from(err: PaymentError) -> Self {
        match err {
            PaymentError::NotFound => ApiError::NotFound,
            // Not echoed: whether another client uses a reference is not
            // this one's business.
            PaymentError::ReferenceTaken => {
                ApiError::Conflict("this reference is already in use".into())
            }
            PaymentError::NotRefundable => ApiError::NotRefundable,
            PaymentError::Invalid(errors) => ApiError::Validation { errors },
            PaymentError::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
            PaymentError::IdempotencyInFlight => ApiError::IdempotencyInFlight,
            PaymentError::Provider(ProviderError::Rejected(message)) => {
                ApiError::ProviderRejected(message)
            }
            PaymentError::Provider(ProviderError::Unavailable(message)) => {
                ApiError::ProviderUnavailable(message)
            }
            PaymentError::Provider(ProviderError::Timeout) => ApiError::ProviderTimeout,
            PaymentError::Provider(err @ ProviderError::CircuitOpen(_)) => {
                ApiError::ProviderUnavailable(err.to_string())
            }
            PaymentError::Busy => ApiError::Busy,
            PaymentError::Unavailable(what) => ApiError::Unavailable(what),
            PaymentError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<crate::operators::clients::ClientError> for ApiError {
    fn from(err: crate::operators::clients::ClientError) -> Self {
        use crate::operators::clients::ClientError;
        match err {
            ClientError::NotFound(_) => ApiError::ClientNotFound,
            ClientError::Revoked(_) => ApiError::Conflict(err.to_string()),
            ClientError::Database(err) => err.into(),
        }
    }
}

impl From<crate::operators::endpoints::EndpointError> for ApiError {
    fn from(err: crate::operators::endpoints::EndpointError) -> Self {
        use crate::operators::endpoints::EndpointError;
        match err {
            EndpointError::EndpointNotFound(_) => ApiError::EndpointNotFound,
            EndpointError::EventNotFound(_) => ApiError::EventNotFound,
            EndpointError::Events(err) => err.into(),
            EndpointError::Database(err) => err.into(),
        }
    }
}

impl From<crate::events::EventsError> for ApiError {
    fn from(err: crate::events::EventsError) -> Self {
        use crate::events::EventsError;
        match err {
            EventsError::EndpointNotFound => ApiError::EndpointNotFound,
            EventsError::EventNotFound => ApiError::EventNotFound,
            EventsError::Invalid(errors) => ApiError::Validation { errors },
            EventsError::UrlNotAllowed(_) => ApiError::EndpointUrlNotAllowed(err.to_string()),
            EventsError::Unavailable(what) => ApiError::Unavailable(what),
        }
    }
}

/// A core outcome as it is sent and, under an Idempotency-Key, stored:
/// `201` with `view` of the value, or the error's problem+json.
pub fn created_or_problem<T>(
    result: Result<T, PaymentError>,
    view: impl FnOnce(T) -> String,
) -> crate::payments::Rendered {
    match result {
        Ok(value) => crate::payments::Rendered {
            status: 201,
            body: view(value),
        },
        Err(err) => {
            let problem = ApiError::from(err).problem();
            crate::payments::Rendered {
                status: problem.status,
                body: problem.to_json(),
            }
        }
    }
}

impl From<ReviewError> for ApiError {
    fn from(err: ReviewError) -> Self {
        match err {
            ReviewError::NotFound => ApiError::ReviewNotFound,
            err @ ReviewError::AlreadyResolved { .. } => {
                ApiError::ReviewAlreadyResolved(err.to_string())
            }
            ReviewError::NotApplicable(why) => ApiError::ReviewActionNotApplicable(why),
            ReviewError::Payment(err) => err.into(),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(err: IngestError) -> Self {
        match err {
            IngestError::UnknownProvider => ApiError::UnknownProvider,
            IngestError::InvalidSignature => ApiError::InvalidSignature,
            IngestError::Queue(_) => ApiError::Unavailable("the webhook queue"),
        }
    }
}

impl From<DbErr> for ApiError {
    /// Classified as the core does: connection trouble is a fast 503 (the
    /// client may retry); anything else stays opaque.
    fn from(err: DbErr) -> Self {
        PaymentError::from(err).into()
    }
}

/// Every problem `code` payorch answers with, and its status: one of each
/// [`ApiError`] and the codes [`render_any_error`] gives poem's own errors.
/// docs/api.md's error table must list each (a test checks).
pub fn catalogue() -> Vec<(&'static str, u16)> {
    let every_error = [
        ApiError::Unauthorized,
        ApiError::OperatorUnauthorized,
        ApiError::CsrfTokenInvalid,
        ApiError::BadRequest(String::new()),
        ApiError::Validation { errors: Vec::new() },
        ApiError::NotFound,
        ApiError::UnknownProvider,
        ApiError::EndpointNotFound,
        ApiError::EventNotFound,
        ApiError::ReviewNotFound,
        ApiError::ClientNotFound,
        ApiError::ReviewAlreadyResolved(String::new()),
        ApiError::ReviewActionNotApplicable(String::new()),
        ApiError::EndpointUrlNotAllowed(String::new()),
        ApiError::InvalidSignature,
        ApiError::Conflict(String::new()),
        ApiError::NotRefundable,
        ApiError::IdempotencyKeyReused,
        ApiError::IdempotencyInFlight,
        ApiError::RateLimited {
            retry_after: Duration::ZERO,
        },
        ApiError::ProviderRejected(String::new()),
        ApiError::ProviderUnavailable(String::new()),
        ApiError::ProviderTimeout,
        ApiError::Unavailable(""),
        ApiError::Busy,
        ApiError::Internal(String::new()),
    ];
    // No wildcard: a new variant does not compile until it is listed above.
    for error in &every_error {
        match error {
            ApiError::Unauthorized
            | ApiError::OperatorUnauthorized
            | ApiError::CsrfTokenInvalid
            | ApiError::BadRequest(_)
            | ApiError::Validation { .. }
            | ApiError::NotFound
            | ApiError::UnknownProvider
            | ApiError::EndpointNotFound
            | ApiError::EventNotFound
            | ApiError::ReviewNotFound
            | ApiError::ClientNotFound
            | ApiError::ReviewAlreadyResolved(_)
            | ApiError::ReviewActionNotApplicable(_)
            | ApiError::EndpointUrlNotAllowed(_)
            | ApiError::InvalidSignature
            | ApiError::Conflict(_)
            | ApiError::NotRefundable
            | ApiError::IdempotencyKeyReused
            | ApiError::IdempotencyInFlight
            | ApiError::RateLimited { .. }
            | ApiError::ProviderRejected(_)
            | ApiError::ProviderUnavailable(_)
            | ApiError::ProviderTimeout
            | ApiError::Unavailable(_)
            | ApiError::Busy
            | ApiError::Internal(_) => {}
        }
    }
    let mut codes: Vec<_> = every_error
        .iter()
        .map(|e| (e.code(), e.status().as_u16()))
        .collect();
    codes.extend(
        POEM_CODES
            .iter()
            .map(|(status, code)| (*code, status.as_u16())),
    );
    codes
}

/// The codes of errors poem raises before a handler runs.
const POEM_CODES: [(StatusCode, &str); 4] = [
    (StatusCode::NOT_FOUND, "not_found"),
    (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
    (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
];

/// Turns any error poem or poem-openapi raise (bad JSON, missing header, a
/// failed security check) into problem+json with a stable code.
pub async fn render_any_error(err: poem::Error) -> Response {
    if err.is::<ApiError>() || err.is::<OperatorProblem>() {
        return err.into_response();
    }
    if err.is::<poem_openapi::error::AuthorizationError>() {
        return ApiError::Unauthorized.as_response();
    }
    let status = err.status();
    let code = match POEM_CODES.iter().find(|(known, _)| *known == status) {
        Some((_, code)) => *code,
        None if status == StatusCode::UNAUTHORIZED => "unauthorized",
        None if status.is_client_error() => "bad_request",
        None => "internal_error",
    };
    let detail = if status.is_server_error() {
        tracing::error!(error = %err, "unhandled error");
        "internal error".to_owned()
    } else {
        err.to_string()
    };
    Problem::new(status, code, detail).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_in_the_documented_error_table() {
        let docs = include_str!("../../docs/api.md");
        for (code, status) in catalogue() {
            let row = format!("| `{code}` | {status} |");
            assert!(
                docs.contains(&row),
                "docs/api.md's error table has no row starting `{row}`"
            );
        }
    }
}
