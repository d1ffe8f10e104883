//! The one retry, defer and park policy, whatever the backend: given what
//! a handler decided about a message ([`Disposition`]), the attempts it has
//! had and the queue's [`RetryPolicy`], where it goes next
//! ([`Settlement`]). RabbitMQ and the queue table only carry that out — a
//! publish to a retry tier or the parking queue, or an update of a row —
//! so both retry, defer and park alike, and a message past the last tier
//! is parked, never dropped.

use std::time::Duration;

use super::{Disposition, Envelope};

/// Retry tiers: the delay before each further attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub delays: Vec<Duration>,
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`, or `None`: park it.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        self.delays.get(attempt as usize).copied()
    }

    /// The delay before attempt `attempt + 1`, at least `not_before`: the
    /// shortest tier that is (or the longest there is). `None`: park it.
    pub fn tier_at_least(&self, attempt: u32, not_before: Duration) -> Option<Duration> {
        let own = self.delay_after(attempt)?;
        let wanted = own.max(not_before);
        Some(
            self.delays
                .iter()
                .copied()
                .filter(|d| *d >= wanted)
                .min()
                .or_else(|| self.delays.iter().copied().max())
                .unwrap_or(own),
        )
    }
}

/// `delay` lengthened by up to `percent` %, at random (spreads the retries
/// of many messages that failed together).
pub fn jittered(delay: Duration, percent: u32) -> Duration {
    if percent == 0 {
        return delay;
    }
    let extra = rand::random_range(0..=percent) as f64 / 100.0;
    delay.mul_f64(1.0 + extra)
}

/// Where a handled message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Nowhere: acknowledged (RabbitMQ) or deleted (the table).
    Ack,
    /// Back to the main queue as attempt `attempt`, with `reason`, after
    /// `wait` — the attempt's tier, or longer when the handler asked for
    /// it (a `Retry-After`). A backend that can hold a message for any
    /// time (the queue table) waits exactly `wait`; RabbitMQ's tiers have
    /// fixed lengths, and it takes `delay`: the first tier at least `wait`
    /// long (or the longest there is).
    ToTier {
        delay: Duration,
        wait: Duration,
        attempt: u32,
        reason: String,
    },
    /// To the dead letters with `reason`, its attempt count as it was.
    Park { reason: String },
}

impl Settlement {
    /// What `disposition` makes of a message that has had `attempt`
    /// attempts before this one, under `retry`:
    ///
    /// - `Retry`: the tier for its attempt, counted; past the last, parked.
    /// - `RetryNotBefore`: the same, but the first tier at least as long as
    ///   asked (or the longest there is).
    /// - `Defer`: the first tier, not counted; parked if there is none.
    /// - `Park`: parked; `Ack`: done.
    pub fn of(disposition: &Disposition, attempt: u32, retry: &RetryPolicy) -> Settlement {
        let retried = |reason: &String, not_before: Duration| match (
            retry.delay_after(attempt),
            retry.tier_at_least(attempt, not_before),
        ) {
            (Some(own), Some(delay)) => Settlement::ToTier {
                delay,
                wait: own.max(not_before),
                attempt: attempt + 1,
                reason: reason.clone(),
            },
            _ => Settlement::Park {
                reason: reason.clone(),
            },
        };
        match disposition {
            Disposition::Ack => Settlement::Ack,
            Disposition::Retry(reason) => retried(reason, Duration::ZERO),
            Disposition::RetryNotBefore(reason, not_before) => retried(reason, *not_before),
            Disposition::Defer(reason) => match retry.delays.first() {
                Some(first) => Settlement::ToTier {
                    delay: *first,
                    wait: *first,
                    attempt,
                    reason: reason.clone(),
                },
                None => Settlement::Park {
                    reason: reason.clone(),
                },
            },
            Disposition::Park(reason) => Settlement::Park {
                reason: reason.clone(),
            },
        }
    }

    /// `envelope` as it is stored next: `None` when it is done.
    pub fn moved(&self, envelope: &Envelope) -> Option<Envelope> {
        let (attempt, reason) = match self {
            Settlement::Ack => return None,
            Settlement::ToTier {
                attempt, reason, ..
            } => (*attempt, reason),
            Settlement::Park { reason } => (envelope.attempt, reason),
        };
        Some(Envelope {
            message: envelope.message.clone(),
            attempt,
            reason: Some(reason.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{EventDelivery, QueueMessage};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Three attempts after the first: 100 ms, 1 s, 10 s.
    fn policy() -> RetryPolicy {
        RetryPolicy {
            delays: vec![ms(100), ms(1_000), ms(10_000)],
        }
    }

    const FIRST: u32 = 0;
    const MIDDLE: u32 = 1;
    const LAST: u32 = 3;

    fn tier(delay: u64, attempt: u32, reason: &str) -> Settlement {
        Settlement::ToTier {
            delay: ms(delay),
            wait: ms(delay),
            attempt,
            reason: reason.into(),
        }
    }

    fn park(reason: &str) -> Settlement {
        Settlement::Park {
            reason: reason.into(),
        }
    }

    fn of(disposition: Disposition, attempt: u32) -> Settlement {
        Settlement::of(&disposition, attempt, &policy())
    }

    #[test]
    fn ack_is_done_at_any_attempt() {
        for attempt in [FIRST, MIDDLE, LAST] {
            assert_eq!(of(Disposition::Ack, attempt), Settlement::Ack);
        }
    }

    #[test]
    fn retry_takes_the_attempts_own_tier_and_counts_it() {
        assert_eq!(of(Disposition::Retry("r".into()), FIRST), tier(100, 1, "r"));
        assert_eq!(
            of(Disposition::Retry("r".into()), MIDDLE),
            tier(1_000, 2, "r")
        );
        assert_eq!(of(Disposition::Retry("r".into()), 2), tier(10_000, 3, "r"));
    }

    #[test]
    fn retry_after_the_last_tier_parks() {
        assert_eq!(of(Disposition::Retry("r".into()), LAST), park("r"));
        assert_eq!(of(Disposition::Retry("r".into()), LAST + 5), park("r"));
    }

    #[test]
    fn retry_not_before_takes_the_first_tier_long_enough() {
        let asked = |after: u64, attempt| {
            of(
                Disposition::RetryNotBefore("busy".into(), ms(after)),
                attempt,
            )
        };
        let waiting = |delay, wait, attempt| Settlement::ToTier {
            delay: ms(delay),
            wait: ms(wait),
            attempt,
            reason: "busy".into(),
        };
        // Shorter than the attempt's own tier: the own tier.
        assert_eq!(asked(10, FIRST), tier(100, 1, "busy"));
        // Between tiers: the next longer tier, waiting exactly as asked
        // where the backend can.
        assert_eq!(asked(500, FIRST), waiting(1_000, 500, 1));
        assert_eq!(asked(1_000, MIDDLE), tier(1_000, 2, "busy"));
        // Longer than any tier: the longest tier, or exactly as asked.
        assert_eq!(asked(60_000, MIDDLE), waiting(10_000, 60_000, 2));
        // Past the last attempt it is parked, however long it asked.
        assert_eq!(asked(10, LAST), park("busy"));
    }

    #[test]
    fn defer_waits_the_first_tier_without_counting() {
        for attempt in [FIRST, MIDDLE, LAST] {
            assert_eq!(
                of(Disposition::Defer("full".into()), attempt),
                tier(100, attempt, "full")
            );
        }
    }

    #[test]
    fn defer_without_tiers_parks() {
        let none = RetryPolicy { delays: vec![] };
        assert_eq!(
            Settlement::of(&Disposition::Defer("full".into()), FIRST, &none),
            park("full")
        );
    }

    #[test]
    fn park_parks_at_any_attempt() {
        for attempt in [FIRST, MIDDLE, LAST] {
            assert_eq!(of(Disposition::Park("bad".into()), attempt), park("bad"));
        }
    }

    #[test]
    fn without_tiers_every_retry_parks() {
        let none = RetryPolicy { delays: vec![] };
        for disposition in [
            Disposition::Retry("r".into()),
            Disposition::RetryNotBefore("r".into(), ms(5)),
        ] {
            assert_eq!(Settlement::of(&disposition, FIRST, &none), park("r"));
        }
    }

    #[test]
    fn the_moved_envelope_carries_the_new_attempt_and_reason() {
        let envelope = Envelope {
            message: QueueMessage::EventDelivery(EventDelivery::new("evt_1", vec![], None)),
            attempt: 2,
            reason: Some("before".into()),
        };
        assert_eq!(Settlement::Ack.moved(&envelope), None);
        let retried = tier(10_000, 3, "again").moved(&envelope).unwrap();
        assert_eq!(
            (retried.attempt, retried.reason.as_deref()),
            (3, Some("again"))
        );
        let parked = park("bad").moved(&envelope).unwrap();
        assert_eq!((parked.attempt, parked.reason.as_deref()), (2, Some("bad")));
        assert_eq!(parked.message, envelope.message);
    }
}
