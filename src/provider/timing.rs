//! How long a request spent waiting on connectors, so a response can say
//! what payorch itself added (`Server-Timing: app;dur=…, provider;dur=…`).
//!
//! The HTTP layer opens a [`ProviderClock`] per request and runs the
//! request inside it; the clock travels with the request's messages to the
//! payment's actor, which runs its work inside it too; every connector call
//! ([`super::Guarded`]) adds its duration to the clock it runs in.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

tokio::task_local! {
    static CLOCK: ProviderClock;
}

/// Time spent in connector calls, shared by the tasks serving one request.
#[derive(Debug, Clone, Default)]
pub struct ProviderClock(Arc<AtomicU64>);

impl ProviderClock {
    /// The clock of the request this task serves, if any.
    pub fn current() -> Option<ProviderClock> {
        CLOCK.try_with(Clone::clone).ok()
    }

    /// Adds `spent` to the current request's clock (nothing outside one).
    pub fn add(spent: Duration) {
        let _ = CLOCK.try_with(|clock| {
            let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
            clock.0.fetch_add(nanos, Ordering::Relaxed);
        });
    }

    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    /// Runs `work` with `clock` as its request's clock (as it is without one).
    pub async fn run<F: Future>(clock: Option<ProviderClock>, work: F) -> F::Output {
        match clock {
            Some(clock) => CLOCK.scope(clock, work).await,
            None => work.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_add_up_inside_their_request_only() {
        ProviderClock::add(Duration::from_millis(5));
        let clock = ProviderClock::default();
        ProviderClock::run(Some(clock.clone()), async {
            ProviderClock::add(Duration::from_millis(3));
            let carried = ProviderClock::current();
            tokio::spawn(ProviderClock::run(carried, async {
                ProviderClock::add(Duration::from_millis(4));
            }))
            .await
            .unwrap();
        })
        .await;
        assert_eq!(clock.total(), Duration::from_millis(7));
    }
}
