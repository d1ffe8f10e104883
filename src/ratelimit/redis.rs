//! The shared limiter: a sliding-window log per (route, identity) in a Redis
//! sorted set. One Lua script prunes entries older than the window, counts,
//! admits if under the limit, and sets the key's expiry — one atomic call,
//! so concurrent requests cannot overshoot, and no key outlives its window.
//! Time is Redis's own (`TIME`), so API instances with skewed clocks agree.

use std::time::Duration;

use redis::{Script, aio::ConnectionManager};

use super::{Backend, Decision, RateLimitPolicy, Route};

const SLIDING_WINDOW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local next_slot = 0
local full = 0
if count >= limit and oldest[2] then next_slot = tonumber(oldest[2]) + window - now end
if newest[2] then full = tonumber(newest[2]) + window - now end
return {allowed, limit - count, next_slot, full}
"#;

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

pub struct RedisLimiter {
    conn: ConnectionManager,
    script: Script,
    prefix: String,
    timeout: Duration,
}

impl RedisLimiter {
    /// Connects lazily: a Redis that is down at startup is a fallback, not a crash.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
    ) -> Result<RedisLimiter, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(RedisLimiter {
            conn: ConnectionManager::new_lazy_with_config(client, config)?,
            script: Script::new(SLIDING_WINDOW),
            prefix: prefix.to_owned(),
            timeout,
        })
    }

    pub async fn check(
        &self,
        route: Route,
        policy: RateLimitPolicy,
        identity_key: &str,
    ) -> Result<Decision, LimiterError> {
        let key = format!("{}:rl:{}:{identity_key}", self.prefix, route.as_str());
        let mut conn = self.conn.clone();
        let mut invocation = self.script.key(key);
        invocation
            .arg(policy.window.as_micros() as u64)
            .arg(policy.limit)
            .arg(uuid::Uuid::new_v4().simple().to_string());
        let call = invocation.invoke_async::<(i64, i64, i64, i64)>(&mut conn);
        let (allowed, remaining, next_slot, full) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| LimiterError::Timeout(self.timeout))??;
        let micros = |v: i64| Duration::from_micros(v.max(0) as u64);
        Ok(Decision {
            allowed: allowed == 1,
            route,
            policy,
            remaining: remaining.max(0) as u32,
            reset: micros(full),
            retry_after: micros(next_slot),
            backend: Backend::Redis,
        })
    }
}
