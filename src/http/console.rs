//! `/console`: the operators' pages, served by `serve` from assets built
//! into the binary (it works offline, with no CDN). The pages are a shell:
//! everything they show or do goes through `/v1/operator/…`
//! ([`super::operator`]), as a script or `curl` with an operator token
//! would, so there is one implementation of every operator action.
//!
//! Signing in (`POST /console/sign-in`, a form: name and password) starts
//! a session: a `pos_…` token in the `payorch_session` cookie (`HttpOnly`,
//! `SameSite=Strict`, `Path=/`, and `Secure` when the request came over
//! TLS through a trusted proxy), stored hashed like an operator token and
//! ending after [`crate::operators::SESSION_TTL`] or at sign-out. The
//! operator gate takes the cookie where it takes a bearer token, with the
//! session's CSRF token in `X-CSRF-Token` on every request (the console's
//! page carries it in a `<meta>`; a page of another site can send the
//! cookie but cannot know the token). Sign-in is limited per
//! client address and per name in each process, an unknown name and a
//! wrong password get the same answer, and a sign-in form posted from
//! another site's page is refused (no one is signed in to an account they
//! did not choose).
//!
//! Every response here carries a strict Content-Security-Policy (no inline
//! script or style: the pages build what they show with DOM calls and
//! `textContent`, so a merchant's `<script>` in a payment's metadata is
//! text), `X-Frame-Options: DENY`, `nosniff` and no referrer.

use std::{num::NonZeroU32, sync::Arc};

use governor::{DefaultKeyedRateLimiter, Quota};
use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route, handler,
    http::{StatusCode, header},
    web::{Data, Form},
};
use serde::Deserialize;

use super::{
    auth::{SESSION_COOKIE as COOKIE, session_cookie},
    gate::{Gatekeeper, client_ip},
};
use crate::operators::Operators;

/// The console's Content-Security-Policy.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'self'";
/// Sign-in attempts per minute: per client address, per name from one
/// address, and per name from every address together. The per-name limit
/// counts per address first, so that someone failing on purpose from
/// their own address cannot keep an operator out; only a guesser spread
/// over many addresses meets the name's overall limit.
const ATTEMPTS_PER_IP: u32 = 20;
const ATTEMPTS_PER_NAME: u32 = 5;
const ATTEMPTS_PER_NAME_EVERYWHERE: u32 = 60;
/// Keys the sign-in limiters remember before they forget the idle ones.
const MAX_TRACKED: usize = 10_000;
/// Password checks (argon2id, memory- and CPU-hard) running at once, at
/// most; more wait for one to finish, up to [`CHECK_WAIT`].
const CONCURRENT_CHECKS: usize = 4;
const CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// The largest sign-in form read.
const MAX_FORM: usize = 4 * 1024;
/// What a failed sign-in says, whichever part was wrong.
const WRONG: &str = "Name or password is wrong.";

const CONSOLE_HTML: &str = include_str!("../../assets/console/console.html");
const SIGN_IN_HTML: &str = include_str!("../../assets/console/sign-in.html");
const CONSOLE_JS: &str = include_str!("../../assets/console/console.js");
const CONSOLE_CSS: &str = include_str!("../../assets/console/console.css");

/// Sign-in limits of this process.
#[derive(Clone)]
struct SignInLimits {
    by_ip: Arc<DefaultKeyedRateLimiter<std::net::IpAddr>>,
    by_name_and_ip: Arc<DefaultKeyedRateLimiter<(String, std::net::IpAddr)>>,
    by_name: Arc<DefaultKeyedRateLimiter<String>>,
    checks: Arc<tokio::sync::Semaphore>,
}

