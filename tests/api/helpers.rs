//! Test harness: isolated databases, a spawned app, an HTTP client.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use payorch::{
    Config,
    config::DatabaseUrl,
    domain::{Amount, Currency, Email, Reference},
    payments::{ActorSettings, NewPaymentRequest, Payments},
    provider::{Connectors, paystack::PaystackClient},
    store::{self, api_clients},
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tokio::sync::oneshot;
use uuid::Uuid;

/// The server-level URL tests create their databases through.
fn admin_url() -> String {
    std::env::var("PAYORCH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn random_name(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::new_v4().simple())
}

/// For a test that asserts process-wide state which other tests in this
/// binary change as they run (a gauge with a connector's name): `true` in
/// a child process of this test binary that runs `test` alone — the test
/// goes on there; `false` in the parent once that child passed.
pub fn in_own_process(test: &str) -> bool {
    const ALONE: &str = "PAYORCH_TEST_ALONE";
    if std::env::var_os(ALONE).is_some() {
        return true;
    }
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads=1"])
        .env(ALONE, "1")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success() && printed.contains("1 passed"),
        "{test} in its own process:\n{printed}{}",
        String::from_utf8_lossy(&child.stderr)
    );
    false
}

/// A database of its own for one test, dropped when the value is.
pub struct TestDb {
    pub url: String,
    kind: TestDbKind,
}

enum TestDbKind {
    Postgres { name: String },
    Sqlite { dir: std::path::PathBuf },
}

impl TestDb {
    pub async fn postgres() -> TestDb {
        let name = random_name("payorch_test");
        let admin = Database::connect(admin_url())
            .await
            .expect("the test PostgreSQL answers (run `make services`)");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("creating a test database");
        admin.close().await.ok();
        let base = admin_url();
        let server = base
            .rsplit_once('/')
            .map(|(server, _)| server)
            .unwrap_or(&base);
        TestDb {
            url: format!("{server}/{name}"),
            kind: TestDbKind::Postgres { name },
        }
    }

    pub fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(random_name("payorch_test"));
        std::fs::create_dir_all(&dir).expect("creating a temp dir");
        TestDb {
            url: format!("sqlite://{}/payorch.db?mode=rwc", dir.display()),
            kind: TestDbKind::Sqlite { dir },
        }
    }

    pub async fn connect(&self) -> DatabaseConnection {
        let url: DatabaseUrl = self.url.parse().unwrap();
        store::connect_url(&url, 5, Duration::from_secs(5))
            .await
            .expect("connecting to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.kind {
            TestDbKind::Postgres { name } => {
                let name = name.clone();
                // Drop runs inside the test's runtime, which cannot block on
                // itself: a short-lived runtime on its own thread does the work.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        if let Ok(admin) = Database::connect(admin_url()).await {
                            let _ = admin
                                .execute_unprepared(&format!(
                                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                ))
                                .await;
                            admin.close().await.ok();
                        }
                    });
                })
                .join();
            }
            TestDbKind::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Limits so high that tests of other things never meet them; the
/// rate-limit tests set their own.
pub const GENEROUS_LIMITS: &str = "initialize=100000/60,verify=100000/60,unauthenticated=100000/60";

/// Environment for a test app: isolated prefixes, generous limits, a
/// small connection pool (two suites running side by side must stay under
/// PostgreSQL's 100 connections), everything else default.
pub fn test_env(db: &TestDb) -> HashMap<String, String> {
    HashMap::from([
        ("DATABASE_URL".into(), db.url.clone()),
        ("PAYORCH_RATE_LIMITS".into(), GENEROUS_LIMITS.into()),
        ("PAYORCH_QUEUE_PREFIX".into(), random_name("q")),
        ("PAYORCH_REDIS_PREFIX".into(), random_name("r")),
        ("PAYORCH_DB_MAX_CONNECTIONS".into(), "5".into()),
        // Outside embedded mode the provider is named, and tests sign their
        // webhooks with the well-known test key.
        ("PAYORCH_PROVIDER".into(), "sandbox".into()),
        (
            "PAYSTACK_SECRET_KEY".into(),
            payorch::config::SANDBOX_SECRET_KEY.into(),
        ),
        // Outside embedded mode endpoint secrets are sealed under a
        // configured key; each test app has its own.
        (
            "PAYORCH_SECRETS_KEY".into(),
            payorch::sealing::SealingKey::generate()
                .encoded()
                .expose()
                .to_owned(),
        ),
    ])
}

/// Defaults but the well-known test key, for a standalone sandbox.
pub fn sandbox_config() -> Arc<Config> {
    Arc::new(
        Config::from_lookup(|name| {
            (name == "PAYSTACK_SECRET_KEY").then(|| payorch::config::SANDBOX_SECRET_KEY.into())
        })
        .expect("the sandbox's test configuration is valid"),
    )
}

