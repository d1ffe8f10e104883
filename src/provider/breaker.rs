//! A circuit breaker per connector, on the `failsafe` crate's state
//! machine: closed → open after `PAYORCH_BREAKER_FAILURES` consecutive
//! failures (connection refused, timeout, 5xx, 429) → after
//! `PAYORCH_BREAKER_OPEN_MS`, half-open: one probe call goes through
//! (failsafe itself would let every call through; the probe gate here lets
//! one) — its success closes the breaker, its failure opens it again.
//!
//! The state is the gauge `payorch_connector_breaker_state{connector}`
//! (0 closed, 1 half-open, 2 open), registered on startup, and is shown by
//! `/readyz`.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use failsafe::{
    Instrument, StateMachine,
    backoff::{self, Constant},
    failure_policy::{self, ConsecutiveFailures},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }

    fn from_u8(value: u8) -> BreakerState {
        match value {
            0 => BreakerState::Closed,
            1 => BreakerState::HalfOpen,
            _ => BreakerState::Open,
        }
    }
}

/// How a breaker trips and recovers.
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive failures that open it.
    pub failures: u32,
    /// How long it stays open before a probe.
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    /// `PAYORCH_BREAKER_FAILURES` and `PAYORCH_BREAKER_OPEN_MS` unset.
    fn default() -> Self {
        BreakerSettings {
            failures: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

/// Follows failsafe's transitions into a gauge and this breaker's state.
#[derive(Clone)]
struct Watch {
    connector: &'static str,
    state: Arc<AtomicU8>,
    /// When it last opened.
    opened_at: Arc<Mutex<Instant>>,
}

impl Watch {
    fn set(&self, state: BreakerState) {
        if state == BreakerState::Open {
            *self.opened_at.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
        self.state.store(state as u8, Ordering::Release);
        let gauge = match state {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        };
        metrics::gauge!("payorch_connector_breaker_state", "connector" => self.connector)
            .set(gauge);
        match state {
            BreakerState::Closed => {
                tracing::info!(connector = self.connector, "circuit breaker closed")
            }
            _ => tracing::warn!(
                connector = self.connector,
                state = state.as_str(),
                "circuit breaker"
            ),
        }
    }
}

impl Instrument for Watch {
    fn on_call_rejected(&self) {
        metrics::counter!("payorch_connector_calls_rejected_total", "connector" => self.connector)
            .increment(1);
    }

    fn on_open(&self) {
        self.set(BreakerState::Open);
    }

    fn on_half_open(&self) {
        self.set(BreakerState::HalfOpen);
    }

    fn on_closed(&self) {
        self.set(BreakerState::Closed);
    }
}

pub struct Breaker {
    connector: &'static str,
    machine: StateMachine<ConsecutiveFailures<Constant>, Watch>,
    state: Arc<AtomicU8>,
    opened_at: Arc<Mutex<Instant>>,
    open_for: Duration,
    /// A half-open probe is in flight: other calls wait for its verdict.
    probing: AtomicBool,
}

impl Breaker {
    pub fn new(connector: &'static str, settings: BreakerSettings) -> Breaker {
        let state = Arc::new(AtomicU8::new(BreakerState::Closed as u8));
        metrics::counter!("payorch_connector_calls_rejected_total", "connector" => connector)
            .increment(0);
        let policy = failure_policy::consecutive_failures(
            settings.failures.max(1),
            backoff::constant(settings.open_for),
        );
        let opened_at = Arc::new(Mutex::new(Instant::now()));
        let watch = Watch {
            connector,
            state: state.clone(),
            opened_at: opened_at.clone(),
        };
        Breaker {
            connector,
            machine: StateMachine::new(policy, watch),
            state,
            opened_at,
            open_for: settings.open_for,
            probing: AtomicBool::new(false),
        }
    }

    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Whether a call now would be refused: open and not yet due for its
    /// probe, or half-open with the probe out. Routing puts such a
    /// connector last, so no request waits on a connector known to be down.
    pub fn refuses(&self) -> bool {
        match self.state() {
            BreakerState::Closed => false,
            BreakerState::HalfOpen => self.probing.load(Ordering::Acquire),
            BreakerState::Open => {
                let opened_at = *self.opened_at.lock().unwrap_or_else(|p| p.into_inner());
                opened_at.elapsed() < self.open_for
            }
        }
    }

    /// Permission for one call, or `None` while the breaker is open (or
    /// half-open with its probe still out). The call's outcome goes back
    /// through [`Permit::record`].
    pub fn permit(&self) -> Option<Permit<'_>> {
        if !self.machine.is_call_permitted() {
            return None;
        }
        let probe = self.state() == BreakerState::HalfOpen;
        if probe
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            metrics::counter!("payorch_connector_calls_rejected_total", "connector" => self.connector)
                .increment(1);
            return None;
        }
        Some(Permit {
            breaker: self,
            probe,
        })
    }
}

/// One permitted call. Dropped unrecorded (the caller was cancelled), it
/// counts for nothing and frees the probe.
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
}

impl Permit<'_> {
    /// `healthy`: the connector answered (even with a refusal); `false`:
    /// it could not be reached, timed out, or failed (5xx, 429).
    pub fn record(self, healthy: bool) {
        if healthy {
            self.breaker.machine.on_success();
        } else {
            self.breaker.machine.on_error();
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.breaker.probing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> Breaker {
        Breaker::new(
            "test",
            BreakerSettings {
                failures: 3,
                open_for,
            },
        )
    }

    #[test]
    fn consecutive_failures_open_it_and_a_success_in_between_does_not() {
        let b = breaker(Duration::from_secs(60));
        for healthy in [false, false, true, false, false] {
            b.permit().unwrap().record(healthy);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.permit().unwrap().record(false);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.refuses());
        assert!(b.permit().is_none(), "an open breaker refuses at once");
    }

    #[test]
    fn after_the_pause_one_probe_goes_through_and_its_success_closes_it() {
        let b = breaker(Duration::from_millis(20));
        for _ in 0..3 {
            b.permit().unwrap().record(false);
        }
        assert!(b.permit().is_none());
        std::thread::sleep(Duration::from_millis(40));
        assert!(!b.refuses(), "due for a probe");
        let probe = b.permit().expect("the pause is over: a probe");
        assert!(b.refuses(), "the probe is out");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.permit().is_none(), "one probe at a time");
        probe.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.permit().is_some());
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let b = breaker(Duration::from_millis(20));
        for _ in 0..3 {
            b.permit().unwrap().record(false);
        }
        std::thread::sleep(Duration::from_millis(40));
        b.permit().unwrap().record(false);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.permit().is_none());
    }

    #[test]
    fn a_cancelled_probe_frees_the_gate() {
        let b = breaker(Duration::from_millis(20));
        for _ in 0..3 {
            b.permit().unwrap().record(false);
        }
        std::thread::sleep(Duration::from_millis(40));
        drop(b.permit().unwrap());
        assert!(b.permit().is_some(), "another caller may probe");
    }
}
