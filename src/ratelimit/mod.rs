//! Per-client rate limiting. `policy` is the pure part: which routes are
//! limited and how many requests a window allows.

pub mod policy;

pub use policy::{RateLimitPolicy, RateLimits, Route};
