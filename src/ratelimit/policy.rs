//! Rate-limit policies as configured by `PAYORCH_RATE_LIMITS`
//! (`initialize=5/60,verify=10/60,refund=5/60,unauthenticated=30/60`): a limit of
//! requests per window of seconds, per limited route.

use std::{collections::BTreeMap, fmt, str::FromStr, time::Duration};

/// A route (or class of request) that has its own budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    Initialize,
    Verify,
    Refund,
    /// Requests without a valid API key, limited per IP before any database work.
    Unauthenticated,
    /// Provider webhooks, per IP, before the signature is checked: generous,
    /// so a provider's burst passes, while a flood of forged bodies costs
    /// little HMAC work.
    Webhook,
}

impl Route {
    pub const ALL: [Route; 5] = [
        Route::Initialize,
        Route::Verify,
        Route::Refund,
        Route::Unauthenticated,
        Route::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Initialize => "initialize",
            Route::Verify => "verify",
            Route::Refund => "refund",
            Route::Unauthenticated => "unauthenticated",
            Route::Webhook => "webhook",
        }
    }

    fn parse(name: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|route| route.as_str() == name)
    }
}

/// `limit` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitPolicy {
    pub limit: u32,
    pub window: Duration,
}

impl fmt::Display for RateLimitPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.limit, self.window.as_secs())
    }
}

/// Every configured policy; a route that is absent is not limited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits(BTreeMap<Route, RateLimitPolicy>);

impl RateLimits {
    pub const DEFAULT: &'static str =
        "initialize=5/60,verify=10/60,refund=5/60,unauthenticated=30/60,webhook=12000/60";

    pub fn get(&self, route: Route) -> Option<RateLimitPolicy> {
        self.0.get(&route).copied()
    }

    pub fn set(&mut self, route: Route, policy: RateLimitPolicy) {
        self.0.insert(route, policy);
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::DEFAULT
            .parse()
            .expect("the default rate-limit policy parses")
    }
}

impl FromStr for RateLimits {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut policies = BTreeMap::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, rule) = entry
                .split_once('=')
                .ok_or_else(|| format!("`{entry}` is not ROUTE=LIMIT/SECONDS"))?;
            let route = Route::parse(name.trim()).ok_or_else(|| {
                format!(
                    "unknown route `{name}` (known: initialize, verify, refund, unauthenticated, webhook)"
                )
            })?;
            let (limit, window) = rule
                .split_once('/')
                .ok_or_else(|| format!("`{entry}` is not ROUTE=LIMIT/SECONDS"))?;
            let limit: u32 = limit
                .trim()
                .parse()
                .map_err(|_| format!("limit `{limit}` of {name} is not a whole number"))?;
            let seconds: u64 = window
                .trim()
                .parse()
                .map_err(|_| format!("window `{window}` of {name} is not a whole number"))?;
            if limit == 0 || seconds == 0 || seconds > 86_400 {
                return Err(format!(
                    "`{entry}`: limit must be ≥ 1 and the window 1 to 86400 seconds"
                ));
            }
            if policies
                .insert(
                    route,
                    RateLimitPolicy {
                        limit,
                        window: Duration::from_secs(seconds),
                    },
                )
                .is_some()
            {
                return Err(format!("route {name} is given twice"));
            }
        }
        Ok(RateLimits(policies))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_matches_the_contract() {
        let limits = RateLimits::default();
        assert_eq!(limits.get(Route::Initialize).unwrap().to_string(), "5/60");
        assert_eq!(limits.get(Route::Verify).unwrap().to_string(), "10/60");
        assert_eq!(limits.get(Route::Refund).unwrap().to_string(), "5/60");
        assert_eq!(
            limits.get(Route::Unauthenticated).unwrap().to_string(),
            "30/60"
        );
    }

    #[test]
    fn absent_routes_are_unlimited() {
        let limits: RateLimits = "verify=2/2".parse().unwrap();
        assert_eq!(limits.get(Route::Initialize), None);
        assert_eq!(limits.get(Route::Verify).unwrap().limit, 2);
    }

    #[test]
    fn bad_specs_are_rejected_with_a_reason() {
        for bad in [
            "initialize=abc",
            "initialize=5",
            "initialize=5/x",
            "initialize=0/60",
            "initialize=5/0",
            "refunds=5/60",
            "initialize=5/60,initialize=6/60",
            "initialize",
        ] {
            assert!(bad.parse::<RateLimits>().is_err(), "{bad} should not parse");
        }
    }
}
