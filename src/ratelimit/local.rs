//! The in-process limiter: `governor`'s GCRA per (route, identity), with the
//! same quota as the shared one (burst = limit, one more every window/limit).
//! Used without Redis, and while Redis is failing. Idle keys are pruned
//! periodically, so memory follows the clients active in the last window.

use std::{collections::HashMap, num::NonZeroU32, sync::Arc, time::Duration};

use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
};

use super::{Backend, Decision, RateLimitPolicy, RateLimits, Route};

type Keyed = DefaultKeyedRateLimiter<String, StateInformationMiddleware>;

pub struct LocalLimiter {
    limiters: Arc<HashMap<Route, Keyed>>,
    clock: DefaultClock,
}

impl LocalLimiter {
    pub fn new(limits: &RateLimits) -> LocalLimiter {
        let limiters: HashMap<Route, Keyed> = Route::ALL
            .into_iter()
            .filter_map(|route| {
                let policy = limits.get(route)?;
                Some((route, RateLimiter::keyed(quota(policy)).with_middleware()))
            })
            .collect();
        let limiters = Arc::new(limiters);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&limiters);
            runtime.spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(60));
                loop {
                    every.tick().await;
                    let Some(limiters) = weak.upgrade() else {
                        break;
                    };
                    for limiter in limiters.values() {
                        limiter.retain_recent();
                        limiter.shrink_to_fit();
                    }
                }
            });
        }
        LocalLimiter {
            limiters,
            clock: DefaultClock::default(),
        }
    }

    pub fn check(&self, route: Route, policy: RateLimitPolicy, key: &str) -> Decision {
        let period = policy.window / policy.limit;
        let Some(limiter) = self.limiters.get(&route) else {
            // Unreachable with a policy in hand; allow rather than fail.
            return Decision {
                allowed: true,
                route,
                policy,
                remaining: policy.limit,
                reset: Duration::ZERO,
                retry_after: Duration::ZERO,
                backend: Backend::Local,
            };
        };
        match limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity().min(policy.limit);
                Decision {
                    allowed: true,
                    route,
                    policy,
                    remaining,
                    reset: period * (policy.limit - remaining),
                    retry_after: Duration::ZERO,
                    backend: Backend::Local,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision {
                    allowed: false,
                    route,
                    policy,
                    remaining: 0,
                    reset: period * policy.limit,
                    retry_after: wait,
                    backend: Backend::Local,
                }
            }
        }
    }
}

fn quota(policy: RateLimitPolicy) -> Quota {
    let burst = NonZeroU32::new(policy.limit).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(policy.window / burst.get())
        .unwrap_or_else(|| Quota::per_second(burst))
        .allow_burst(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(spec: &str) -> RateLimits {
        spec.parse().unwrap()
    }

    #[test]
    fn lets_the_limit_through_then_refuses_with_a_wait() {
        let limiter = LocalLimiter::new(&limits("initialize=5/60"));
        let policy = limits("initialize=5/60").get(Route::Initialize).unwrap();
        let remaining: Vec<u32> = (0..5)
            .map(|_| {
                let d = limiter.check(Route::Initialize, policy, "c:1");
                assert!(d.allowed);
                d.remaining
            })
            .collect();
        assert_eq!(remaining, [4, 3, 2, 1, 0]);
        let refused = limiter.check(Route::Initialize, policy, "c:1");
        assert!(!refused.allowed);
        // One slot comes back after window/limit = 12 s.
        assert!(refused.retry_after > Duration::from_secs(11));
        assert!(refused.retry_after <= Duration::from_secs(12));
    }

    #[test]
    fn keys_and_routes_have_their_own_budgets() {
        let all = limits("initialize=1/60,verify=1/60");
        let limiter = LocalLimiter::new(&all);
        let init = all.get(Route::Initialize).unwrap();
        let verify = all.get(Route::Verify).unwrap();
        assert!(limiter.check(Route::Initialize, init, "c:1").allowed);
        assert!(!limiter.check(Route::Initialize, init, "c:1").allowed);
        assert!(limiter.check(Route::Initialize, init, "c:2").allowed);
        assert!(limiter.check(Route::Verify, verify, "c:1").allowed);
    }
}
