//! The system under test, as separate processes: the sandbox (both
//! dialects), two `payorch serve` and two `payorch worker`, on a fresh
//! PostgreSQL database, RabbitMQ and Redis under random prefixes. Each
//! payorch process is a [`Slot`] that the fault schedule may kill (-9) and
//! restart on the same port and environment. [`Cluster::clean_up`] leaves
//! nothing behind: processes, the database, the queues, the Redis keys, the
//! logs (kept, and their place printed, when the campaign failed).

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

pub const ADMIN_DB: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const REDIS: &str = "redis://127.0.0.1:6379";
pub const SANDBOX_KEY: &str = payorch::config::SANDBOX_SECRET_KEY;

/// The knobs that make a one-minute run reach a settled end: a short
/// provider timeout, sweeps every second for anything two seconds old,
/// webhook and merchant-event retries within seconds.
const TIMINGS: &[(&str, &str)] = &[
    ("PAYORCH_PROVIDER_TIMEOUT_MS", "1000"),
    ("PAYORCH_RECONCILE_AFTER_S", "2"),
    ("PAYORCH_RECONCILE_EVERY_S", "1"),
    // The workers' own sweeps judge unfound refunds as the end phase does:
    // with the default (a day) a worker's sweep, stamping a refund it
    // looked up again, kept the final `payorch reconcile` from claiming it,
    // and a refund the provider never got stayed pending with no review.
    ("PAYORCH_REFUND_REVIEW_AFTER_S", "600"),
    ("PAYORCH_WEBHOOK_RETRY_DELAYS_MS", "200,500,1000,2000,4000"),
    (
        "PAYORCH_EVENT_RETRY_DELAYS_MS",
        "200,500,1000,2000,4000,8000,15000",
    ),
    ("PAYORCH_EVENT_TIMEOUT_MS", "2000"),
    ("PAYORCH_BREAKER_OPEN_MS", "2000"),
    ("PAYORCH_IDEMPOTENCY_LOCK_SECS", "6"),
];

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn random_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Serve,
    Worker,
}

/// One payorch process the schedule may kill and restart.
pub struct Slot {
    pub role: Role,
    pub index: usize,
    env: HashMap<String, String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Slot {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("opening a process log");
        let verb = match self.role {
            Role::Serve => "serve",
            Role::Worker => "worker",
        };
        let child = payorch_command()
            .arg(verb)
            .envs(&self.env)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting payorch");
        self.child = Some(child);
    }

    /// `kill -9`, and wait for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The payorch binary with an empty environment but `PATH`, so only what
/// the campaign sets counts: the one this build made, or `CHAOS_PAYORCH`
/// (a copy that a rebuild during a long run does not replace under the
/// processes it restarts).
pub fn payorch_command() -> Command {
    let binary =
        std::env::var_os("CHAOS_PAYORCH").unwrap_or_else(|| env!("CARGO_BIN_EXE_payorch").into());
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    command
}

pub struct Cluster {
    db_name: String,
    pub db: DatabaseConnection,
    /// The environment of every payorch process but the per-process
    /// listen address: what `payorch reconcile` runs with too.
    pub env: HashMap<String, String>,
    pub sandbox_url: String,
    pub serve_urls: Vec<String>,
    pub api_key: String,
    slots: Mutex<Vec<Slot>>,
    sandbox: Mutex<Option<Child>>,
    pub log_dir: PathBuf,
    /// Set by [`Cluster::clean_up`]: a restart still pending does nothing.
    closed: AtomicBool,
}

impl Cluster {
    /// Starts everything; `relay_port` is where the sandbox posts its
    /// webhooks (the campaign's relay in front of the serve instances).
    pub async fn start(relay_port: u16, serve_ports: &[u16]) -> Cluster {
        let log_dir = std::env::temp_dir().join(random_name("payorch_chaos"));
        std::fs::create_dir_all(&log_dir).unwrap();
        let db_name = random_name("payorch_chaos");
        let admin = Database::connect(ADMIN_DB)
            .await
            .expect("PostgreSQL answers (make services)");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {db_name}"))
            .await
            .unwrap();
        admin.close().await.ok();
        let db_url = format!("postgres://postgres@127.0.0.1:5432/{db_name}");
        // Until the cluster owns it, a failed start drops it here.
        let guard = DropDatabase(Some(db_name.clone()));
        let sandbox_port = free_port();
        let sandbox_url = format!("http://127.0.0.1:{sandbox_port}");
        let mut env: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".into(), db_url.clone()),
            ("AMQP_URL".into(), AMQP.into()),
            ("REDIS_URL".into(), REDIS.into()),
            ("PAYORCH_QUEUE_PREFIX".into(), random_name("chaos")),
            ("PAYORCH_REDIS_PREFIX".into(), random_name("chaos")),
            ("PAYORCH_PROVIDER".into(), "sandbox".into()),
            ("PAYSTACK_SECRET_KEY".into(), SANDBOX_KEY.into()),
            ("PAYORCH_PROVIDERS".into(), "paystack,flutterwave".into()),
            (
                "PAYORCH_ROUTING".into(),
                "*=paystack:50,flutterwave:50".into(),
            ),
            ("PAYSTACK_BASE_URL".into(), format!("{sandbox_url}/")),
            (
                "FLUTTERWAVE_BASE_URL".into(),
                format!("{sandbox_url}/flutterwave/"),
            ),
            ("PAYORCH_RATE_LIMITS".into(), String::new()),
            ("PAYORCH_ALLOW_PRIVATE_ENDPOINTS".into(), "true".into()),
            ("PAYORCH_DB_MAX_CONNECTIONS".into(), "8".into()),
            // Outside embedded mode serve and worker need the key that
            // seals endpoint secrets; one for this cluster.
            (
                "PAYORCH_SECRETS_KEY".into(),
                payorch::sealing::SealingKey::generate()
                    .encoded()
                    .expose()
                    .to_owned(),
            ),
        ]);
        for (name, value) in TIMINGS {
            env.insert((*name).into(), (*value).into());
        }
        let db = connect(&db_url).await;
        run_payorch(&["migrate"], &env);
        let api_key = run_payorch(&["apikey", "create", "--name", "chaos"], &env)
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_owned();

