//! The `payorch` binary: parses the command line and calls the library.

use std::{process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use payorch::{
    Config,
    domain::ReviewAction,
    operators::{Actor, OperatorName},
    store, telemetry,
    views::ReviewView,
};

#[derive(Parser)]
#[command(name = "payorch", version, about = "Payment orchestrator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API (embedded defaults when nothing is configured).
    Serve,
    /// Apply database migrations.
    Migrate,
    /// Run the built-in sandbox provider on PAYORCH_SANDBOX_ADDR.
    Sandbox,
    /// Run one webhook worker (needs AMQP_URL); it also sweeps stale
    /// payments and refunds and purges old data.
    Worker,
    /// One reconciliation pass (payments and refunds pending too long) and
    /// one retention purge, then exit (for cron). Prints what changed.
    /// With --settlement: one settlement pass over each connector's
    /// transaction listing instead, with a summary per connector.
    Reconcile {
        /// Match the connectors' transaction listings against payorch's
        /// payments; every difference that cannot be settled from the
        /// provider's word opens a review.
        #[arg(long)]
        settlement: bool,
        /// Start of the settlement window (RFC 3339; default: 24 h before --until).
        #[arg(long, requires = "settlement")]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// End of the settlement window, not included (RFC 3339; default: now).
        #[arg(long, requires = "settlement")]
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Inspect and replay dead-lettered webhooks (RabbitMQ's, or the queue
    /// table's without AMQP_URL).
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Print your merchant events as they happen: registers a temporary
    /// webhook endpoint on this machine, verifies each event's signature,
    /// and removes the endpoint on exit (Ctrl-C).
    Listen {
        /// Your API key.
        #[arg(long, env = "PAYORCH_API_KEY", hide_env_values = true)]
        key: String,
        /// The payorch API to register with.
        #[arg(long, env = "PAYORCH_API_URL", default_value = "http://127.0.0.1:8080")]
        api: String,
        /// The local port to receive events on (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Manage API clients.
    Apikey {
        #[command(subcommand)]
        action: ApikeyAction,
    },
    /// Cases payorch could not settle by itself: list and resolve them.
    Reviews {
        #[command(subcommand)]
        action: ReviewsAction,
    },
    /// The people who resolve reviews: create and disable them, and issue
    /// their bearer tokens for the operator API (/v1/operator/…).
    Operator {
        #[command(subcommand)]
        action: OperatorAction,
    },
    /// The key that seals webhook endpoint secrets at rest.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
}

#[derive(Subcommand)]
enum SecretsAction {
    /// Seal every endpoint secret again under PAYORCH_SECRETS_KEY, opening
    /// those sealed under PAYORCH_SECRETS_KEY_PREVIOUS (the key being
    /// retired); afterwards the previous key can be dropped. Exit 1 if a
    /// secret neither key opens was left behind.
    Rotate,
}

#[derive(Subcommand)]
enum OperatorAction {
    /// Create an operator; prints a generated password alone on the last
    /// line, once (only its argon2id hash is stored).
    Create {
        /// 1 to 64 letters, digits and . _ - @
        #[arg(long, value_parser = OperatorName::parse)]
        name: OperatorName,
    },
    /// Disable an operator: its tokens stop working at once.
    Disable { name: String },
    /// Issue a bearer token for the operator API; prints it alone on the
    /// last line, once (only its SHA-256 is stored).
    Token { name: String },
}

#[derive(Subcommand)]
enum ReviewsAction {
    /// List reviews, oldest first.
    List {
        /// Only those still open.
        #[arg(long)]
        open: bool,
        /// One JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Resolve an open review; the decision is recorded (who, when, action,
    /// note) and a resolved review is never resolved again.
    Resolve {
        id: uuid::Uuid,
        /// mark_succeeded, mark_failed (a refund's outcome), refund_at_connector
        /// (give back money a connector took, exactly once) or dismiss (close
        /// it without touching money).
        #[arg(long, value_parser = parse_action)]
        action: ReviewAction,
        #[arg(long)]
        note: Option<String>,
    },
}

fn parse_action(action: &str) -> Result<ReviewAction, String> {
    ReviewAction::parse(action)
        .filter(|a| ReviewAction::OPERATOR.contains(a))
        .ok_or_else(|| {
            let names: Vec<_> = ReviewAction::OPERATOR.map(ReviewAction::as_str).into();
            format!("one of {}", names.join(", "))
        })
}

#[derive(Subcommand)]
enum DlqAction {
    /// Show parked messages with their reason and attempts.
    List {
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put parked messages back on the main queue.
    Replay {
        /// Replay every parked message.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// The event identity (message id) of the one to replay.
        #[arg(required_unless_present = "all")]
        id: Option<String>,
    },
}

#[derive(Subcommand)]
enum ApikeyAction {
    /// Create an API client; prints its secret key alone on the last line.
    Create {
        /// A name to recognise the client by.
        #[arg(long)]
        name: String,
    },
    /// List API clients, newest first.
    List,
    /// Revoke an API client: its keys are refused on every instance within
    /// PAYORCH_AUTH_CACHE_MS.
    Revoke {
        /// The client's id.
        id: uuid::Uuid,
        /// Why, for the audit log.
        #[arg(long)]
        note: Option<String>,
    },
    /// Give an API client a new key (printed alone on the last line); the
    /// current key keeps working for the grace period.
    Rotate {
        /// The client's id.
        id: uuid::Uuid,
        /// How long the current key keeps working, in seconds (at most 7 days).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=604_800))]
        grace_seconds: u32,
        /// Why, for the audit log.
        #[arg(long)]
        note: Option<String>,
    },
}

/// The settlement window `--since`/`--until` name: by default the 24 hours
/// before now.
fn settlement_window(
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
    let until = until.unwrap_or_else(chrono::Utc::now);
    (since.unwrap_or(until - chrono::Duration::days(1)), until)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Reconcile { since, until, .. } = &cli.command {
        let (since, until) = settlement_window(*since, *until);
        if since >= until {
            eprintln!("payorch: --since must be before --until");
            return ExitCode::from(2);
        }
    }
    // Resolving a review may send a refund (`refund_at_connector`).
    let calls_a_provider = matches!(
        cli.command,
        Command::Serve
            | Command::Sandbox
            | Command::Worker
            | Command::Reconcile { .. }
            | Command::Reviews {
                action: ReviewsAction::Resolve { .. }
            }
    );
    // These open or seal webhook endpoint secrets.
    let needs_secrets_key = matches!(
        cli.command,
        Command::Serve | Command::Worker | Command::Secrets { .. }
    );
    let cfg = Config::from_env().and_then(|cfg| {
        if calls_a_provider {
            cfg.check_provider_named()?;
        }
        if needs_secrets_key {
            cfg.check_secrets_key()?;
        }
        Ok(cfg)
    });
    let cfg = match cfg {
        Ok(cfg) => Arc::new(cfg),
        Err(err) => {
            eprintln!("payorch: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(cfg.log_format);
    payorch::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("payorch: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("payorch: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, cfg: Arc<Config>) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Serve => {
            let shutdown = shutdown_signal();
            let listener = tokio::net::TcpListener::bind(cfg.http_addr)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", cfg.http_addr))?;
            payorch::serve(cfg, listener, shutdown).await?;
        }
        Command::Sandbox => {
            let shutdown = shutdown_signal();
            let listener = tokio::net::TcpListener::bind(cfg.sandbox_addr)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", cfg.sandbox_addr))?;
            payorch::serve_sandbox(cfg, listener, shutdown).await?;
        }
        Command::Worker => payorch::run_worker(cfg, shutdown_signal()).await?,
        Command::Reconcile {
            settlement: true,
            since,
            until,
        } => {
            let (since, until) = settlement_window(since, until);
            let report = payorch::settle_once(cfg, since, until).await?;
            println!(
                "settlement {} .. {}",
                since.to_rfc3339(),
                until.to_rfc3339()
            );
            println!("connector\tlisted\tcalls\tmatched\tsettled\treviews\terrors");
            for c in &report.connectors {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    c.connector,
                    c.listed,
                    c.provider_calls,
                    c.matched,
                    c.settled,
                    c.reviews_opened,
                    c.errors
                );
            }
            for (connector, error) in &report.failed {
                println!("{connector}\tlisting failed: {error}");
            }
        }
        Command::Reconcile { .. } => {
            let report = payorch::reconcile_once(cfg).await?;
            for (what, from, to) in &report.changed {
                println!("{what}\t{from} -> {to}");
            }
            println!(
                "{} checked, {} changed, {} failed",
                report.checked,
                report.changed.len(),
                report.errors
            );
        }
        Command::Dlq { action } => {
            // RabbitMQ's parking queue, or the queue table without AMQP_URL.
            let db = store::connect(&cfg).await?;
            let queue = payorch::webhook_queue(&cfg, &db);
            match action {
                DlqAction::List { limit } => {
                    let parked = queue.dead_letters(limit).await?;
                    for envelope in &parked {
                        let message = &envelope.message;
                        println!(
                            "{}\tprovider={}\tattempts={}\treceived={}\treason={}",
                            message.dedup_key(),
                            message.provider(),
                            envelope.attempt + 1,
                            message.received_at(),
                            envelope.reason.as_deref().unwrap_or("-"),
                        );
                    }
                    println!("{} parked message(s)", parked.len());
                }
                DlqAction::Replay { id, .. } => {
                    // The operator core: audited as the console's replay is.
                    let moved = payorch::operators::Operators::new(db.clone())
                        .replay_dead_letters(
                            &queue,
                            payorch::queue::WEBHOOKS,
                            id.as_deref(),
                            &payorch::operators::Actor::cli_user(),
                        )
                        .await?;
                    println!("{moved} message(s) replayed");
                }
            }
        }
        Command::Listen { key, api, port } => {
            payorch::listen::listen(&api, &key, port, shutdown_signal(), |line| {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            })
            .await?;
        }
        Command::Reviews {
            action: ReviewsAction::List { open, json },
        } => {
            let reviews = payorch::list_reviews(cfg, open).await?;
            if json {
                let all: Vec<_> = reviews.into_iter().map(ReviewView::new).collect();
                println!("{}", serde_json::to_string(&all)?);
            } else {
                for review in &reviews {
                    println!(
                        "{}\t{}\t{}\tpayment={}\trefund={}\topened={}\t{}",
                        review.id,
                        review.kind,
                        review.status,
                        review.payment_id,
                        review.refund_id.map_or("-".to_owned(), |id| id.to_string()),
                        review.opened_at.to_rfc3339(),
                        match (&review.resolution, &review.resolved_by) {
                            (Some(action), Some(by)) => format!("{action} by {by}"),
                            _ => "-".to_owned(),
                        },
                    );
                }
                println!("{} review(s)", reviews.len());
            }
        }
        Command::Reviews {
            action: ReviewsAction::Resolve { id, action, note },
        } => {
            let review = payorch::resolve_review(cfg, id, action, &Actor::cli_user(), note).await?;
            println!(
                "review {} resolved: {} by {} at {}",
                review.id,
                review.resolution.as_deref().unwrap_or("-"),
                review.resolved_by.as_deref().unwrap_or("-"),
                review
                    .resolved_at
                    .map(|at| at.to_rfc3339())
                    .unwrap_or_default(),
            );
        }
        Command::Operator { action } => {
            let operators = payorch::operator_core(&cfg).await?;
            let by = Actor::cli_user();
            match action {
                OperatorAction::Create { name } => {
                    let (operator, password) = operators.create(&name, &by).await?;
                    println!("created operator {} ({})", operator.name, operator.id);
                    println!("password (shown once; only its argon2id hash is stored):");
                    println!("{password}");
                }
                OperatorAction::Disable { name } => {
                    if operators.disable(&name, &by).await? {
                        println!("operator {name} disabled; its tokens no longer work");
                    } else {
                        println!("operator {name} was disabled already");
                    }
                }
                OperatorAction::Token { name } => {
                    let (operator, token) = operators.issue_token(&name, &by).await?;
                    println!(
                        "bearer token for operator {} (shown once; only its SHA-256 is stored):",
                        operator.name
                    );
                    println!("{token}");
                }
            }
        }
        Command::Secrets {
            action: SecretsAction::Rotate,
        } => {
            let report = payorch::rotate_secrets(&cfg).await?;
            println!(
                "{} endpoint(s) checked, {} sealed again under key {}, {} unreadable",
                report.checked,
                report.resealed,
                cfg.secrets_key
                    .as_ref()
                    .map_or("(embedded key file)", |key| key.id()),
                report.unreadable
            );
            if report.unreadable > 0 {
                return Err(
                    "some endpoint secrets open with neither PAYORCH_SECRETS_KEY nor \
                     PAYORCH_SECRETS_KEY_PREVIOUS; they were left as they are"
                        .into(),
                );
            }
        }
        Command::Migrate => {
            let db = store::connect(&cfg).await?;
            store::migrate(&db, &cfg.database_url).await?;
            println!("migrations applied to {}", cfg.database_url.location());
        }
        Command::Apikey { action } => {
            let operators = payorch::operator_core(&cfg).await?;
            let by = Actor::cli_user();
            match action {
                ApikeyAction::Create { name } => {
                    let (client, key) = operators.create_client(&name, &by).await?;
                    println!("created API client {} ({})", client.name, client.id);
                    println!("{key}");
                }
                ApikeyAction::List => {
                    for client in operators.clients().await? {
                        let state = match (client.disabled_at, client.previous_key_expires_at) {
                            (Some(at), _) => format!("revoked {}", at.to_rfc3339()),
                            (None, Some(until)) if until > chrono::Utc::now() => {
                                format!("active, previous key until {}", until.to_rfc3339())
                            }
                            (None, _) => "active".to_owned(),
                        };
                        println!(
                            "{}  {}  {}  {state}",
                            client.id,
                            client.created_at.to_rfc3339(),
                            client.name
                        );
                    }
                }
                ApikeyAction::Revoke { id, note } => {
                    let client = operators.revoke_client(id, note.as_deref(), &by).await?;
                    println!("API client {} ({}) revoked", client.name, client.id);
                }
                ApikeyAction::Rotate {
                    id,
                    grace_seconds,
                    note,
                } => {
                    let grace = chrono::Duration::seconds(i64::from(grace_seconds));
                    let (client, key) = operators
                        .rotate_client_key(id, grace, note.as_deref(), &by)
                        .await?;
                    let until = client
                        .previous_key_expires_at
                        .map_or_else(|| "now".to_owned(), |t| t.to_rfc3339());
                    println!(
                        "API client {} ({}): new key; the previous one works until {until}",
                        client.name, client.id
                    );
                    println!("{key}");
                }
            }
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: a signal that arrives while
/// the process is still starting (its listener already open) is then a
/// graceful shutdown, never the default action that kills it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind| signal(kind).expect("installing a signal handler");
        (
            install(SignalKind::interrupt()),
            install(SignalKind::terminate()),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let (mut interrupt, mut terminate) = signals;
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested; finishing in-flight requests");
    }
}
