//! The fault schedule: drawn up front from the seed (the same seed gives
//! the same schedule; only its timing on a shared machine varies), printed,
//! then played against the cluster while the workload runs.

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde_json::json;

use crate::{
    processes::{Cluster, Role, SANDBOX_KEY},
    receiver::Receiver,
    relay::{Relay, RelayMode},
};

#[derive(Debug, Clone)]
pub enum Fault {
    /// `kill -9` of a payorch process, restarted after `pause_ms`.
    Kill {
        role: Role,
        index: usize,
        pause_ms: u64,
    },
    /// `/_control/faults` at one dialect: the next `count` calls of
    /// `operation` fail in `mode`.
    Provider {
        provider: &'static str,
        operation: &'static str,
        mode: &'static str,
        count: u32,
    },
    /// Every webhook sent twice, for a while.
    DuplicateWebhooks { for_ms: u64 },
    /// Webhooks held up to `max_ms` each (so they arrive out of order).
    DelayWebhooks { for_ms: u64, max_ms: u64 },
    /// The `flaky` merchant endpoint answers 500 for a while.
    EndpointDown { for_ms: u64 },
    /// RabbitMQ's broker or Redis stopped, started again after `pause_ms`
    /// (only with `CHAOS_SERVICES=restart`: it fails whatever else uses
    /// this machine's services meanwhile).
    Restart { service: Service, pause_ms: u64 },
}

/// A service the cluster shares with the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    RabbitMq,
    Redis,
}

impl Service {
    /// The shell commands that stop and start it.
    fn commands(self) -> (&'static str, &'static str) {
        match self {
            Service::RabbitMq => ("rabbitmqctl -q stop_app", "rabbitmqctl -q start_app"),
            Service::Redis => (
                "redis-cli -h 127.0.0.1 -p 6379 shutdown nosave",
                "mkdir -p /var/lib/redis /var/log/redis && redis-server --daemonize yes \
                 --bind 127.0.0.1 -::1 --port 6379 --save '' --appendonly no \
                 --dir /var/lib/redis --logfile /var/log/redis/ci.log",
            ),
        }
    }
}

impl Fault {
    /// The name the report counts it under.
    pub fn kind(&self) -> String {
        match self {
            Fault::Kill { role, .. } => format!("kill -9 {role:?}").to_lowercase(),
            Fault::Provider {
                operation, mode, ..
            } => format!("provider {operation} {mode}"),
            Fault::DuplicateWebhooks { .. } => "webhooks duplicated".into(),
            Fault::DelayWebhooks { .. } => "webhooks delayed/reordered".into(),
            Fault::EndpointDown { .. } => "merchant endpoint down".into(),
            Fault::Restart { service, .. } => format!("restart {service:?}").to_lowercase(),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill {
                role,
                index,
                pause_ms,
            } => write!(f, "kill -9 {role:?}{index}, restart after {pause_ms} ms"),
            Fault::Provider {
                provider,
                operation,
                mode,
                count,
            } => write!(f, "{provider}: next {count} {operation} {mode}"),
            Fault::DuplicateWebhooks { for_ms } => write!(f, "duplicate webhooks for {for_ms} ms"),
            Fault::DelayWebhooks { for_ms, max_ms } => {
                write!(f, "delay webhooks up to {max_ms} ms for {for_ms} ms")
            }
            Fault::EndpointDown { for_ms } => {
                write!(f, "flaky endpoint answers 500 for {for_ms} ms")
            }
            Fault::Restart { service, pause_ms } => {
                write!(f, "stop {service:?}, start it after {pause_ms} ms")
            }
        }
    }
}

/// The provider faults the schedule draws from: (operation, mode).
const PROVIDER_FAULTS: &[(&str, &str)] = &[
    ("initialize", "error"),
    ("initialize", "hang"),
    ("initialize", "error_after"),
    ("verify", "error"),
    ("verify", "hang"),
    ("refund", "error"),
    ("refund", "hang"),
    ("refund", "error_after"),
    ("refund_lookup", "not_found"),
    ("refund_lookup", "error"),
];

pub struct Schedule {
    pub faults: Vec<(Duration, Fault)>,
}

impl Schedule {
    /// About one fault every three seconds over `seconds`, none in the
    /// first two nor the last five; with `services`, also a restart of
    /// RabbitMQ or Redis about every two minutes (drawn apart, so a seed's
    /// other faults are the same with or without them).
    pub fn draw(seed: u64, seconds: u64, services: bool) -> Schedule {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_fa17);
        let span_ms = seconds.saturating_sub(7).max(1) * 1000;
        let n = (seconds / 3).max(4);
        let mut faults: Vec<(Duration, Fault)> = (0..n)
            .map(|_| {
                let at = Duration::from_millis(2000 + rng.random_range(0..span_ms));
                (at, draw_one(&mut rng))
            })
            .collect();
        if services {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x5e41_1ce5);
            let span_ms = seconds.saturating_sub(40).max(1) * 1000;
            for _ in 0..(seconds / 120).max(1) {
                let at = Duration::from_millis(10_000 + rng.random_range(0..span_ms));
                let service = if rng.random_bool(0.5) {
                    Service::RabbitMq
                } else {
                    Service::Redis
                };
                let pause_ms = rng.random_range(500..5000);
                faults.push((at, Fault::Restart { service, pause_ms }));
            }
        }
        faults.sort_by_key(|(at, _)| *at);
        Schedule { faults }
    }

    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (_, fault) in &self.faults {
            *counts.entry(fault.kind()).or_default() += 1;
        }
        counts
    }

    /// Whether the schedule injected a fault of `operation` in one of `modes`.
    pub fn injected(&self, operation: &str, modes: &[&str]) -> bool {
        self.faults.iter().any(|(_, fault)| {
            matches!(fault, Fault::Provider { operation: o, mode, .. }
                if *o == operation && modes.contains(mode))
        })
    }

    pub fn print(&self) {
        println!("fault schedule ({} faults):", self.faults.len());
        for (at, fault) in &self.faults {
            println!("  {:>7.1} s  {fault}", at.as_secs_f64());
        }
    }
}

