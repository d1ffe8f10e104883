//! Request body limits, declared per operation (see `super::gate`; webhooks
//! read and limit their raw body themselves). A declared `Content-Length`
//! over the limit is a 413 before anything is read. Unlike poem's
//! `SizeLimit`, a request without one (a GET, a chunked upload, any HTTP/2
//! stream) is not refused: its body is read up to the limit, and a longer
//! one is a 413 all the same.

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use super::error::{ApiError, Problem};

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
        let declared = req
            .headers()
            .get(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(length) if length > self.max as u64 => return Ok(too_large(self.max)),
            Some(_) => {}
            // Chunked over HTTP/1.1, or simply unannounced over HTTP/2:
            // read it here, never more than the limit.
            None => match req.take_body().into_bytes_limit(self.max).await {
                Ok(bytes) => req.set_body(bytes),
                Err(poem::error::ReadBodyError::PayloadTooLarge) => {
                    return Ok(too_large(self.max));
                }
                Err(err) => return Err(ApiError::BadRequest(err.to_string()).into()),
            },
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}
