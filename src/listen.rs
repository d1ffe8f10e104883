//! `payorch listen`: a developer's view of their merchant events. It
//! registers a temporary endpoint on this machine for the client whose key
//! it is given, prints each event it receives with whether its signature
//! verifies, and deletes the endpoint when it stops (Ctrl-C).
//!
//! The server must accept an endpoint on loopback: embedded mode does, a
//! shared installation only with `PAYORCH_ALLOW_PRIVATE_ENDPOINTS=true`.

use std::{future::Future, sync::Arc, time::Duration};

use poem::{
    EndpointExt, Request, Response, Route, Server, handler, http::StatusCode,
    listener::TcpAcceptor, web::Data,
};
use serde::Deserialize;

use crate::events::signing;

const API_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest event body printed.
const MAX_EVENT_BODY: usize = 256 * 1024;
/// A signature older or newer than this is refused (replay protection),
/// as the Standard Webhooks libraries do.
const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen: {0}")]
    Bind(std::io::Error),
    #[error("the API at {0}: {1}")]
    Api(String, String),
}

#[derive(Deserialize)]
struct Registered {
    id: String,
    secret: String,
}

struct Receiver {
    secret: String,
    print: Box<dyn Fn(String) + Send + Sync>,
}

/// Listens on `127.0.0.1:port` (0: any free port) until `shutdown`,
/// printing each event through `print`.
pub async fn listen(
    api: &str,
    key: &str,
    port: u16,
    shutdown: impl Future<Output = ()> + Send + 'static,
    print: impl Fn(String) + Send + Sync + 'static,
) -> Result<(), ListenError> {
    let api = api.trim_end_matches('/').to_owned();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(ListenError::Bind)?;
    let addr = listener.local_addr().map_err(ListenError::Bind)?;
    let http = reqwest::Client::builder()
        .timeout(API_TIMEOUT)
        .build()
        .map_err(|e| ListenError::Api(api.clone(), e.to_string()))?;
    let api_error = |e: String| ListenError::Api(api.clone(), e);
    let response = http
        .post(format!("{api}/v1/webhook-endpoints"))
        .bearer_auth(key)
        .json(&serde_json::json!({
            "url": format!("http://{addr}/"),
            "description": "payorch listen (temporary)",
        }))
        .send()
        .await
        .map_err(|e| api_error(e.to_string()))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(api_error(format!("registering answered {status}: {body}")));
    }
    let registered: Registered = response
        .json()
        .await
        .map_err(|e| api_error(e.to_string()))?;
    print(format!(
        "listening on http://{addr}/ as endpoint {} (removed on exit); Ctrl-C to stop",
        registered.id
    ));
    let receiver = Arc::new(Receiver {
        secret: registered.secret,
        print: Box::new(print),
    });
    let routes = Route::new()
        .at("/", poem::post(receive))
        .data(receiver.clone());
    let acceptor = TcpAcceptor::from_tokio(listener).map_err(ListenError::Bind)?;
    let served = Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(routes, shutdown, Some(Duration::from_secs(2)))
        .await;
    let removed = http
        .delete(format!("{api}/v1/webhook-endpoints/{}", registered.id))
        .bearer_auth(key)
        .send()
        .await;
    match removed {
        Ok(response) if response.status().is_success() => {
            (receiver.print)(format!("endpoint {} removed", registered.id))
        }
        Ok(response) => (receiver.print)(format!(
            "could not remove endpoint {}: {}",
            registered.id,
            response.status()
        )),
        Err(err) => (receiver.print)(format!(
            "could not remove endpoint {}: {err}",
            registered.id
        )),
    }
    served.map_err(ListenError::Bind)
}

#[handler]
async fn receive(req: &Request, body: poem::Body, receiver: Data<&Arc<Receiver>>) -> Response {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let Ok(body) = body.into_bytes_limit(MAX_EVENT_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into();
    };
    let body = String::from_utf8_lossy(&body).into_owned();
    let now = chrono::Utc::now().timestamp();
    let verified = timestamp.parse::<i64>().is_ok_and(|ts| {
        (now - ts).abs() <= TOLERANCE_SECS
            && signing::verify(&receiver.secret, &id, ts, &body, &signature)
    });
    let kind = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|event| {
            event
                .get("type")
                .and_then(|t| t.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "?".into());
    (receiver.print)(format!(
        "{} {id} {kind} signature={}\n{body}",
        chrono::Utc::now().format("%H:%M:%S"),
        if verified { "verified" } else { "INVALID" },
    ));
    if verified {
        StatusCode::NO_CONTENT.into()
    } else {
        StatusCode::UNAUTHORIZED.into()
    }
}
