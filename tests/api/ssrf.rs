//! The SSRF guard and proxies: a merchant event delivery never goes
//! through a proxy named by the environment (`HTTP_PROXY`, `HTTPS_PROXY`,
//! `ALL_PROXY`), whose name resolution would bypass payorch's guarded
//! resolver; through the operator's `PAYORCH_EVENT_PROXY` it goes only
//! after payorch resolved and checked the endpoint itself.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::{
    events::{Behaviour, Receiver, endpoint_moved_to, events_env, first_attempt, register},
    helpers::{TestApp, TestDb, test_env},
};

/// A listener standing in for a forward proxy: it counts connections,
/// keeps each request line (`POST http://host:port/path HTTP/1.1`) and
/// answers every request `204`, so a delivery through it succeeds.
struct FakeProxy {
    url: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
    _accepting: tokio::task::JoinHandle<()>,
}

impl FakeProxy {
    async fn start() -> FakeProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (counted, kept) = (connections.clone(), requests.clone());
        let accepting = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let kept = kept.clone();
                tokio::spawn(async move {
                    let _ = answer(stream, kept).await;
                });
            }
        });
        FakeProxy {
            url,
            connections,
            requests,
            _accepting: accepting,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one request (head and body) and answers `204`.
async fn answer(
    stream: tokio::net::TcpStream,
    kept: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    kept.lock().unwrap().push(line.trim_end().to_owned());
    let mut length = 0;
    loop {
        let mut header = String::new();
        if stream.read_line(&mut header).await? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    stream
        .get_mut()
        .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await?;
    stream.get_mut().shutdown().await
}

async fn app_with_proxy(
    proxy: &FakeProxy,
    env: fn(&TestDb) -> std::collections::HashMap<String, String>,
) -> TestApp {
    let db = Arc::new(TestDb::postgres().await);
    let mut env = env(&db);
    env.insert("PAYORCH_EVENT_PROXY".into(), proxy.url.clone());
    TestApp::spawn_with(db, env).await
}

fn error_of(attempt: &Value) -> &str {
    attempt["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn an_environment_proxy_is_never_used_and_a_private_endpoint_stays_refused() {
    // The variables change every client of the process: a process of its own.
    if !crate::helpers::in_own_process(
        "ssrf::an_environment_proxy_is_never_used_and_a_private_endpoint_stays_refused",
    ) {
        return;
    }
    let proxy = FakeProxy::start().await;
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        // SAFETY: this process runs this one test, on one thread, and sets
        // the variables before the app or any other thread starts.
        unsafe { std::env::set_var(var, &proxy.url) };
    }
    // The test's own calls (and the app's to its sandbox) go by address,
    // directly; the endpoint below is a name, which this does not cover.
    unsafe { std::env::set_var("NO_PROXY", "127.0.0.1") };
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    endpoint_moved_to(
        &app,
        &format!("http://localhost:{}/hook", receiver.addr.port()),
    )
    .await;
    app.new_payment(1_000).await;
    let attempt = first_attempt(&app).await;
    assert_eq!(
        proxy.connections(),
        0,
        "the delivery went to the environment's proxy: {:?}; {attempt}",
        proxy.requests()
    );
    assert_eq!(attempt["status"], "retrying");
    assert!(error_of(&attempt).contains("forbidden"), "{attempt}");
    assert!(receiver.seen().is_empty());
}

#[tokio::test]
async fn deliveries_go_through_the_configured_event_proxy() {
    let proxy = FakeProxy::start().await;
    let app = app_with_proxy(&proxy, events_env).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    register(&app, &app.api_key, json!({"url": receiver.url()})).await;
    app.new_payment(1_000).await;
    let attempt = first_attempt(&app).await;
    assert_eq!(attempt["status"], "delivered", "{attempt}");
    assert_eq!(
        proxy.requests(),
        [format!("POST {} HTTP/1.1", receiver.url())],
        "the proxy was asked for the endpoint"
    );
    assert!(receiver.seen().is_empty(), "nothing went around the proxy");
}

#[tokio::test]
async fn through_the_event_proxy_a_name_on_a_private_address_is_refused_before_sending() {
    let proxy = FakeProxy::start().await;
    let app = app_with_proxy(&proxy, test_env).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    endpoint_moved_to(
        &app,
        &format!("http://localhost:{}/hook", receiver.addr.port()),
    )
    .await;
    app.new_payment(1_000).await;
    let attempt = first_attempt(&app).await;
    assert_eq!(attempt["status"], "retrying");
    assert!(error_of(&attempt).contains("forbidden"), "{attempt}");
    assert_eq!(proxy.connections(), 0, "{:?}", proxy.requests());
    assert!(receiver.seen().is_empty());
}

#[tokio::test]
async fn through_the_event_proxy_a_name_that_does_not_resolve_is_refused_before_sending() {
    // Registration lets it through (it may resolve later); the proxy
    // would resolve it with its own DNS, so delivery does not send it.
    let proxy = FakeProxy::start().await;
    let app = app_with_proxy(&proxy, test_env).await;
    register(
        &app,
        &app.api_key,
        json!({"url": "http://payorch-test.invalid/hook"}),
    )
    .await;
    app.new_payment(1_000).await;
    let attempt = first_attempt(&app).await;
    assert_eq!(attempt["status"], "retrying");
    assert!(error_of(&attempt).contains("does not resolve"), "{attempt}");
    assert_eq!(proxy.connections(), 0, "{:?}", proxy.requests());
}
