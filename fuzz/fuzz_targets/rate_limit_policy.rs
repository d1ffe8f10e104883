//! `PAYORCH_RATE_LIMITS` as an operator might type it: parsing never
//! panics, and what is accepted is within bounds and reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payorch::ratelimit::{RateLimits, Route};

fuzz_target!(|spec: &str| {
    let Ok(limits) = spec.parse::<RateLimits>() else {
        return;
    };
    let mut written = Vec::new();
    for route in Route::ALL {
        if let Some(policy) = limits.get(route) {
            assert!(policy.limit >= 1);
            let seconds = policy.window.as_secs();
            assert!((1..=86_400).contains(&seconds));
            written.push(format!("{}={policy}", route.as_str()));
        }
    }
    let again: RateLimits = written.join(",").parse().expect("what was read is valid");
    assert_eq!(again, limits);
});