/// The sandbox provider on a free port, served until the value is dropped.
pub struct SandboxServer {
    pub url: String,
    _stop: oneshot::Sender<()>,
}

impl SandboxServer {
    pub async fn start() -> SandboxServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(payorch::serve_sandbox(sandbox_config(), listener, async {
            let _ = stopped.await;
        }));
        SandboxServer { url, _stop: stop }
    }

    /// A client of it in Paystack's dialect, named `name`.
    pub fn client(&self, name: &'static str) -> Arc<PaystackClient> {
        SandboxServer::client_at(&self.url, name)
    }

    /// A client in Paystack's dialect of the sandbox at `url`.
    pub fn client_at(url: &str, name: &'static str) -> Arc<PaystackClient> {
        Arc::new(PaystackClient::new(
            name,
            url.parse().unwrap(),
            payorch::config::Secret::new(payorch::config::SANDBOX_SECRET_KEY),
            Duration::from_secs(5),
        ))
    }
}

pub fn config_from(env: &HashMap<String, String>) -> Config {
    Config::from_lookup(|name| env.get(name).cloned()).expect("test configuration is valid")
}

pub fn init_logs() {
    payorch::install_crypto_provider();
    if std::env::var_os("TEST_LOG").is_some() {
        payorch::telemetry::init(payorch::config::LogFormat::Text);
    }
}

/// A running app on a port of its own, stopped when dropped.
pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub db: DatabaseConnection,
    /// Secret key of a client created for the test.
    pub api_key: String,
    /// The app's database, for processes a test starts beside it.
    pub database_url: String,
    pub client_id: Uuid,
    stop: Option<oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<Result<(), payorch::StartupError>>>,
    /// Keeps the database alive as long as the app; dropped after it.
    _test_db: Arc<TestDb>,
    /// The broker topology this app declared (webhooks, events), deleted
    /// when it is dropped.
    amqp: Vec<payorch::queue::amqp::AmqpQueue>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        let db = TestDb::postgres().await;
        let env = test_env(&db);
        TestApp::spawn_with(Arc::new(db), env).await
    }

    pub async fn spawn_with(test_db: Arc<TestDb>, env: HashMap<String, String>) -> TestApp {
        init_logs();
        let cfg = Arc::new(config_from(&env));
        let amqp = match cfg.amqp_url.as_ref() {
            Some(url) => vec![
                payorch::queue::amqp::AmqpQueue::new(
                    url.expose(),
                    &cfg.queue_prefix,
                    cfg.retry_policy.clone(),
                ),
                payorch::queue::amqp::AmqpQueue::new(
                    url.expose(),
                    &cfg.queue_prefix,
                    cfg.event_retry_policy.clone(),
                )
                .of_kind(payorch::queue::EVENTS, 0),
            ],
            None => Vec::new(),
        };
        let db = test_db.connect().await;
        store::migrate(&db, &cfg.database_url)
            .await
            .expect("migrating");
        let (client, api_key) = api_clients::create(&db, "test-client").await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(payorch::serve(cfg, listener, async {
            let _ = stopped.await;
        }));
        TestApp {
            addr,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            db,
            api_key,
            database_url: test_db.url.clone(),
            client_id: client.id,
            stop: Some(stop),
            server: Some(server),
            _test_db: test_db,
            amqp,
        }
    }

    /// The HTTP client and base URL, to move into a spawned task.
    pub fn clone_http(&self) -> (reqwest::Client, String) {
        (self.http.clone(), format!("http://{}", self.addr))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(&self.api_key)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(&self.api_key)
    }

    /// Asks the server to stop and waits for it to finish.
    pub async fn shutdown(mut self) -> Result<(), payorch::StartupError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.take().unwrap().await.expect("server task")
    }
}

/// Waits (at most 15 s) for `tasks` to end, when the test runs on a
/// multi-thread runtime: there they run beside the code that drops them,
/// and a consumer still running could declare its queues again after the
/// topology is deleted. On a current-thread runtime nothing else runs
/// while a value is dropped, and the runtime's end cancels them.
pub fn finish_before_cleanup<T>(tasks: Vec<tokio::task::JoinHandle<T>>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if tasks.is_empty() || handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return;
    }
    tokio::task::block_in_place(|| {
        handle.block_on(async {
            let all = futures_util::future::join_all(tasks);
            let _ = tokio::time::timeout(Duration::from_secs(15), all).await;
        })
    });
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        finish_before_cleanup(self.server.take().into_iter().collect());
        let queues = std::mem::take(&mut self.amqp);
        if !queues.is_empty() {
            // As with the database: a runtime of its own, off the test's.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                for queue in queues {
                    let _ = runtime.block_on(queue.delete_topology());
                }
            })
            .join();
        }
    }
}