impl SignInLimits {
    fn new() -> SignInLimits {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).expect("a positive quota"));
        SignInLimits {
            by_ip: Arc::new(governor::RateLimiter::keyed(per_minute(ATTEMPTS_PER_IP))),
            by_name_and_ip: Arc::new(governor::RateLimiter::keyed(per_minute(ATTEMPTS_PER_NAME))),
            by_name: Arc::new(governor::RateLimiter::keyed(per_minute(
                ATTEMPTS_PER_NAME_EVERYWHERE,
            ))),
            checks: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CHECKS)),
        }
    }

    /// Whether another attempt from `ip` (limited as its network: an IPv6
    /// address by its /64) for `name` may be tried now.
    fn allow(&self, ip: std::net::IpAddr, name: &str) -> bool {
        let ip = crate::ratelimit::network_of(ip);
        if self.by_ip.len() > MAX_TRACKED {
            self.by_ip.retain_recent();
        }
        if self.by_name_and_ip.len() > MAX_TRACKED {
            self.by_name_and_ip.retain_recent();
        }
        if self.by_name.len() > MAX_TRACKED {
            self.by_name.retain_recent();
        }
        // Each is charged: a guesser spreading names over one address, or
        // addresses over one name, runs out either way.
        let name = name.to_lowercase();
        let ip_ok = self.by_ip.check_key(&ip).is_ok();
        let here_ok = self.by_name_and_ip.check_key(&(name.clone(), ip)).is_ok();
        let name_ok = self.by_name.check_key(&name).is_ok();
        ip_ok && here_ok && name_ok
    }
}

/// The console's routes, mounted at `/console`.
pub fn routes() -> impl Endpoint {
    Route::new()
        .at("/", poem::get(shell))
        .at("/sign-in", poem::get(sign_in_page).post(sign_in))
        .at("/sign-out", poem::post(sign_out))
        .at("/assets/console.js", poem::get(script))
        .at("/assets/console.css", poem::get(stylesheet))
        .data(SignInLimits::new())
        .with(super::BodyLimit(MAX_FORM))
        .around(|ep, req| async move {
            let response = ep.call(req).await?.into_response();
            Ok(secured(response))
        })
}

/// The security headers every console response carries.
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        headers.insert(name, value.parse().expect("a valid header value"));
    }
    response
}

fn html(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
}

fn redirect(to: &str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to)
        .header(header::CACHE_CONTROL, "no-store")
        .finish()
}

/// The console, with the session's CSRF token for its requests, or the
/// sign-in page for a request without a live session.
#[handler]
async fn shell(req: &Request, operators: Data<&Operators>) -> Response {
    match session_cookie(req) {
        Some(token) if matches!(operators.authenticate(&token).await, Ok(Some(_))) => {
            let csrf = crate::operators::csrf_token(&token);
            html(
                StatusCode::OK,
                CONSOLE_HTML.replace("{{csrf_token}}", &csrf),
            )
        }
        _ => redirect("/console/sign-in"),
    }
}

#[handler]
fn sign_in_page() -> Response {
    html(StatusCode::OK, SIGN_IN_HTML.replace("{{error}}", ""))
}

