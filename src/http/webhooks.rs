//! `POST /v1/webhooks/{provider}`: verified, queued, answered.

use poem::{Request, RequestBody};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, Object, OpenApi,
    param::{Header, Path},
    payload::{Json, ParsePayload, Payload},
    registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef},
};

use super::{ApiTags, AppState, error::ApiError, gate::limit_webhook};
use crate::webhook::ingest::{MAX_BODY, Received};

pub struct WebhooksApi {
    pub state: AppState,
}

/// The body exactly as sent: the signature covers these bytes.
pub struct RawBody(pub Vec<u8>);

impl Payload for RawBody {
    const CONTENT_TYPE: &'static str = "application/json";

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new("object")))
    }
}

impl ParsePayload for RawBody {
    const IS_REQUIRED: bool = true;

    async fn from_request(_request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = body
            .take()?
            .into_bytes_limit(MAX_BODY)
            .await
            .map_err(|err| match err {
                poem::error::ReadBodyError::PayloadTooLarge => {
                    poem::Error::from_status(poem::http::StatusCode::PAYLOAD_TOO_LARGE)
                }
                other => poem::Error::from(other),
            })?;
        Ok(RawBody(bytes.to_vec()))
    }
}

impl<'a> ApiExtractor<'a> for RawBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: <Self as Payload>::CONTENT_TYPE,
                schema: <Self as Payload>::schema_ref(),
            }],
            required: true,
        })
    }

    /// Any content type, or none: the signature decides what is authentic.
    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        <Self as ParsePayload>::from_request(request, body).await
    }
}

#[derive(Object)]
pub struct Accepted {
    /// `queued`, or `parked` for an authentic body payorch cannot read.
    pub status: String,
}

#[derive(ApiResponse)]
pub enum WebhookResponse {
    /// Safely queued (or parked); duplicates are acknowledged too.
    #[oai(status = 200)]
    Accepted(Json<Accepted>),
}

#[OpenApi(tag = "ApiTags::Webhooks")]
impl WebhooksApi {
    /// Receive a provider webhook.
    ///
    /// `paystack` (and `sandbox`, the same dialect): checks
    /// `x-paystack-signature` (hex HMAC-SHA512 of the raw body with the
    /// secret key). `flutterwave`: checks `verif-hash` against the
    /// configured hash; the event is confirmed with Flutterwave's API
    /// before it is applied. Answers 200 only once the event is safely
    /// queued. 404 for a connector not enabled, 401 on a bad signature,
    /// 413 beyond 256 KiB, 503 (retry) when the queue is unavailable.
    #[oai(
        path = "/v1/webhooks/:provider",
        method = "post",
        transform = "limit_webhook"
    )]
    async fn receive(
        &self,
        provider: Path<String>,
        /// Paystack: hex HMAC-SHA512 of the raw body.
        #[oai(name = "x-paystack-signature")]
        _signature: Header<Option<String>>,
        /// Flutterwave: the webhook hash configured with Flutterwave.
        #[oai(name = "verif-hash")]
        _hash: Header<Option<String>>,
        req: &Request,
        body: RawBody,
    ) -> Result<WebhookResponse, ApiError> {
        let request_id = req
            .extensions()
            .get::<super::observe::RequestId>()
            .map(|id| id.0.clone());
        let received = self
            .state
            .webhooks
            .receive(
                &provider.0,
                |name| {
                    req.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                },
                &body.0,
                request_id,
            )
            .await?;
        let status = match received {
            Received::Queued => "queued",
            Received::Parked => "parked",
        };
        metrics::counter!("payorch_webhooks_received_total", "status" => status).increment(1);
        Ok(WebhookResponse::Accepted(Json(Accepted {
            status: status.into(),
        })))
    }
}
