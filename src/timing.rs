//! Where a request's time went, so a response can say it
//! (`Server-Timing: app;dur=…, provider;dur=…, db;dur=…`): the time spent
//! waiting on connectors, and the time its database statements took.
//!
//! The HTTP layer opens a [`RequestClock`] per request and runs the
//! request inside it; the clock travels with the request's messages to the
//! payment's actor, which runs its work inside it too. Every connector
//! call (`crate::provider::Guarded`) adds its duration to the clock it
//! runs in, and so does every database statement (the connection's metric
//! callback, `crate::store::connect_url`).

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

tokio::task_local! {
    static CLOCK: RequestClock;
}

#[derive(Debug, Default)]
struct Spent {
    provider: AtomicU64,
    database: AtomicU64,
}

/// Time spent in connector calls and database statements, shared by the
/// tasks serving one request.
#[derive(Debug, Clone, Default)]
pub struct RequestClock(Arc<Spent>);

fn add(counter: &AtomicU64, spent: Duration) {
    let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
    counter.fetch_add(nanos, Ordering::Relaxed);
}

impl RequestClock {
    /// The clock of the request this task serves, if any.
    pub fn current() -> Option<RequestClock> {
        CLOCK.try_with(Clone::clone).ok()
    }

    /// Adds a connector call's time to the current request's clock
    /// (nothing outside one).
    pub fn add_provider(spent: Duration) {
        let _ = CLOCK.try_with(|clock| add(&clock.0.provider, spent));
    }

    /// Adds a database statement's time to the current request's clock
    /// (nothing outside one).
    pub fn add_database(spent: Duration) {
        let _ = CLOCK.try_with(|clock| add(&clock.0.database, spent));
    }

    pub fn provider(&self) -> Duration {
        Duration::from_nanos(self.0.provider.load(Ordering::Relaxed))
    }

    /// The sum of the request's statements' times (statements run at once
    /// count each).
    pub fn database(&self) -> Duration {
        Duration::from_nanos(self.0.database.load(Ordering::Relaxed))
    }

    /// Runs `work` with `clock` as its request's clock (as it is without one).
    pub async fn run<F: Future>(clock: Option<RequestClock>, work: F) -> F::Output {
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
    async fn time_adds_up_inside_its_request_only() {
        RequestClock::add_provider(Duration::from_millis(5));
        let clock = RequestClock::default();
        RequestClock::run(Some(clock.clone()), async {
            RequestClock::add_provider(Duration::from_millis(3));
            RequestClock::add_database(Duration::from_millis(2));
            let carried = RequestClock::current();
            tokio::spawn(RequestClock::run(carried, async {
                RequestClock::add_provider(Duration::from_millis(4));
                RequestClock::add_database(Duration::from_millis(1));
            }))
            .await
            .unwrap();
        })
        .await;
        assert_eq!(clock.provider(), Duration::from_millis(7));
        assert_eq!(clock.database(), Duration::from_millis(3));
    }
}