        let sandbox = payorch_command()
            .arg("sandbox")
            .env("PAYORCH_PROVIDER", "sandbox")
            .env("PAYSTACK_SECRET_KEY", SANDBOX_KEY)
            .env("PAYORCH_SANDBOX_ADDR", format!("127.0.0.1:{sandbox_port}"))
            .env(
                "PAYORCH_SANDBOX_WEBHOOK_URL",
                format!("http://127.0.0.1:{relay_port}/v1/webhooks/sandbox"),
            )
            .stdout(Stdio::null())
            .stderr(log_file(&log_dir, "sandbox"))
            .spawn()
            .expect("starting the sandbox");

        let mut slots = Vec::new();
        for (index, port) in serve_ports.iter().enumerate() {
            let mut env = env.clone();
            env.insert("PAYORCH_HTTP_ADDR".into(), format!("127.0.0.1:{port}"));
            env.insert("PAYORCH_AUTO_MIGRATE".into(), "false".into());
            slots.push(Slot {
                role: Role::Serve,
                index,
                log: log_dir.join(format!("serve{index}.log")),
                env,
                child: None,
            });
        }
        for index in 0..2 {
            let mut env = env.clone();
            env.insert("PAYORCH_AUTO_MIGRATE".into(), "false".into());
            slots.push(Slot {
                role: Role::Worker,
                index,
                log: log_dir.join(format!("worker{index}.log")),
                env,
                child: None,
            });
        }
        for slot in &mut slots {
            slot.start();
        }
        let cluster = Cluster {
            db_name: guard.disarm(),
            db,
            env,
            sandbox_url,
            serve_urls: serve_ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect(),
            api_key,
            slots: Mutex::new(slots),
            sandbox: Mutex::new(Some(sandbox)),
            log_dir,
            closed: AtomicBool::new(false),
        };
        cluster.wait_up().await;
        cluster
    }

    /// Every serve instance answers `/healthz` and the sandbox its stats.
    pub async fn wait_up(&self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut urls: Vec<(String, bool)> = self
            .serve_urls
            .iter()
            .map(|u| (format!("{u}/healthz"), false))
            .collect();
        urls.push((format!("{}/_control/stats", self.sandbox_url), true));
        for (url, control) in urls {
            loop {
                let mut request = http.get(&url);
                if control {
                    request = request.bearer_auth(SANDBOX_KEY);
                }
                if let Ok(response) = request.send().await
                    && response.status().is_success()
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{url} did not come up (logs in {})",
                    self.log_dir.display()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Restarts every slot that is down (a kill whose pause outlived the
    /// traffic), so the end state is reached with everything running.
    pub fn restart_stopped(&self) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        for slot in self.slots.lock().unwrap().iter_mut() {
            if !slot.running() {
                slot.restart();
            }
        }
    }

    /// Restarts the slot `role`/`index` unless it runs or the cluster is
    /// being cleaned up.
    pub fn restart_one(&self, role: Role, index: usize) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        self.with_slot(role, index, |slot| {
            if !slot.running() {
                slot.restart();
            }
        });
    }

    pub fn kill_one(&self, role: Role, index: usize) {
        self.with_slot(role, index, Slot::kill);
    }

    fn with_slot(&self, role: Role, index: usize, f: impl FnOnce(&mut Slot)) {
        let mut slots = self.slots.lock().unwrap();
        if let Some(slot) = slots
            .iter_mut()
            .find(|s| s.role == role && s.index == index)
        {
            f(slot);
        }
    }

    /// `payorch <args>` once, with the cluster's environment and `extra`.
    pub fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> String {
        let mut env = self.env.clone();
        for (name, value) in extra {
            env.insert((*name).into(), (*value).into());
        }
        run_payorch(args, &env)
    }

    /// Stops every process, then removes the queues, the Redis keys, the
    /// database unless `keep_db`, and the logs unless `keep_logs`.
    pub async fn clean_up(&self, keep_logs: bool, keep_db: bool) {
        self.closed.store(true, Ordering::SeqCst);
        for slot in self.slots.lock().unwrap().iter_mut() {
            slot.kill();
        }
        if let Some(mut sandbox) = self.sandbox.lock().unwrap().take() {
            let _ = sandbox.kill();
            let _ = sandbox.wait();
        }
        self.db.clone().close().await.ok();
        if keep_db {
            println!("database kept: {}", self.env["DATABASE_URL"]);
        } else if let Ok(admin) = Database::connect(ADMIN_DB).await {
            let _ = admin
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.db_name
                ))
                .await;
            admin.close().await.ok();
        }
        delete_queues(&self.env).await;
        delete_redis_keys(&self.env["PAYORCH_REDIS_PREFIX"]);
        if keep_logs {
            println!("process logs kept in {}", self.log_dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
    }
}

/// Drops a database when dropped, unless disarmed.
struct DropDatabase(Option<String>);

impl DropDatabase {
    fn disarm(mut self) -> String {
        self.0.take().unwrap()
    }
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        if let Some(name) = &self.0 {
            let _ = Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-q", "-c"])
                .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .status();
        }
    }
}

