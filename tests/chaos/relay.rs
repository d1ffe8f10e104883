//! The wire between the sandbox and payorch: the sandbox posts its
//! webhooks here, and the relay passes each to a serve instance (the other
//! one when the first cannot be reached, as a load balancer would) and
//! answers the sandbox with payorch's answer. It records every answer it
//! passed back (the sandbox does not keep them), so the checker can ask
//! whether each webhook that got a 2xx was applied; and it is where the
//! schedule duplicates, delays and so reorders webhooks.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use poem::{
    Body, EndpointExt, IntoResponse, Request, Response, Route, Server, handler, http::StatusCode,
    listener::TcpAcceptor, web::Data,
};
use rand::Rng;

/// How the relay treats webhooks now (the schedule changes it).
#[derive(Debug, Default, Clone, Copy)]
pub struct RelayMode {
    /// Each webhook is also sent a second time, a little later.
    pub duplicate: bool,
    /// Each webhook waits up to this long first (so later ones overtake it).
    pub max_delay_ms: u64,
}

/// One answer payorch gave to a webhook, as the provider saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The event's identity as payorch deduplicates it: `{event}:{data.id}`.
    pub key: String,
    pub status: u16,
}

#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    serve_urls: Vec<String>,
    http: reqwest::Client,
    mode: Mutex<RelayMode>,
    answers: Mutex<Vec<Answer>>,
    in_flight: AtomicUsize,
}

impl Relay {
    /// Listens on `port` and relays to `serve_urls`, until the process ends.
    pub async fn start(port: u16, serve_urls: Vec<String>) -> Relay {
        let relay = Relay {
            inner: Arc::new(Inner {
                serve_urls,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap(),
                mode: Mutex::new(RelayMode::default()),
                answers: Mutex::new(Vec::new()),
                in_flight: AtomicUsize::new(0),
            }),
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("binding the webhook relay");
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        let app = Route::new().at("/*path", relay_webhook.data(relay.clone()));
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        relay
    }

    pub fn set_mode(&self, mode: RelayMode) {
        *self.inner.mode.lock().unwrap() = mode;
    }

    pub fn answers(&self) -> Vec<Answer> {
        self.inner.answers.lock().unwrap().clone()
    }

    /// Webhooks received and not yet answered (a duplicate still to be
    /// sent counts).
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Passes one webhook on: to a serve instance picked at random, then
    /// the others while one cannot be reached. 502 when none can.
    async fn forward(&self, path: &str, headers: &[(String, String)], body: &[u8]) -> u16 {
        let urls = &self.inner.serve_urls;
        let first = rand::rng().random_range(0..urls.len());
        for i in 0..urls.len() {
            let url = format!("{}{path}", urls[(first + i) % urls.len()]);
            let mut request = self.inner.http.post(url).body(body.to_vec());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            match request.send().await {
                Ok(response) => return response.status().as_u16(),
                Err(err) if err.is_connect() => continue,
                Err(_) => return 504,
            }
        }
        502
    }

    fn record(&self, key: &str, status: u16) {
        self.inner.answers.lock().unwrap().push(Answer {
            key: key.to_owned(),
            status,
        });
    }
}

/// The identity payorch gives a provider webhook: `{event}:{data.id}`
/// (`data.reference` / `tx_ref` where the id is missing).
fn event_key(body: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let event = value["event"].as_str().unwrap_or("?");
    let data = &value["data"];
    let id = match &data["id"] {
        serde_json::Value::Number(n) => n.to_string(),
        _ => data["reference"]
            .as_str()
            .or(data["tx_ref"].as_str())
            .unwrap_or("?")
            .to_owned(),
    };
    format!("{event}:{id}")
}

const PASSED_HEADERS: &[&str] = &["content-type", "x-paystack-signature", "verif-hash"];

#[handler]
async fn relay_webhook(req: &Request, body: Body, Data(relay): Data<&Relay>) -> Response {
    relay.inner.in_flight.fetch_add(1, Ordering::SeqCst);
    let body = body.into_vec().await.unwrap_or_default();
    let path = req.uri().path().to_owned();
    let headers: Vec<(String, String)> = PASSED_HEADERS
        .iter()
        .filter_map(|name| {
            req.header(name)
                .map(|value| ((*name).to_owned(), value.to_owned()))
        })
        .collect();
    let key = event_key(&body);
    let mode = *relay.inner.mode.lock().unwrap();
    if mode.max_delay_ms > 0 {
        let pause = rand::rng().random_range(0..=mode.max_delay_ms);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    if mode.duplicate {
        let (relay, path, headers, body, key) = (
            relay.clone(),
            path.clone(),
            headers.clone(),
            body.clone(),
            key.clone(),
        );
        relay.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        let pause = Duration::from_millis(rand::rng().random_range(0..500));
        tokio::spawn(async move {
            tokio::time::sleep(pause).await;
            let status = relay.forward(&path, &headers, &body).await;
            relay.record(&key, status);
            relay.inner.in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
    let status = relay.forward(&path, &headers, &body).await;
    relay.record(&key, status);
    relay.inner.in_flight.fetch_sub(1, Ordering::SeqCst);
    StatusCode::from_u16(status)
        .unwrap_or(StatusCode::BAD_GATEWAY)
        .into_response()
}
