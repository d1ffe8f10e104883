//! The front gate of the client API: authenticate, then rate limit, then
//! let the operation run; every limited response, 2xx or 4xx, carries the
//! limit headers (IETF `RateLimit-Policy`/`RateLimit` and the common
//! `X-RateLimit-*`), and a 429 adds `Retry-After`.
//!
//! Each client operation declares its own gate where it declares its path,
//! with poem-openapi's per-operation `transform` ([`client_operation`],
//! [`limit_initialize`], [`limit_verify`], …): a route cannot exist without
//! saying whether it is authenticated and limited, and renaming one cannot
//! lose its limit. The gate's shared state ([`Gatekeeper`]) comes from the
//! app's request data.
//!
//! Order matters for money and for the database: a request without a valid
//! key is charged to its IP (`unauthenticated` policy) *before* its key is
//! looked up, so a flood of bad keys is turned away without queries.
//!
//! Operator routes have a gate of their own ([`operator_operation`]): it
//! takes only an operator's token (`pot_…`), never an API client's key,
//! and charges requests without a valid one to the same per-IP budget.

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use poem::{
    Endpoint, EndpointExt, IntoResponse, Middleware, Request, Response, Result,
    http::{HeaderValue, StatusCode},
};

use super::{
    BodyLimit, MAX_CLIENT_BODY,
    auth::{Authenticator, KeyCheck, bearer_token},
    error::{ApiError, render_any_error},
};
use crate::{
    operators::Operators,
    ratelimit::{Decision, Identity, RateLimiter, Route},
    store::operators as operator_tokens,
};

/// What every gate shares: who clients are, how much they may do, and which
/// IPs spent their budget of bad keys. Put in the app's request data once.
#[derive(Clone)]
pub struct Gatekeeper {
    pub authenticator: Authenticator,
    pub limiter: Arc<RateLimiter>,
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    blocked: Arc<BlockedIps>,
}

impl Gatekeeper {
    pub fn new(
        authenticator: Authenticator,
        limiter: Arc<RateLimiter>,
        trusted_proxies: Vec<ipnet::IpNet>,
    ) -> Gatekeeper {
        Gatekeeper {
            authenticator,
            limiter,
            trusted_proxies: Arc::new(trusted_proxies),
            blocked: Arc::default(),
        }
    }
}

/// An authenticated client operation with the default body limit, not
/// rate limited.
pub fn client_operation<E: Endpoint + 'static>(ep: E) -> impl Endpoint {
    ep.with(BodyLimit(MAX_CLIENT_BODY))
        .with(ClientGate { limit: None })
}

/// [`client_operation`], limited by the `initialize` policy.
pub fn limit_initialize<E: Endpoint + 'static>(ep: E) -> impl Endpoint {
    limited(ep, Route::Initialize)
}

/// [`client_operation`], limited by the `verify` policy.
pub fn limit_verify<E: Endpoint + 'static>(ep: E) -> impl Endpoint {
    limited(ep, Route::Verify)
}

/// [`client_operation`], limited by the `refund` policy.
pub fn limit_refund<E: Endpoint + 'static>(ep: E) -> impl Endpoint {
    limited(ep, Route::Refund)
}

/// Provider webhooks: limited per IP by the `webhook` policy before the
/// body is read or its signature checked (the body limit is the ingest's).
pub fn limit_webhook<E: Endpoint + 'static>(ep: E) -> impl Endpoint {
    ep.with(WebhookGate)
}

pub struct WebhookGate;

impl<E: Endpoint> Middleware<E> for WebhookGate {
    type Output = WebhookGateEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        WebhookGateEndpoint { inner }
    }
}

pub struct WebhookGateEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for WebhookGateEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let Some(keeper) = req.data::<Gatekeeper>().cloned() else {
            return Err(ApiError::Internal("the app has no gatekeeper".into()).into());
        };
        let ip = crate::ratelimit::network_of(client_ip(&req, &keeper.trusted_proxies));
        let decision = keeper
            .limiter
            .check(Route::Webhook, &Identity::Ip(ip))
            .await;
        within_limit(&self.inner, req, decision).await
    }
}

fn limited<E: Endpoint + 'static>(ep: E, route: Route) -> impl Endpoint {
    ep.with(BodyLimit(MAX_CLIENT_BODY))
        .with(ClientGate { limit: Some(route) })
}

/// 429 when `decision` refuses; otherwise `inner`'s answer, with the limit
/// headers when a policy applied.
async fn within_limit<E: Endpoint>(
    inner: &E,
    req: Request,
    decision: Option<Decision>,
) -> Result<Response> {
    if let Some(decision) = decision.filter(|d| !d.allowed) {
        return Ok(limited_response(decision));
    }
    let mut response = match inner.call(req).await {
        Ok(output) => output.into_response(),
        Err(err) => render_any_error(err).await,
    };
    if let Some(decision) = decision {
        add_headers(&mut response, &decision);
    }
    Ok(response)
}

/// Authenticates, and rate limits by `limit` when it is set.
pub struct ClientGate {
    pub limit: Option<Route>,
}