/// A queue topology a test declared itself: deleted when the test ends,
/// passed or failed (off the test's runtime, as `TestApp` does).
pub struct OwnTopology(pub payorch::queue::amqp::AmqpQueue);

impl Drop for OwnTopology {
    fn drop(&mut self) {
        let queue = self.0.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(queue.delete_topology())
        })
        .join();
    }
}

impl TestApp {
    /// Calls the sandbox's control API (mounted at `/sandbox`).
    pub async fn sandbox(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/sandbox/_control/{path}")))
            .bearer_auth(payorch::config::SANDBOX_SECRET_KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// The sandbox ledger's entry for `reference` in `provider`'s dialect
    /// (the provider's truth).
    pub async fn ledger_entry(&self, provider: &str, reference: &str) -> serde_json::Value {
        let ledger: serde_json::Value = self
            .http
            .get(self.url(&format!("/sandbox/_control/ledger?provider={provider}")))
            .bearer_auth(payorch::config::SANDBOX_SECRET_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ledger
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["reference"] == reference)
            .cloned()
            .unwrap_or_else(|| panic!("{reference} not in the {provider} ledger: {ledger}"))
    }

    pub async fn sandbox_stats(&self) -> serde_json::Value {
        self.sandbox_stats_of("paystack").await
    }

    /// The sandbox's counts for one dialect (`paystack`, `flutterwave`).
    pub async fn sandbox_stats_of(&self, provider: &str) -> serde_json::Value {
        self.http
            .get(self.url(&format!("/sandbox/_control/stats?provider={provider}")))
            .bearer_auth(payorch::config::SANDBOX_SECRET_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `POST /v1/payments/initialize` with an optional Idempotency-Key.
    pub async fn initialize(
        &self,
        body: &serde_json::Value,
        key: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.post("/v1/payments/initialize").json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.unwrap()
    }

    /// Initializes a payment and returns its JSON (asserting 201).
    pub async fn new_payment(&self, amount: i64) -> serde_json::Value {
        let response = self
            .initialize(
                &serde_json::json!({"amount": amount, "currency": "NGN", "email": "ada@example.com"}),
                None,
            )
            .await;
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    /// `GET /v1/payments/{reference}` (asserting 200): the payment with its
    /// transitions.
    pub async fn payment(&self, reference: &str) -> serde_json::Value {
        let response = self
            .get(&format!("/v1/payments/{reference}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {reference}");
        response.json().await.unwrap()
    }

    /// POSTs `body` exactly as given, as JSON, with the test's key.
    pub async fn post_raw(&self, path: &str, body: &str) -> reqwest::Response {
        self.post(path)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    pub async fn payment_count(&self) -> u64 {
        use sea_orm::{EntityTrait, PaginatorTrait};
        payorch::store::entities::payment::Entity::find()
            .count(&self.db)
            .await
            .unwrap()
    }

    /// A second API client of the same app.
    /// Starts the sandbox's `_control/burst` (settles every ongoing
    /// transaction and fires its webhooks, shaped by `body`); the task
    /// yields its report.
    pub fn burst(&self, body: serde_json::Value) -> tokio::task::JoinHandle<serde_json::Value> {
        let request = self
            .http
            .post(self.url("/sandbox/_control/burst"))
            .bearer_auth(payorch::config::SANDBOX_SECRET_KEY)
            .json(&body)
            .timeout(Duration::from_secs(600));
        tokio::spawn(async move { request.send().await.unwrap().json().await.unwrap() })
    }

    /// Submits the sandbox checkout form of `payment` with `outcome`
    /// (`success` or `failed`), as a person clicking its button.
    pub async fn checkout(&self, payment: &serde_json::Value, outcome: &str) -> reqwest::Response {
        self.http
            .post(payment["authorization_url"].as_str().unwrap())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("outcome={outcome}"))
            .send()
            .await
            .unwrap()
    }

    pub async fn other_client_key(&self) -> String {
        payorch::store::api_clients::create(&self.db, "other")
            .await
            .unwrap()
            .1
    }
}

/// Sends a request that must answer JSON, and returns it.
pub trait SendJson {
    fn json_body(self) -> impl std::future::Future<Output = serde_json::Value>;
}

impl SendJson for reqwest::RequestBuilder {
    async fn json_body(self) -> serde_json::Value {
        self.send().await.unwrap().json().await.unwrap()
    }
}

/// Asserts a problem+json response with `status` and `code`; returns the body.
pub async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(content_type, "application/problem+json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "{field} missing in {body}");
    }
    body
}

/// A TCP proxy a test can cut and restore, to take a dependency "down"
/// without stopping the machine's shared server.
pub struct TcpProxy {
    pub port: u16,
    target: String,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// While `true`, what clients send is not passed on (it waits in the
    /// sockets); what the target sends still reaches them.
    hold: tokio::sync::watch::Sender<bool>,
}

impl TcpProxy {
    pub async fn start(target: &str) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = TcpProxy {
            port: listener.local_addr().unwrap().port(),
            target: target.to_owned(),
            tasks: std::sync::Mutex::new(Vec::new()),
            connections: Arc::new(std::sync::Mutex::new(Vec::new())),
            hold: tokio::sync::watch::channel(false).0,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let target = self.target.clone();
        let connections = self.connections.clone();
        let hold = self.hold.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let target = target.clone();
                let held = hold.subscribe();
                let pipe = tokio::spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(&target).await {
                        let (from_client, to_client) = inbound.into_split();
                        let (from_target, to_target) = outbound.into_split();
                        let (never, _) = tokio::sync::watch::channel(false);
                        tokio::join!(
                            pump(from_client, to_target, held),
                            pump(from_target, to_client, never.subscribe()),
                        );
                    }
                });
                connections.lock().unwrap().push(pipe);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Stops passing on what clients send (`true`) or passes it on again.
    pub fn hold_upstream(&self, hold: bool) {
        self.hold.send_replace(hold);
    }

    /// Stops listening and drops every open connection.
    pub fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        for pipe in self.connections.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restore(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => panic!("cannot listen on {} again: {err}", self.port),
            }
        };
        self.serve(listener);
    }
}

/// Copies `from` to `to` while `hold` is `false`; ends with either side.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut hold: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while *hold.borrow_and_update() {
            if hold.changed().await.is_err() {
                return;
            }
        }
        tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            // Re-checked at the top; a read in progress is safely dropped.
            changed = hold.changed() => if changed.is_err() {
                // The proxy is gone: plain copying from here on.
                let _ = tokio::io::copy(&mut from, &mut to).await;
                return;
            },
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// The payorch binary with an empty environment but `PATH` and the
/// well-known test key the tests sign with (and, under `make coverage`,
/// where to write its profile), so only what a test sets counts.
pub fn payorch_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_payorch"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PAYSTACK_SECRET_KEY", payorch::config::SANDBOX_SECRET_KEY);
    if let Ok(profile) = std::env::var("LLVM_PROFILE_FILE") {
        command.env("LLVM_PROFILE_FILE", profile);
    }
    command
}