fn sign_in_failed(status: StatusCode, message: &str) -> Response {
    let error = format!(r#"<p class="error">{}</p>"#, escape(message));
    html(status, SIGN_IN_HTML.replace("{{error}}", &error))
}

#[derive(Deserialize)]
struct Credentials {
    name: String,
    password: String,
}

#[handler]
async fn sign_in(
    req: &Request,
    Form(credentials): Form<Credentials>,
    operators: Data<&Operators>,
    keeper: Data<&Gatekeeper>,
    limits: Data<&SignInLimits>,
) -> Response {
    let ip = client_ip(req, &keeper.trusted_proxies);
    if !from_own_page(req) {
        tracing::warn!(%ip, "console sign-in posted from another site's page");
        return sign_in_failed(
            StatusCode::FORBIDDEN,
            "Sign in from the console's own page.",
        );
    }
    if !limits.allow(ip, &credentials.name) {
        tracing::warn!(%ip, "console sign-in attempts over the limit");
        let mut response = sign_in_failed(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts; wait a minute and try again.",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, "60".parse().expect("a header value"));
        return response;
    }
    let Ok(Ok(_check)) =
        tokio::time::timeout(CHECK_WAIT, limits.checks.clone().acquire_owned()).await
    else {
        return sign_in_failed(
            StatusCode::SERVICE_UNAVAILABLE,
            "Signing in is not possible right now; try again shortly.",
        );
    };
    let operator = match operators
        .sign_in(&credentials.name, &credentials.password)
        .await
    {
        Ok(Some(operator)) => operator,
        Ok(None) => {
            tracing::info!(%ip, "console sign-in refused");
            return sign_in_failed(StatusCode::UNAUTHORIZED, WRONG);
        }
        Err(err) => {
            tracing::warn!(error = %err, "console sign-in failed");
            return sign_in_failed(
                StatusCode::SERVICE_UNAVAILABLE,
                "Signing in is not possible right now; try again shortly.",
            );
        }
    };
    match operators.start_session(&operator).await {
        Ok(token) => {
            tracing::info!(operator = operator.name, "console session started");
            let mut response = redirect("/console#/overview");
            let cookie = format!(
                "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                crate::operators::SESSION_TTL.num_seconds(),
                if over_tls(req, &keeper) {
                    "; Secure"
                } else {
                    ""
                },
            );
            response.headers_mut().insert(
                header::SET_COOKIE,
                cookie.parse().expect("a cookie is a header value"),
            );
            response
        }
        Err(err) => {
            tracing::warn!(error = %err, "could not start a console session");
            sign_in_failed(
                StatusCode::SERVICE_UNAVAILABLE,
                "Signing in is not possible right now; try again shortly.",
            )
        }
    }
}

/// Ends the session (needs its CSRF token, like every change) and clears
/// the cookie.
#[handler]
async fn sign_out(req: &Request, operators: Data<&Operators>) -> Response {
    let Some(session) = session_cookie(req) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let sent = req.header("x-csrf-token").unwrap_or_default();
    if !crate::operators::csrf_matches(&session, sent) {
        return poem::error::ResponseError::as_response(&super::error::ApiError::CsrfTokenInvalid);
    }
    if let Err(err) = operators.end_session(&session).await {
        tracing::warn!(error = %err, "could not end a console session");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )
        .finish()
}

/// Whether a sign-in form was posted from the console's own page, not
/// from another site's (which could sign a visitor in as someone else):
/// the browser's `Sec-Fetch-Site`, or, from a browser that does not send
/// it, an `Origin` naming this host. A request with neither (a script,
/// `curl`) is let through: it has no visitor to trick.
fn from_own_page(req: &Request) -> bool {
    if let Some(site) = req.header("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = req.header(header::ORIGIN) else {
        return true;
    };
    let host = req.header(header::HOST).unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| !host.is_empty() && authority.eq_ignore_ascii_case(host))
}

/// Whether the request reached payorch over TLS: only a trusted proxy's
/// `X-Forwarded-Proto` says so (payorch itself listens in plain HTTP).
fn over_tls(req: &Request, keeper: &Gatekeeper) -> bool {
    let peer = req.remote_addr().as_socket_addr().map(|addr| addr.ip());
    let trusted = peer.is_some_and(|ip| keeper.trusted_proxies.iter().any(|net| net.contains(&ip)));
    trusted
        && req
            .header("x-forwarded-proto")
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

fn asset(content_type: &str, body: &'static str) -> Response {
    Response::builder()
        .content_type(content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
}

#[handler]
fn script() -> Response {
    asset("text/javascript; charset=utf-8", CONSOLE_JS)
}

#[handler]
fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", CONSOLE_CSS)
}

/// `text` safe inside HTML text and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_text_cannot_open_a_tag_or_leave_an_attribute() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
    }

    #[test]
    fn only_a_session_shaped_cookie_is_read() {
        let session = format!("pos_{}", "a".repeat(64));
        let with = |cookie: &str| Request::builder().header(header::COOKIE, cookie).finish();
        assert_eq!(
            session_cookie(&with(&format!("theme=dark; {COOKIE}={session}"))),
            Some(session.clone())
        );
        let token = format!("pot_{}", "a".repeat(64));
        assert_eq!(session_cookie(&with(&format!("{COOKIE}={token}"))), None);
        assert_eq!(session_cookie(&with("payorch_session=x")), None);
    }
}
