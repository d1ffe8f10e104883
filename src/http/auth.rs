//! Who is calling. `Authorization: Bearer <api key>` → the [`ApiClient`], or
//! a 401 problem+json (`unauthorized`).
//!
//! Authentication runs in [`super::gate`], before the operation, so requests
//! without a valid key can be rate limited per IP *before* the key lookup
//! touches the database. Known-good keys are cached briefly; an unknown key
//! costs the caller's IP one unit of the `unauthenticated` budget first.
//! The [`ClientAuth`] security scheme then only reads what the gate found
//! (and documents the scheme in the OpenAPI description).
//!
//! Operators are another kind of caller with credentials of their own
//! ([`OperatorAuth`]): `Authorization: Bearer pot_…`, a token from
//! `payorch operator token NAME`. An API client's key never passes the
//! operator gate and an operator's token never passes the client gate —
//! each gate recognises only its own token's shape and looks it up only in
//! its own table, and each scheme reads only its own kind of caller from
//! the request.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dashmap::DashMap;
use poem::Request;
use poem_openapi::{
    SecurityScheme,
    auth::{ApiKey, Bearer},
};
use sea_orm::DatabaseConnection;

use super::error::ApiError;
use crate::store::{
    api_clients::{self, ApiClient},
    operators::Operator,
};

/// At most this many keys are cached; past it the cache starts over.
const CACHE_CAPACITY: usize = 100_000;

/// The API key of a merchant back end.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "authenticated")]
pub struct ClientAuth(pub ApiClient);

async fn authenticated(req: &Request, _bearer: Bearer) -> poem::Result<ApiClient> {
    req.extensions()
        .get::<ApiClient>()
        .cloned()
        .ok_or_else(|| ApiError::Unauthorized.into())
}

/// An operator, by either of the two ways the operator gate admits one:
/// a bearer token (`pot_…`, from `payorch operator token NAME`), or the
/// console's session (the `payorch_session` cookie with the session's CSRF
/// token in `X-CSRF-Token`). Never an API client's key. Each reads what
/// the gate found.
#[derive(SecurityScheme)]
pub enum OperatorAuth {
    Token(OperatorToken),
    Session(ConsoleSessionAuth),
}

impl OperatorAuth {
    pub fn operator(self) -> Operator {
        match self {
            OperatorAuth::Token(OperatorToken(operator))
            | OperatorAuth::Session(ConsoleSessionAuth(operator)) => operator,
        }
    }
}

/// An operator's bearer token (`pot_…`).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "operator_authenticated")]
pub struct OperatorToken(pub Operator);

/// The console's session: the `payorch_session` cookie (set by `POST
/// /console/sign-in`), with the session's CSRF token in this header.
#[derive(SecurityScheme)]
#[oai(
    ty = "api_key",
    key_name = "X-CSRF-Token",
    key_in = "header",
    checker = "session_authenticated"
)]
pub struct ConsoleSessionAuth(pub Operator);

async fn operator_authenticated(req: &Request, _bearer: Bearer) -> poem::Result<Operator> {
    admitted_operator(req)
}

async fn session_authenticated(req: &Request, _csrf: ApiKey) -> poem::Result<Operator> {
    admitted_operator(req)
}

fn admitted_operator(req: &Request) -> poem::Result<Operator> {
    req.extensions()
        .get::<Operator>()
        .cloned()
        .ok_or_else(|| ApiError::OperatorUnauthorized.into())
}

/// Resolves keys to clients, with a short-lived cache of known-good keys
/// (revoking a key takes effect within the cache's time to live).
#[derive(Clone)]
pub struct Authenticator {
    db: DatabaseConnection,
    /// Key hash → the client and until when the entry may be used.
    cache: Arc<DashMap<String, (ApiClient, Instant)>>,
    ttl: Duration,
}

/// What the bearer token turned out to be.
pub enum KeyCheck {
    Valid(ApiClient),
    /// Well-formed and worth a database lookup, not in the cache.
    Unknown,
    /// Missing or malformed: no lookup can make it valid.
    Invalid,
}

impl Authenticator {
    pub fn new(db: DatabaseConnection, ttl: Duration) -> Authenticator {
        Authenticator {
            db,
            cache: Arc::new(DashMap::new()),
            ttl,
        }
    }

    /// Looks at the token without touching the database.
    pub fn precheck(&self, token: Option<&str>) -> KeyCheck {
        let Some(token) = token.filter(|t| api_clients::is_well_formed(t)) else {
            return KeyCheck::Invalid;
        };
        match self.cache.get(&api_clients::hash_key(token)) {
            Some(entry) if Instant::now() < entry.1 => KeyCheck::Valid(entry.0.clone()),
            _ => KeyCheck::Unknown,
        }
    }

    /// Looks the key up in the database and caches a hit, for the cache's
    /// time to live or, for a rotated key in its grace period, at most
    /// until that ends.
    pub async fn lookup(&self, token: &str) -> Result<Option<ApiClient>, ApiError> {
        let Some((client, grace_until)) = api_clients::authenticate(&self.db, token).await? else {
            return Ok(None);
        };
        let mut ttl = self.ttl;
        if let Some(until) = grace_until {
            ttl = ttl.min((until - chrono::Utc::now()).to_std().unwrap_or_default());
        }
        if !ttl.is_zero() {
            if self.cache.len() >= CACHE_CAPACITY {
                self.cache.clear();
            }
            self.cache.insert(
                api_clients::hash_key(token),
                (client.clone(), Instant::now() + ttl),
            );
        }
        Ok(Some(client))
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer_token(req: &Request) -> Option<&str> {
    let value = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "payorch_session";

/// The console session a request came with (put there by the operator
/// gate when it admitted the request by its cookie).
#[derive(Debug, Clone)]
pub struct ConsoleSession(pub String);

/// The session token in the request's cookie, if it has the shape of one.
pub fn session_cookie(req: &Request) -> Option<String> {
    req.headers()
        .get_all(poem::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|token| crate::store::operators::is_session(token))
}
