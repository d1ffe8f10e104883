//! Request body limits. Unlike poem's `SizeLimit`, a request without a
//! `Content-Length` (a GET, or a chunked upload) is not refused: its body is
//! read up to the limit, and a longer one is a 413 all the same.

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use crate::error::{ApiError, Problem};

pub struct BodyLimit(pub usize);

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        BodyLimitEndpoint { inner, max: self.0 }
    }
}

pub struct BodyLimitEndpoint<E> {
    inner: E,
    max: usize,
}

fn too_large(max: usize) -> Response {
    Problem::new(
        poem::http::StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body exceeds {max} bytes"),
    )
    .into_response()
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        // Webhook bodies are read (and limited) by their handler.
        if req.uri().path().starts_with("/v1/webhooks/") {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        let declared = req
            .headers()
            .get(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(length) if length > self.max as u64 => return Ok(too_large(self.max)),
            Some(_) => {}
            None if req
                .headers()
                .contains_key(poem::http::header::TRANSFER_ENCODING) =>
            {
                match req.take_body().into_bytes_limit(self.max).await {
                    Ok(bytes) => req.set_body(bytes),
                    Err(poem::error::ReadBodyError::PayloadTooLarge) => {
                        return Ok(too_large(self.max));
                    }
                    Err(err) => return Err(ApiError::BadRequest(err.to_string()).into()),
                }
            }
            None => {}
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}