/// A relay to `provider` that passes each request on at once but holds
/// every answer until `true` is sent: a provider that is slow for exactly
/// as long as a test needs. (The sandbox's own faults fail a call or hang
/// it past the client's timeout; none answers late but well.)
pub async fn holding_relay(
    provider: std::net::SocketAddr,
) -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (release, released) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let mut released = released.clone();
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(provider).await else {
                    return;
                };
                let (mut from_client, mut to_client) = inbound.into_split();
                let (mut from_provider, mut to_provider) = outbound.into_split();
                let requests = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_client, &mut to_provider).await;
                });
                let go = released.wait_for(|go| *go).await.is_ok();
                if go {
                    let _ = tokio::io::copy(&mut from_provider, &mut to_client).await;
                }
                requests.abort();
            });
        }
    });
    (addr, release)
}

/// One process's payment core: its own actors, on the given pool.
pub fn start_payments(
    db: DatabaseConnection,
    provider: Arc<PaystackClient>,
    idle: Duration,
) -> Payments {
    let actors = ActorSettings {
        idle,
        mailbox: 64,
        arbiters: 2,
    };
    Payments::start(
        db,
        Connectors::single(provider),
        actors,
        Duration::from_secs(30),
    )
    .unwrap()
}

/// An NGN payment request for `amount` under `reference`, no pin, no
/// callback, no metadata.
pub fn payment_request(reference: Reference, amount: i64) -> NewPaymentRequest {
    NewPaymentRequest {
        reference,
        amount: Amount::new(amount).unwrap(),
        currency: Currency::NGN,
        email: Email::parse("a@b.co").unwrap(),
        callback_url: None,
        metadata: None,
        provider: None,
    }
}

/// The reconcile threshold tests run sweeps with: above the default
/// provider timeout, as startup requires; rows are [`backdate`]d past it
/// instead of waiting.
pub const RECONCILE_AFTER_S: &str = "60";

/// Moves every payment's and refund's timestamps an hour into the past
/// (PostgreSQL), as if that much time had gone by: sweeps judge age, and a
/// test does not wait for it.
pub async fn backdate(db: &DatabaseConnection) {
    for sql in [
        "UPDATE payments SET created_at = created_at - interval '1 hour', \
         updated_at = updated_at - interval '1 hour', \
         checked_at = checked_at - interval '1 hour'",
        "UPDATE refunds SET created_at = created_at - interval '1 hour', \
         updated_at = updated_at - interval '1 hour'",
    ] {
        db.execute_unprepared(sql).await.unwrap();
    }
}
