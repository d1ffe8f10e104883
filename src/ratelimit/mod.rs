//! Per-client rate limiting.
//!
//! - [`policy`]: which routes are limited, and how many requests a window allows.
//! - [`redis`]: the shared limiter — a sliding-window log in one Lua script,
//!   so each check is one atomic Redis call that also sets the key's TTL.
//! - [`local`]: the in-process limiter (`governor`), used when no Redis is
//!   configured and while Redis is failing.
//!
//! [`RateLimiter`] is the one facade: it asks Redis within a timeout and, on
//! an error or a timeout, decides locally and opens a breaker, so later
//! requests skip Redis until a probe finds it back. The API never fails
//! because Redis did.

pub mod local;
pub mod policy;
pub mod redis;

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

pub use policy::{RateLimitPolicy, RateLimits, Route};

/// How long the breaker stays open before one request probes Redis again.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The outcome of one check, with what the response headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub route: Route,
    pub policy: RateLimitPolicy,
    /// Requests still allowed in the current window, after this one.
    pub remaining: u32,
    /// Until the whole quota is available again.
    pub reset: Duration,
    /// Until the next request would be allowed (zero when it would be now).
    pub retry_after: Duration,
    pub backend: Backend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redis,
    Local,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Redis => "redis",
            Backend::Local => "local",
        }
    }
}

/// Who is being limited: an API client, or an IP without a valid key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Client(uuid::Uuid),
    /// A caller without a valid key, by its network ([`network_of`]).
    Ip(std::net::IpAddr),
}

/// The network an address is limited as: an IPv4 address alone (also when
/// written as IPv4-mapped IPv6), an IPv6 address by its /64 — one host
/// usually holds a whole /64, so limiting per /128 would let it rotate
/// through 2^64 identities.
pub fn network_of(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv6Addr};
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

impl Identity {
    fn key(&self) -> String {
        match self {
            Identity::Client(id) => format!("c:{id}"),
            Identity::Ip(ip) => format!("ip:{ip}"),
        }
    }
}

pub struct RateLimiter {
    limits: RateLimits,
    shared: Option<redis::RedisLimiter>,
    local: local::LocalLimiter,
    breaker: Breaker,
}

impl RateLimiter {
    pub fn new(limits: RateLimits, shared: Option<redis::RedisLimiter>) -> RateLimiter {
        RateLimiter {
            local: local::LocalLimiter::new(&limits),
            limits,
            shared,
            breaker: Breaker::default(),
        }
    }

    pub fn policy(&self, route: Route) -> Option<RateLimitPolicy> {
        self.limits.get(route)
    }

    /// Counts one request of `who` on `route`; `None` when the route is unlimited.
    pub async fn check(&self, route: Route, who: &Identity) -> Option<Decision> {
        let policy = self.limits.get(route)?;
        let key = who.key();
        let decision = match &self.shared {
            Some(shared) if self.breaker.should_try() => {
                match shared.check(route, policy, &key).await {
                    Ok(decision) => {
                        self.breaker.succeeded();
                        decision
                    }
                    Err(err) => {
                        self.breaker.failed(&err);
                        self.local.check(route, policy, &key)
                    }
                }
            }
            Some(_) => {
                metrics::counter!("payorch_ratelimit_fallback_total").increment(1);
                self.local.check(route, policy, &key)
            }
            None => self.local.check(route, policy, &key),
        };
        metrics::counter!(
            "payorch_ratelimit_decisions_total",
            "route" => route.as_str(),
            "decision" => if decision.allowed { "allowed" } else { "limited" },
            "backend" => decision.backend.as_str(),
        )
        .increment(1);
        Some(decision)
    }
}

/// Closed: use Redis. Open: decide locally until `until`, then let one
/// request probe. A probe that never reports back (its request was
/// dropped mid-call) expires after `interval` and another request probes:
/// the breaker cannot stay open for good. Transitions are logged once
/// each, not per request.
struct Breaker {
    state: Mutex<BreakerState>,
    interval: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::with_interval(PROBE_INTERVAL)
    }
}

#[derive(Default)]
enum BreakerState {
    #[default]
    Closed,
    Open {
        until: Instant,
    },
    /// One request is asking Redis; another may ask after `until`.
    Probing {
        until: Instant,
    },
}

impl Breaker {
    fn with_interval(interval: Duration) -> Breaker {
        Breaker {
            state: Mutex::default(),
            interval,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn should_try(&self) -> bool {
        let mut state = self.lock();
        match *state {
            BreakerState::Closed => true,
            BreakerState::Open { until } | BreakerState::Probing { until }
                if Instant::now() >= until =>
            {
                *state = BreakerState::Probing {
                    until: Instant::now() + self.interval,
                };
                true
            }
            _ => false,
        }
    }

    fn succeeded(&self) {
        let mut state = self.lock();
        if !matches!(*state, BreakerState::Closed) {
            tracing::info!("rate limiter: Redis answers again; shared limits resume");
            metrics::counter!("payorch_ratelimit_backend_switches_total", "to" => "redis")
                .increment(1);
        }
        *state = BreakerState::Closed;
    }

    fn failed(&self, err: &redis::LimiterError) {
        let mut state = self.lock();
        if matches!(*state, BreakerState::Closed) {
            tracing::warn!(error = %err, "rate limiter: Redis failed; deciding locally until it is back");
            metrics::counter!("payorch_ratelimit_backend_switches_total", "to" => "local")
                .increment(1);
        }
        *state = BreakerState::Open {
            until: Instant::now() + self.interval,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> redis::LimiterError {
        redis::LimiterError::Timeout(Duration::from_millis(50))
    }

    #[test]
    fn ipv6_callers_are_limited_per_64_and_ipv4_per_address() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(
            network_of(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            network_of(ip("2001:db8:1:2::1")),
            network_of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            "one /64, one budget"
        );
        assert_ne!(
            network_of(ip("2001:db8:1:2::1")),
            network_of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(network_of(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(network_of(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
    }

    #[test]
    fn a_failure_opens_the_breaker_until_the_interval_passes() {
        let breaker = Breaker::with_interval(Duration::from_millis(20));
        assert!(breaker.should_try());
        breaker.failed(&failure());
        assert!(!breaker.should_try(), "open: decide locally");
        std::thread::sleep(Duration::from_millis(25));
        assert!(breaker.should_try(), "one probe");
        assert!(!breaker.should_try(), "only one probe at a time");
        breaker.succeeded();
        assert!(breaker.should_try(), "closed again");
    }

    #[test]
    fn a_probe_that_never_reports_back_expires() {
        let breaker = Breaker::with_interval(Duration::from_millis(20));
        breaker.failed(&failure());
        std::thread::sleep(Duration::from_millis(25));
        // The probing request is dropped mid-call: neither succeeded() nor
        // failed() is ever called.
        assert!(breaker.should_try());
        assert!(!breaker.should_try());
        std::thread::sleep(Duration::from_millis(25));
        assert!(
            breaker.should_try(),
            "the stale probe expired; Redis is asked again"
        );
    }
}
