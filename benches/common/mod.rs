//! Shared pieces of the benchmarks: a fresh database, payorch as a child
//! process, a closed-loop load generator, percentiles. The benchmarks need
//! the machine's PostgreSQL, Redis and RabbitMQ (`make services`).
#![allow(dead_code)]

use std::{
    collections::HashMap,
    future::Future,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use lapin::{BasicProperties, Connection, ConnectionProperties, options::*, types::FieldTable};
use sea_orm::{ConnectionTrait, Database, Statement};

pub const ADMIN_DB: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const REDIS: &str = "redis://127.0.0.1:6379";
pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub fn name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

pub struct BenchDb {
    pub name: String,
    pub url: String,
}

impl BenchDb {
    pub async fn create() -> BenchDb {
        let name = name("payorch_bench");
        let admin = Database::connect(ADMIN_DB)
            .await
            .expect("PostgreSQL (make services)");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        BenchDb {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-q", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .status();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The payorch binary the bench runs: this build, or the one named by
/// `PAYORCH_BENCH_BIN` (another commit's build, for a side-by-side run).
pub fn payorch_bin() -> String {
    std::env::var("PAYORCH_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_payorch").into())
}

/// `payorch <args>` with `env`, as a child process.
pub struct Payorch(pub Child);

impl Payorch {
    pub fn spawn(args: &[&str], env: &HashMap<String, String>) -> Payorch {
        let child = Command::new(payorch_bin())
            .args(args)
            .envs(env)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("starting payorch");
        Payorch(child)
    }

    pub fn run(args: &[&str], env: &HashMap<String, String>) -> String {
        let output = Command::new(payorch_bin())
            .args(args)
            .envs(env)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    pub fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Payorch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn wait_healthy(base: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "payorch did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn api_keys(n: usize, env: &HashMap<String, String>) -> Vec<String> {
    (0..n)
        .map(|i| {
            let out = Payorch::run(&["apikey", "create", "--name", &format!("bench-{i}")], env);
            out.lines().last().unwrap().trim().to_owned()
        })
        .collect()
}

/// Latencies and throughput of one scenario.
pub struct Report {
    pub name: String,
    pub latencies_us: Vec<u64>,
    pub elapsed: Duration,
    pub failures: usize,
}

impl Report {
    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[i] as f64 / 1000.0
    }

    pub fn rate(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn row(&self, floor: Option<&Report>) -> String {
        let ratio = floor
            .map(|f| format!("{:.1}×", self.percentile(50.0) / f.percentile(50.0)))
            .unwrap_or_else(|| "—".into());
        format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {ratio} |",
            self.name,
            self.latencies_us.len(),
            self.rate(),
            self.percentile(50.0),
            self.percentile(95.0),
            self.percentile(99.0),
            self.failures,
        )
    }
}

pub const HEADER: &str = "| scenario | requests | req/s | p50 ms | p95 ms | p99 ms | failures | p50 vs floor |\n|---|---|---|---|---|---|---|---|";

/// Runs `call` from `concurrency` loops for `duration` (or until `total`
/// calls were made); a call returns whether it succeeded.
pub async fn load<F, Fut>(
    name: &str,
    concurrency: usize,
    duration: Duration,
    total: Option<usize>,
    call: F,
) -> Report
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    // Progress on stderr, so a profiler can be started with a scenario.
    eprintln!("running: {name}");
    let call = Arc::new(call);
    let counter = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let call = call.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            loop {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                if total.is_some_and(|t| i >= t) || (total.is_none() && Instant::now() >= deadline)
                {
                    break;
                }
                let t0 = Instant::now();
                if call(i).await {
                    latencies.push(t0.elapsed().as_micros() as u64);
                } else {
                    failures += 1;
                }
            }
            (latencies, failures)
        }));
    }
    let mut report = Report {
        name: name.to_owned(),
        latencies_us: Vec::new(),
        elapsed: Duration::ZERO,
        failures: 0,
    };
    for task in tasks {
        let (latencies, failures) = task.await.unwrap();
        report.latencies_us.extend(latencies);
        report.failures += failures;
    }
    report.elapsed = started.elapsed();
    report
}

