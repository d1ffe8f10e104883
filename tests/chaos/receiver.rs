//! The merchant's side of merchant events: one local server with an
//! endpoint per name (`/steady` always answers 204; `/flaky` answers 500
//! while the schedule has it down). It records, per endpoint, the event ids
//! (`webhook-id`) it acknowledged with a 2xx.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use poem::{
    EndpointExt, IntoResponse, Request, Response, Route, Server, handler,
    http::StatusCode,
    listener::TcpAcceptor,
    web::{Data, Path},
};

/// The endpoints the campaign registers: name, and the event types it
/// wants (empty: every type).
pub const ENDPOINTS: &[(&str, &[&str])] = &[
    ("steady", &[]),
    (
        "flaky",
        &[
            "payment.succeeded",
            "payment.failed",
            "refund.succeeded",
            "refund.failed",
        ],
    ),
];

#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    inner: Arc<Inner>,
}

struct Inner {
    received: Mutex<HashMap<String, HashSet<String>>>,
    flaky_down: AtomicBool,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let receiver = Receiver {
            base,
            inner: Arc::new(Inner {
                received: Mutex::new(HashMap::new()),
                flaky_down: AtomicBool::new(false),
            }),
        };
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        let app = Route::new().at("/:name", receive.data(receiver.clone()));
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        receiver
    }

    pub fn set_flaky_down(&self, down: bool) {
        self.inner.flaky_down.store(down, Ordering::SeqCst);
    }

    /// The event ids `endpoint` acknowledged.
    pub fn received(&self, endpoint: &str) -> HashSet<String> {
        self.inner
            .received
            .lock()
            .unwrap()
            .get(endpoint)
            .cloned()
            .unwrap_or_default()
    }
}

#[handler]
async fn receive(req: &Request, Path(name): Path<String>, Data(r): Data<&Receiver>) -> Response {
    if name == "flaky" && r.inner.flaky_down.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    if let Some(id) = req.header("webhook-id") {
        r.inner
            .received
            .lock()
            .unwrap()
            .entry(name)
            .or_default()
            .insert(id.to_owned());
    }
    StatusCode::NO_CONTENT.into_response()
}