fn draw_one(rng: &mut StdRng) -> Fault {
    match rng.random_range(0..10) {
        0..=2 => Fault::Kill {
            role: if rng.random_bool(0.5) {
                Role::Serve
            } else {
                Role::Worker
            },
            index: rng.random_range(0..2),
            pause_ms: rng.random_range(200..4000),
        },
        3..=6 => {
            let (operation, mode) = *PROVIDER_FAULTS.choose(rng).unwrap();
            Fault::Provider {
                provider: ["paystack", "flutterwave"].choose(rng).unwrap(),
                operation,
                mode,
                count: rng.random_range(1..4),
            }
        }
        7 => Fault::DuplicateWebhooks {
            for_ms: rng.random_range(1000..6000),
        },
        8 => Fault::DelayWebhooks {
            for_ms: rng.random_range(1000..6000),
            max_ms: rng.random_range(100..2000),
        },
        _ => Fault::EndpointDown {
            for_ms: rng.random_range(1000..8000),
        },
    }
}

/// What the faults act on.
#[derive(Clone)]
pub struct Targets {
    pub cluster: Arc<Cluster>,
    pub relay: Relay,
    pub receiver: Receiver,
    pub http: reqwest::Client,
    /// Whether RabbitMQ and Redis may be restarted.
    pub services: bool,
}

impl Targets {
    /// Plays `schedule` from now; returns when its last fault was applied
    /// (a kill's restart and a window's end may come later, in their own
    /// tasks).
    pub async fn play(&self, schedule: &Schedule) {
        let start = tokio::time::Instant::now();
        for (at, fault) in &schedule.faults {
            tokio::time::sleep_until(start + *at).await;
            println!("  [{:>6.1} s] {fault}", start.elapsed().as_secs_f64());
            self.apply(fault.clone()).await;
        }
    }

    async fn apply(&self, fault: Fault) {
        match fault {
            Fault::Kill {
                role,
                index,
                pause_ms,
            } => {
                self.cluster.kill_one(role, index);
                let cluster = self.cluster.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                    cluster.restart_one(role, index);
                });
            }
            Fault::Provider {
                provider,
                operation,
                mode,
                count,
            } => {
                self.set_provider_fault(provider, operation, mode, count)
                    .await;
            }
            Fault::DuplicateWebhooks { for_ms } => self.relay_window(
                RelayMode {
                    duplicate: true,
                    max_delay_ms: 0,
                },
                for_ms,
            ),
            Fault::DelayWebhooks { for_ms, max_ms } => self.relay_window(
                RelayMode {
                    duplicate: false,
                    max_delay_ms: max_ms,
                },
                for_ms,
            ),
            Fault::Restart { service, pause_ms } => {
                let (stop, start) = service.commands();
                shell(stop).await;
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                    shell(start).await;
                });
            }
            Fault::EndpointDown { for_ms } => {
                self.receiver.set_flaky_down(true);
                let receiver = self.receiver.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(for_ms)).await;
                    receiver.set_flaky_down(false);
                });
            }
        }
    }

    fn relay_window(&self, mode: RelayMode, for_ms: u64) {
        self.relay.set_mode(mode);
        let relay = self.relay.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(for_ms)).await;
            relay.set_mode(RelayMode::default());
        });
    }

    async fn set_provider_fault(&self, provider: &str, operation: &str, mode: &str, count: u32) {
        let sent = self
            .http
            .post(format!("{}/_control/faults", self.cluster.sandbox_url))
            .bearer_auth(SANDBOX_KEY)
            .json(
                &json!({"operation": operation, "mode": mode, "count": count,
                          "provider": provider}),
            )
            .send()
            .await
            .expect("the sandbox takes control calls");
        assert!(
            sent.status().is_success(),
            "fault {operation} {mode}: {}",
            sent.status()
        );
    }

    /// Ends every fault: the services up, provider faults cleared in both
    /// dialects, the relay plain, the flaky endpoint up, every process
    /// running.
    pub async fn clear(&self) {
        if self.services {
            shell("rabbitmqctl -q start_app").await;
            shell("bash scripts/services.sh >/dev/null").await;
        }
        for provider in ["paystack", "flutterwave"] {
            for (operation, mode) in PROVIDER_FAULTS {
                self.set_provider_fault(provider, operation, mode, 0).await;
            }
        }
        self.relay.set_mode(RelayMode::default());
        self.receiver.set_flaky_down(false);
        self.cluster.restart_stopped();
        self.cluster.wait_up().await;
    }
}

/// Runs `command` in a shell; a failure is printed, not fatal (the service
/// may be down or up already).
async fn shell(command: &'static str) {
    let ran = tokio::process::Command::new("sh")
        .args(["-c", command])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await;
    match ran {
        Ok(out) if out.status.success() => {}
        Ok(out) => println!(
            "  `{command}` exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(err) => println!("  `{command}` did not run: {err}"),
    }
}