/// Resident memory of a process, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// `INFO commandstats` calls of `command` on the local Redis.
pub fn redis_calls(command: &str) -> u64 {
    let out = Command::new("redis-cli")
        .args(["info", "commandstats"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used so far, from `/proc`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are the 14th and 15th fields; the first two are gone.
    let total = ticks(11) + ticks(12);
    Duration::from_millis(total * 1000 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// The pids of processes whose command name is `name` (e.g. `beam.smp`).
pub fn pids_named(name: &str) -> Vec<u32> {
    Command::new("pgrep")
        .args(["-x", name])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// CPU used by each named group of processes between two samples.
pub struct CpuSample(Vec<(&'static str, Vec<u32>, Duration)>);

impl CpuSample {
    pub fn take(groups: &[(&'static str, Vec<u32>)]) -> CpuSample {
        CpuSample(
            groups
                .iter()
                .map(|(label, pids)| {
                    (
                        *label,
                        pids.clone(),
                        pids.iter().map(|p| cpu_time(*p)).sum(),
                    )
                })
                .collect(),
        )
    }

    /// "label 123 µs, …" per unit of work since this sample.
    pub fn per_unit_since(&self, units: usize) -> String {
        self.0
            .iter()
            .map(|(label, pids, before)| {
                let now: Duration = pids.iter().map(|p| cpu_time(*p)).sum();
                let micros = now.saturating_sub(*before).as_micros() as f64 / units as f64;
                format!("{label} {micros:.0} µs")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// CPU used so far by each process named `name`, by pid.
pub fn cpu_by_pid(name: &str) -> HashMap<u32, Duration> {
    pids_named(name)
        .into_iter()
        .map(|pid| (pid, cpu_time(pid)))
        .collect()
}

/// CPU the processes named `name` used since `before`; processes started
/// since then count in full (those that ended meanwhile are not seen).
pub fn cpu_since(name: &str, before: &HashMap<u32, Duration>) -> Duration {
    cpu_by_pid(name)
        .into_iter()
        .map(|(pid, now)| now.saturating_sub(before.get(&pid).copied().unwrap_or_default()))
        .sum()
}

/// RabbitMQ's own rate for `publishes` persistent publishes of `body_len`
/// bytes to a quorum queue, each awaiting its confirm, from `senders`
/// loops: the ceiling of anything that publishes with confirms.
pub async fn broker_ceiling(
    prefix: &str,
    body_len: usize,
    publishes: usize,
    senders: usize,
) -> Report {
    let conn = Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let queue = format!("{prefix}.ceiling");
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
    let body = Arc::new(vec![b'x'; body_len]);
    let channel = Arc::new(channel);
    let queue = Arc::new(queue);
    let report = {
        let (channel, queue) = (channel.clone(), queue.clone());
        load(
            "RabbitMQ: persistent publish + confirm (ceiling)",
            senders,
            Duration::from_secs(600),
            Some(publishes),
            move |_| {
                let (channel, queue, body) = (channel.clone(), queue.clone(), body.clone());
                async move {
                    let confirm = channel
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            BasicPublishOptions::default(),
                            &body,
                            BasicProperties::default().with_delivery_mode(2),
                        )
                        .await;
                    match confirm {
                        Ok(confirm) => confirm.await.is_ok_and(|c| c.is_ack()),
                        Err(_) => false,
                    }
                }
            },
        )
        .await
    };
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    report
}

/// The environment of a bench's `serve` and `worker`: PostgreSQL at
/// `db_url`, RabbitMQ under `prefix`, the sandbox with the test key, the
/// API on `port`, no rate limits; `extra` on top.
pub fn bench_env(
    db_url: &str,
    prefix: &str,
    port: u16,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut env = HashMap::from([
        ("DATABASE_URL".to_string(), db_url.to_string()),
        ("PAYORCH_PROVIDER".to_string(), "sandbox".to_string()),
        (
            "PAYORCH_SECRETS_KEY".to_string(),
            payorch::sealing::SealingKey::generate()
                .encoded()
                .expose()
                .to_owned(),
        ),
        (
            "PAYSTACK_SECRET_KEY".to_string(),
            payorch::config::SANDBOX_SECRET_KEY.to_string(),
        ),
        ("AMQP_URL".to_string(), AMQP.to_string()),
        ("PAYORCH_QUEUE_PREFIX".to_string(), prefix.to_string()),
        ("PAYORCH_HTTP_ADDR".to_string(), format!("127.0.0.1:{port}")),
        ("PAYORCH_RATE_LIMITS".to_string(), String::new()),
    ]);
    for (name, value) in extra {
        env.insert(name.to_string(), value.to_string());
    }
    env
}

/// Deletes every queue and exchange the payorch processes of a bench
/// declared under `env`'s prefix: the webhooks' and the merchant events'
/// (workers and `serve` deliver events too), so a bench leaves nothing on
/// the broker.
pub async fn delete_payorch_queues(env: &HashMap<String, String>) {
    let cfg = payorch::Config::from_lookup(|n| env.get(n).cloned()).unwrap();
    let webhooks =
        payorch::queue::amqp::AmqpQueue::new(AMQP, &cfg.queue_prefix, cfg.retry_policy.clone());
    let events =
        payorch::queue::amqp::AmqpQueue::new(AMQP, &cfg.queue_prefix, cfg.event_retry_policy)
            .of_kind(payorch::queue::EVENTS, 0);
    for queue in [webhooks, events] {
        let _ = queue.delete_topology().await;
    }
}

/// `pgbench` running `script` on database `db` from `clients` connections
/// for `seconds` (prepared statements; `defines` as `-D name=value`): its
/// transactions per second.
pub fn pgbench_tps(
    db: &str,
    script: &str,
    clients: usize,
    seconds: u64,
    defines: &[(&str, &str)],
) -> f64 {
    let path = std::env::temp_dir().join(name("payorch_pgbench"));
    std::fs::write(&path, script).unwrap();
    let mut command = Command::new("pgbench");
    command.args([
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-n",
        "-M",
        "prepared",
        "-j",
        "2",
    ]);
    command.args(["-c", &clients.to_string(), "-T", &seconds.to_string()]);
    for (name, value) in defines {
        command.arg("-D").arg(format!("{name}={value}"));
    }
    let out = command.arg("-f").arg(&path).arg(db).output().unwrap();
    let _ = std::fs::remove_file(path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tps = stdout
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok());
    tps.unwrap_or_else(|| {
        eprintln!(
            "pgbench failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        f64::NAN
    })
}

/// `payorch sandbox` as a process of its own, so that the connectors' side
/// of a bench runs, and spends its CPU, apart from payorch's.
pub struct SandboxProcess {
    pub process: Payorch,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl SandboxProcess {
    /// Starts it with the well-known test key; its webhooks go to the API
    /// at `api_base`.
    pub async fn start(api_base: &str) -> SandboxProcess {
        let port = free_port();
        let env = HashMap::from([
            ("PAYORCH_PROVIDER".to_string(), "sandbox".to_string()),
            (
                "PAYSTACK_SECRET_KEY".to_string(),
                payorch::config::SANDBOX_SECRET_KEY.to_string(),
            ),
            (
                "PAYORCH_SANDBOX_ADDR".to_string(),
                format!("127.0.0.1:{port}"),
            ),
            (
                "PAYORCH_SANDBOX_WEBHOOK_URL".to_string(),
                format!("{api_base}/v1/webhooks/sandbox"),
            ),
        ]);
        let process = Payorch::spawn(&["sandbox"], &env);
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the sandbox did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        SandboxProcess {
            process,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Points a payorch environment's connectors at it (Paystack's and
    /// Flutterwave's dialects).
    pub fn connect(&self, env: &mut HashMap<String, String>) {
        env.insert("PAYSTACK_BASE_URL".into(), format!("{}/", self.base));
        env.insert(
            "FLUTTERWAVE_BASE_URL".into(),
            format!("{}/flutterwave/", self.base),
        );
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// Whether `pg_stat_statements` can be read (it must be in the server's
/// `shared_preload_libraries`); if so its counters are reset.
pub async fn statements_reset(db: &sea_orm::DatabaseConnection) -> bool {
    let backend = db.get_database_backend();
    let _ = db
        .execute_raw(Statement::from_string(
            backend,
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
        ))
        .await;
    db.execute_raw(Statement::from_string(
        backend,
        "SELECT pg_stat_statements_reset()",
    ))
    .await
    .is_ok()
}

/// The bench database's statements since the last reset, by execution
/// time, per unit (event, request): calls, rows and microseconds of
/// execution.
pub async fn statements_per_unit(db: &sea_orm::DatabaseConnection, units: usize) -> Vec<String> {
    // First every statement together: each is a round trip, `BEGIN` and
    // `COMMIT` included (the pool's ping on each release is not one).
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            r"WITH mine AS (SELECT calls, rows, total_exec_time, query FROM pg_stat_statements
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()))
              (SELECT sum(calls)::bigint, sum(rows)::bigint, sum(total_exec_time),
                      '(all statements)' FROM mine)
              UNION ALL
              (SELECT calls, rows, total_exec_time,
                      left(regexp_replace(query, '\s+', ' ', 'g'), 90)
                 FROM mine ORDER BY total_exec_time DESC LIMIT 8)",
        ))
        .await
        .unwrap_or_default();
    let units = units as f64;
    rows.iter()
        .map(|row| {
            let calls: i64 = row.try_get_by_index(0).unwrap_or_default();
            let returned: i64 = row.try_get_by_index(1).unwrap_or_default();
            let millis: f64 = row.try_get_by_index(2).unwrap_or_default();
            let query: String = row.try_get_by_index(3).unwrap_or_default();
            format!(
                "    {:>6.3} calls {:>6.2} rows {:>6.1} µs  {query}",
                calls as f64 / units,
                returned as f64 / units,
                millis * 1000.0 / units,
            )
        })
        .collect()
}
