//! The `payorch` binary as an operator meets it.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use crate::helpers::TestDb;

fn payorch() -> Command {
    crate::helpers::payorch_command()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_bad_value_stops_startup_naming_the_variable_with_status_2() {
    for (var, value) in [
        ("PAYORCH_RATE_LIMITS", "initialize=abc"),
        ("DATABASE_URL", "mysql://db/x"),
        ("PAYORCH_HTTP_ADDR", "nowhere"),
        ("PAYORCH_EVENT_PROXY", "socks5://proxy.internal:1080"),
    ] {
        let output = payorch().arg("serve").env(var, value).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(var), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn with_outside_systems_the_provider_must_be_named() {
    for command in ["serve", "worker", "reconcile", "sandbox"] {
        let output = payorch()
            .arg(command)
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/unused")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains("PAYORCH_PROVIDER"), "{command}: {stderr}");
    }
}

#[test]
fn usage_errors_come_from_clap() {
    for args in [
        &["frobnicate"][..],
        &["serve", "--bogus"],
        &["apikey", "create"],
        &[],
    ] {
        let output = payorch().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn an_unreachable_database_is_one_line_naming_the_host() {
    let port = free_port();
    let output = payorch()
        .arg("migrate")
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{port}/x"),
        )
        .env("PAYORCH_DB_ACQUIRE_TIMEOUT_MS", "500")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn apikey_create_prints_the_key_last_and_stores_only_its_hash() {
    let test_db = TestDb::postgres().await;
    let output = payorch()
        .args(["apikey", "create", "--name", "shop-1"])
        .env("DATABASE_URL", &test_db.url)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let key = stdout.lines().last().unwrap().trim();
    assert!(key.starts_with("po_sk_"), "{stdout}");

    let db = test_db.connect().await;
    let (client, _) = payorch::store::api_clients::authenticate(&db, key)
        .await
        .unwrap()
        .expect("the printed key authenticates");
    assert_eq!(client.name, "shop-1");
    use sea_orm::EntityTrait;
    let rows = payorch::store::entities::api_client::Entity::find()
        .all(&db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_ne!(rows[0].key_hash, key, "the key itself is not stored");
    assert_eq!(rows[0].key_hash, payorch::store::api_clients::hash_key(key));
}

/// `payorch serve` with no configuration at all, in an empty directory:
/// SQLite, a printed dev key, `/healthz` up, and a clean exit on SIGTERM.
#[test]
fn serve_runs_on_embedded_defaults_and_stops_on_sigterm() {
    let serve = EmbeddedServe::start(&[]);
    assert!(serve.printed.contains("embedded mode"), "{}", serve.printed);
    assert!(
        serve.dir.join("payorch.db").exists(),
        "SQLite file in the working dir"
    );
    assert_eq!(serve.get("/healthz").0, 200);
    assert_eq!(serve.stop(), Some(0));
}

#[test]
fn outside_embedded_mode_a_missing_or_malformed_secrets_key_is_status_2() {
    for command in [&["serve"][..], &["worker"], &["secrets", "rotate"]] {
        let output = payorch()
            .args(command)
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/unused")
            .env("PAYORCH_PROVIDER", "sandbox")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{command:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(
            stderr.contains("PAYORCH_SECRETS_KEY"),
            "{command:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    // Malformed, in any mode; the value is not repeated.
    for value in ["c2hvcnQgYnV0IHNlY3JldA==", "not base64 at all"] {
        let output = payorch()
            .arg("serve")
            .env("PAYORCH_SECRETS_KEY", value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{value}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains("invalid PAYORCH_SECRETS_KEY"), "{stderr}");
        assert!(!stderr.contains(value), "{stderr}");
    }
}

/// Embedded mode seals endpoint secrets with a key file it generates
/// beside the database (owner-only), says so, and reuses it.
#[test]
fn embedded_mode_generates_its_secrets_key_file_once_and_reuses_it() {
    let dir = tempdir();
    let serve = EmbeddedServe::start_in(dir.clone(), &[]);
    let key_file = dir.join("payorch.db.secrets-key");
    let first = std::fs::read_to_string(&key_file).expect("a key file beside payorch.db");
    assert!(
        serve.printed.contains("payorch.db.secrets-key"),
        "it says so: {}",
        serve.printed
    );
    assert!(!serve.printed.contains(first.trim()), "but not the key");
    let key: payorch::sealing::SealingKey = first.parse().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by its owner only: {mode:o}");
    }
    assert_eq!(serve.stop_keeping_dir(), Some(0));
    let again = EmbeddedServe::start_in(dir.clone(), &[]);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), first, "reused");
    assert_eq!(again.stop(), Some(0));
    assert_eq!(key.id().len(), 8);
}

/// Before any request, a fresh process already has every series whose
/// labels are a fixed set, at zero: counters and histograms alike.
#[test]
fn every_fixed_label_series_exists_at_zero_before_the_first_event() {
    let serve = EmbeddedServe::start(&[("PAYORCH_PROVIDERS", "paystack,flutterwave")]);
    let (status, text) = serve.get("/metrics");
    assert_eq!(status, 200);
    let zero = |series: &str| {
        assert!(
            text.lines().any(|line| line == format!("{series} 0")),
            "{series} 0 missing from a fresh /metrics"
        )
    };
    for result in ["applied", "duplicate", "ignored", "retried", "parked"] {
        zero(&format!(
            "payorch_webhooks_processed_total{{result=\"{result}\"}}"
        ));
    }
    zero("payorch_idempotency_total{result=\"replayed\"}");
    zero("payorch_webhook_processing_seconds_count");
    zero("payorch_event_attempt_seconds_count");
    zero(
        "payorch_http_request_duration_seconds_count\
         {route=\"/v1/payments/initialize\",method=\"POST\",status=\"201\"}",
    );
    zero(
        "payorch_http_requests_total\
         {route=\"/v1/payments/{reference}/verify\",method=\"POST\",status=\"502\"}",
    );
    for connector in ["paystack", "flutterwave"] {
        zero(&format!(
            "payorch_provider_request_duration_seconds_count\
             {{connector=\"{connector}\",operation=\"verify\",outcome=\"timeout\"}}"
        ));
    }
    assert_eq!(serve.stop(), Some(0));
}

/// `payorch serve` in an empty directory of its own, on a free port, up
/// once it has printed its dev key.
struct EmbeddedServe {
    child: std::process::Child,
    dir: std::path::PathBuf,
    addr: String,
    printed: String,
}

impl EmbeddedServe {
    /// With `env` on top of nothing configured.
    fn start(env: &[(&str, &str)]) -> EmbeddedServe {
        EmbeddedServe::start_in(tempdir(), env)
    }

    /// In `dir` (which [`EmbeddedServe::stop`] removes).
    fn start_in(dir: std::path::PathBuf, env: &[(&str, &str)]) -> EmbeddedServe {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = payorch()
            .arg("serve")
            .current_dir(&dir)
            // The contract default is 127.0.0.1:8080; tests must not collide on it.
            .env("PAYORCH_HTTP_ADDR", &addr)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut printed = String::new();
        while !printed.contains("dev API key") && !printed.contains("API clients exist") {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "exited: {printed}"
            );
            printed.push_str(&line);
        }
        EmbeddedServe {
            child,
            dir,
            addr,
            printed,
        }
    }

    /// `GET path`: its status and body.
    fn get(&self, path: &str) -> (reqwest::StatusCode, String) {
        payorch::install_crypto_provider();
        let url = format!("http://{}{path}", self.addr);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let response = reqwest::get(url).await.unwrap();
            let status = response.status();
            (status, response.text().await.unwrap())
        })
    }

    /// SIGTERM, then its exit code (`None` if it did not exit in 20 s).
    fn stop(self) -> Option<i32> {
        let dir = self.dir.clone();
        let exit = self.stop_keeping_dir();
        let _ = std::fs::remove_dir_all(&dir);
        exit
    }

    fn stop_keeping_dir(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let exit = wait_with_timeout(&mut self.child, Duration::from_secs(20));
        exit.and_then(|s| s.code())
    }
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(crate::helpers::random_name("payorch_cli"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_with_timeout(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