fn log_file(dir: &std::path::Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(format!("{name}.log"))).unwrap()
}

pub async fn connect(url: &str) -> DatabaseConnection {
    let url: payorch::config::DatabaseUrl = url.parse().unwrap();
    payorch::store::connect_url(&url, 4, Duration::from_secs(5))
        .await
        .expect("connecting to the campaign's database")
}

fn run_payorch(args: &[&str], env: &HashMap<String, String>) -> String {
    let output = payorch_command().args(args).envs(env).output().unwrap();
    assert!(
        output.status.success(),
        "payorch {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Both queue families under the campaign's prefix: the webhooks' and the
/// merchant events'.
fn queues(env: &HashMap<String, String>) -> [payorch::queue::amqp::AmqpQueue; 2] {
    use payorch::queue::amqp::AmqpQueue;
    let cfg = payorch::Config::from_lookup(|n| env.get(n).cloned()).unwrap();
    [
        AmqpQueue::new(AMQP, &cfg.queue_prefix, cfg.retry_policy.clone()),
        AmqpQueue::new(AMQP, &cfg.queue_prefix, cfg.event_retry_policy.clone())
            .of_kind(payorch::queue::EVENTS, 0),
    ]
}

/// Messages waiting in any of the campaign's queues, by queue (parked
/// ones included).
pub async fn queue_depths(env: &HashMap<String, String>) -> Vec<(String, u32)> {
    let mut all = Vec::new();
    for queue in queues(env) {
        match queue.depths().await {
            Ok(depths) => all.extend(depths),
            Err(err) => all.push((format!("unreadable: {err}"), u32::MAX)),
        }
    }
    all
}

async fn delete_queues(env: &HashMap<String, String>) {
    for queue in queues(env) {
        let _ = queue.delete_topology().await;
    }
}

fn delete_redis_keys(prefix: &str) {
    let Ok(listed) = Command::new("redis-cli")
        .args(["--scan", "--pattern", &format!("{prefix}*")])
        .output()
    else {
        return;
    };
    let keys: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    for chunk in keys.chunks(500) {
        let _ = Command::new("redis-cli")
            .arg("del")
            .args(chunk)
            .stdout(Stdio::null())
            .status();
    }
}