impl<E: Endpoint> Middleware<E> for ClientGate {
    type Output = ClientGateEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        ClientGateEndpoint {
            inner,
            limit: self.limit,
        }
    }
}

pub struct ClientGateEndpoint<E> {
    inner: E,
    limit: Option<Route>,
}

/// IPs that exhausted their `unauthenticated` budget, until it refills:
/// their requests with unknown keys are refused, after at most
/// [`LOOKUPS_WHILE_BLOCKED`] lookups.
#[derive(Default)]
struct BlockedIps(dashmap::DashMap<IpAddr, Block>);

#[derive(Clone, Copy)]
struct Block {
    until: Instant,
    decision: Decision,
    lookups_left: u32,
}

/// More blocked IPs than this and expired entries are swept first.
const BLOCKED_CAPACITY: usize = 100_000;

/// Unknown keys a blocked IP may still have looked up, per block: a valid
/// client behind a NAT whose address someone else's bad keys got blocked is
/// still served (its key is then cached), while a flood of bad keys from
/// that address costs at most this many queries until the block ends.
const LOOKUPS_WHILE_BLOCKED: u32 = 5;

/// What a blocked IP's request may do.
enum Blocked {
    No,
    /// Blocked, but one lookup of its key may be made.
    LookUp(Decision),
    Refused(Decision),
}

impl BlockedIps {
    /// Whether `ip` is blocked; a request that `wants_lookup` spends one of
    /// the block's lookups when any is left.
    fn check(&self, ip: IpAddr, wants_lookup: bool) -> Blocked {
        let Some(mut entry) = self.0.get_mut(&ip) else {
            return Blocked::No;
        };
        let now = Instant::now();
        if now >= entry.until {
            drop(entry);
            self.0.remove_if(&ip, |_, block| now >= block.until);
            return Blocked::No;
        }
        let decision = Decision {
            retry_after: entry.until - now,
            ..entry.decision
        };
        if wants_lookup && entry.lookups_left > 0 {
            entry.lookups_left -= 1;
            Blocked::LookUp(decision)
        } else {
            Blocked::Refused(decision)
        }
    }

    fn block(&self, ip: IpAddr, decision: Decision) {
        if self.0.len() >= BLOCKED_CAPACITY {
            let now = Instant::now();
            self.0.retain(|_, block| block.until > now);
        }
        if self.0.len() < BLOCKED_CAPACITY {
            self.0.insert(
                ip,
                Block {
                    until: Instant::now() + decision.retry_after,
                    decision,
                    lookups_left: LOOKUPS_WHILE_BLOCKED,
                },
            );
        }
    }
}

impl<E: Endpoint> Endpoint for ClientGateEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        let Some(keeper) = req.data::<Gatekeeper>().cloned() else {
            return Err(ApiError::Internal("the app has no gatekeeper".into()).into());
        };
        let token = bearer_token(&req).map(str::to_owned);
        let client = match keeper.authenticator.precheck(token.as_deref()) {
            KeyCheck::Valid(client) => client,
            check => {
                let lookup = match (check, token.as_deref()) {
                    (KeyCheck::Unknown, Some(token)) => Some(keeper.authenticator.lookup(token)),
                    _ => None,
                };
                match keeper.admit(&req, lookup, ApiError::Unauthorized).await {
                    Ok(client) => client,
                    Err(response) => return Ok(response),
                }
            }
        };
        let identity = Identity::Client(client.id);
        req.extensions_mut().insert(client);
        let decision = match self.limit {
            Some(route) => keeper.limiter.check(route, &identity).await,
            None => None,
        };
        within_limit(&self.inner, req, decision).await
    }
}

impl Gatekeeper {
    /// A credential the cache does not vouch for (or none, or a malformed
    /// one): `lookup` looks it up (`None`: nothing worth looking up), and a
    /// request it does not admit is charged to its IP and answered
    /// `unauthorized`. An IP that has spent its `unauthenticated` budget is
    /// turned away, after at most [`LOOKUPS_WHILE_BLOCKED`] lookups while
    /// the block lasts.
    async fn admit<T>(
        &self,
        req: &Request,
        lookup: Option<impl Future<Output = std::result::Result<Option<T>, ApiError>>>,
        unauthorized: ApiError,
    ) -> std::result::Result<T, Response> {
        let ip = crate::ratelimit::network_of(client_ip(req, &self.trusted_proxies));
        let blocked = match self.blocked.check(ip, lookup.is_some()) {
            Blocked::Refused(decision) => return Err(limited_response(decision)),
            blocked => blocked,
        };
        if let Some(lookup) = lookup {
            match lookup.await {
                Ok(Some(caller)) => return Ok(caller),
                Ok(None) => {}
                Err(err) => return Err(err.as_response_with(None)),
            }
        }
        if let Blocked::LookUp(decision) = blocked {
            // Still blocked: already charged, refused again.
            return Err(limited_response(decision));
        }
        let decision = self
            .limiter
            .check(Route::Unauthenticated, &Identity::Ip(ip))
            .await;
        match decision {
            Some(decision) if !decision.allowed => {
                self.blocked.block(ip, decision);
                Err(limited_response(decision))
            }
            decision => Err(unauthorized.as_response_with(decision)),
        }
    }
}

