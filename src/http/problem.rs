//! Response payloads whose body is a string we already hold: a stored
//! idempotent response is sent back byte for byte, while the OpenAPI
//! document still shows the real schema. And the error side of every
//! operation: [`ApiError`] as an OpenAPI response (problem+json).

use std::marker::PhantomData;

use poem::{IntoResponse, Response};
use poem_openapi::{
    ApiResponse,
    payload::Payload,
    registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry},
    types::Type,
};

use super::error::{ApiError, OperatorProblem, PROBLEM_JSON, Problem};

/// `application/json` whose bytes were produced (and maybe stored) earlier.
pub struct StoredJson<T> {
    body: String,
    _schema: PhantomData<fn() -> T>,
}

impl<T> StoredJson<T> {
    pub fn new(body: String) -> Self {
        StoredJson {
            body,
            _schema: PhantomData,
        }
    }
}

impl<T: Type> Payload for StoredJson<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type> IntoResponse for StoredJson<T> {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(Self::CONTENT_TYPE)
            .body(self.body)
    }
}

/// `application/problem+json` as stored or rendered.
pub struct ProblemJson(pub String);

impl Payload for ProblemJson {
    const CONTENT_TYPE: &'static str = PROBLEM_JSON;

    fn schema_ref() -> MetaSchemaRef {
        <Problem as Type>::schema_ref()
    }

    fn register(registry: &mut Registry) {
        <Problem as Type>::register(registry);
    }
}

impl IntoResponse for ProblemJson {
    fn into_response(self) -> Response {
        Response::builder().content_type(PROBLEM_JSON).body(self.0)
    }
}

/// The statuses an operation may fail with, each a problem+json body.
const ERROR_STATUSES: &[(u16, &str)] = &[
    (
        400,
        "Malformed request: bad JSON, a header that is not a UUID (`bad_request`).",
    ),
    (
        401,
        "Missing, unknown or disabled API key (`unauthorized`).",
    ),
    (
        402,
        "The provider declined the payment (`provider_rejected`).",
    ),
    (
        404,
        "No such payment for this client (`payment_not_found`).",
    ),
    (
        409,
        "Reference already used (`conflict`), or the same Idempotency-Key is still in flight (`idempotency_key_in_flight`).",
    ),
    (413, "Body too large (`payload_too_large`)."),
    (
        415,
        "Content type is not application/json (`unsupported_media_type`).",
    ),
    (
        422,
        "A field is invalid (`validation_failed`), or the Idempotency-Key was used with another body (`idempotency_key_reused`).",
    ),
    (
        429,
        "Rate limit exceeded (`rate_limited`); see `Retry-After`.",
    ),
    (
        502,
        "The provider failed (`provider_unavailable`); safe to retry with the same Idempotency-Key.",
    ),
    (
        503,
        "A dependency or this payment is busy (`service_unavailable`, `payment_busy`); see `Retry-After`.",
    ),
    (
        504,
        "The provider did not answer in time (`provider_timeout`); safe to retry with the same Idempotency-Key.",
    ),
];

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: ERROR_STATUSES
                .iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: PROBLEM_JSON,
                        schema: <Problem as Type>::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        <Problem as Type>::register(registry);
    }
}

/// The statuses an operator route may fail with, each a problem+json body.
const OPERATOR_ERROR_STATUSES: &[(u16, &str)] = &[
    (
        400,
        "Malformed request: bad JSON, a parameter of the wrong type (`bad_request`).",
    ),
    (
        401,
        "Missing, unknown or revoked operator token or console session, or a disabled operator (`unauthorized`). An API client's key is never accepted here.",
    ),
    (
        403,
        "A console session's request (reads too) without the session's CSRF token in `X-CSRF-Token` (`csrf_token_invalid`).",
    ),
    (404, "No such review (`review_not_found`)."),
    (
        409,
        "The review is resolved already (`review_already_resolved`).",
    ),
    (413, "Body too large (`payload_too_large`)."),
    (
        415,
        "Content type is not application/json (`unsupported_media_type`).",
    ),
    (
        422,
        "A field is invalid (`validation_failed`), or the action does not resolve a review of this kind (`review_action_not_applicable`).",
    ),
    (
        429,
        "Too many requests without valid credentials from this address (`rate_limited`); see `Retry-After`.",
    ),
    (
        502,
        "An action that calls the provider met a provider failure (`provider_unavailable`).",
    ),
    (
        503,
        "A dependency is unavailable (`service_unavailable`); see `Retry-After`.",
    ),
    (
        504,
        "An action that calls the provider got no answer in time (`provider_timeout`).",
    ),
];

impl ApiResponse for OperatorProblem {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: OPERATOR_ERROR_STATUSES
                .iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: PROBLEM_JSON,
                        schema: <Problem as Type>::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        <Problem as Type>::register(registry);
    }
}