/// An operator route with the default body limit: admitted only with an
/// operator's bearer token (never an API key), not rate limited once
/// admitted. Needs [`Operators`] in the app's request data.
pub fn operator_operation<E: Endpoint + 'static>(ep: E) -> impl Endpoint {
    ep.with(BodyLimit(MAX_CLIENT_BODY)).with(OperatorGate)
}

/// Finds the operator behind a request — an operator's bearer token, or
/// else the console's session cookie — or answers 401 (429 once its IP
/// spent its budget of bad credentials). Tokens and sessions are looked up
/// on every request, so disabling an operator, revoking a token or signing
/// out takes effect at once. A request with the session cookie must carry
/// the session's CSRF token in `X-CSRF-Token` (403 `csrf_token_invalid`
/// otherwise): the cookie alone, which a browser sends for any page that
/// asks, never reads or changes anything.
pub struct OperatorGate;

impl<E: Endpoint> Middleware<E> for OperatorGate {
    type Output = OperatorGateEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        OperatorGateEndpoint { inner }
    }
}

pub struct OperatorGateEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for OperatorGateEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        let (Some(keeper), Some(operators)) = (
            req.data::<Gatekeeper>().cloned(),
            req.data::<Operators>().cloned(),
        ) else {
            return Err(ApiError::Internal("the app has no operator gate".into()).into());
        };
        let bearer = bearer_token(&req)
            .filter(|token| operator_tokens::is_well_formed(token))
            .map(str::to_owned);
        let session = match bearer {
            Some(_) => None,
            None => super::auth::session_cookie(&req),
        };
        if let Some(session) = &session {
            let sent = req.header("x-csrf-token").unwrap_or_default();
            if !crate::operators::csrf_matches(session, sent) {
                return Ok(ApiError::CsrfTokenInvalid.as_response_with(None));
            }
        }
        let token = bearer.or_else(|| session.clone());
        let lookup = token
            .as_deref()
            .map(|token| async { operators.authenticate(token).await.map_err(ApiError::from) });
        let operator = match keeper
            .admit(&req, lookup, ApiError::OperatorUnauthorized)
            .await
        {
            Ok(operator) => operator,
            Err(response) => return Ok(response),
        };
        req.extensions_mut().insert(operator);
        if let Some(session) = session {
            req.extensions_mut()
                .insert(super::auth::ConsoleSession(session));
        }
        within_limit(&self.inner, req, None).await
    }
}

impl ApiError {
    fn as_response_with(&self, decision: Option<Decision>) -> Response {
        let mut response = poem::error::ResponseError::as_response(self);
        if let Some(decision) = decision {
            add_headers(&mut response, &decision);
        }
        response
    }
}

fn limited_response(decision: Decision) -> Response {
    let mut response = ApiError::RateLimited {
        retry_after: decision.retry_after,
    }
    .as_response_with(Some(decision));
    debug_assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    response.headers_mut().insert(
        "retry-after",
        HeaderValue::from(whole_seconds(decision.retry_after).max(1)),
    );
    response
}

/// Seconds, rounded up: a client that waits this long is never early.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The IETF draft's `RateLimit-Policy` and `RateLimit`, and the common
/// `X-RateLimit-*` trio, all from one decision.
pub fn rate_limit_headers(decision: &Decision, route: &str) -> [(&'static str, String); 5] {
    let limit = decision.policy.limit;
    let window = decision.policy.window.as_secs();
    let reset = whole_seconds(decision.reset);
    [
        (
            "ratelimit-policy",
            format!("\"{route}\";q={limit};w={window}"),
        ),
        (
            "ratelimit",
            format!("\"{route}\";r={};t={reset}", decision.remaining),
        ),
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", decision.remaining.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
    ]
}

fn add_headers(response: &mut Response, decision: &Decision) {
    for (name, value) in rate_limit_headers(decision, decision.route.as_str()) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
}

/// The caller's address: the peer, or — only when the peer is a trusted
/// proxy — the nearest untrusted address in `X-Forwarded-For`.
pub fn client_ip(req: &Request, trusted: &[ipnet::IpNet]) -> IpAddr {
    let peer = req
        .remote_addr()
        .as_socket_addr()
        .map(|addr| addr.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::{Backend, RateLimitPolicy};

    #[test]
    fn headers_follow_the_drafts() {
        let decision = Decision {
            allowed: true,
            route: Route::Initialize,
            policy: RateLimitPolicy {
                limit: 5,
                window: Duration::from_secs(60),
            },
            remaining: 4,
            reset: Duration::from_millis(59_200),
            retry_after: Duration::ZERO,
            backend: Backend::Redis,
        };
        let headers = rate_limit_headers(&decision, "initialize");
        assert_eq!(headers[0].1, "\"initialize\";q=5;w=60");
        assert_eq!(headers[1].1, "\"initialize\";r=4;t=60");
        assert_eq!(headers[2].1, "5");
        assert_eq!(headers[3].1, "4");
        assert_eq!(headers[4].1, "60");
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(12)), 12);
        assert_eq!(whole_seconds(Duration::ZERO), 0);
    }
}
