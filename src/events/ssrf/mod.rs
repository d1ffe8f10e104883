//! Where merchant events may be sent. An endpoint URL must be `http(s)`;
//! unless private endpoints are allowed, a URL on an address of
//! [`ranges`] (loopback, private, link-local, shared, multicast,
//! unspecified, and every other special-purpose block) is refused — at
//! registration, and again at delivery, where the HTTP client resolves
//! names through [`GuardedResolver`] (DNS can change between the two, and
//! a check before connecting could be raced). A delivery through an
//! operator's proxy, which resolves the name itself, is checked with
//! [`check_for_proxy`] before it is sent (see [`super::egress`]).
//!
//! A name that does not resolve at registration is accepted: it may be a
//! merchant's endpoint not yet in DNS. Nothing is sent to it until it
//! resolves, and then only to allowed addresses: directly, the guarded
//! resolver drops the forbidden ones; through a proxy, [`check_for_proxy`]
//! refuses the delivery unless every address is allowed.

mod ranges;

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

pub use self::ranges::is_forbidden;

/// The longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why an endpoint URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must be an absolute http or https URL")]
    Invalid,
    #[error("must use http or https")]
    Scheme,
    #[error("must be at most {MAX_URL_LEN} characters")]
    TooLong,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error(
        "resolves to a forbidden address (loopback, private, link-local or another special-purpose block)"
    )]
    Private,
    #[error("does not resolve")]
    Unresolved,
}

/// Parses and checks the form of an endpoint URL.
pub fn parse(url: &str) -> Result<reqwest::Url, UrlError> {
    if url.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong);
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| UrlError::Invalid)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UrlError::Scheme);
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::Invalid);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlError::Credentials);
    }
    Ok(parsed)
}

/// The address literal of `url`'s host, if it is one.
fn literal(url: &reqwest::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// Refuses `url` if its host is, or resolves only to, forbidden
/// addresses. A name that does not resolve now is let through: delivery
/// checks again.
pub async fn check(url: &reqwest::Url, allow_private: bool) -> Result<(), UrlError> {
    if allow_private {
        return Ok(());
    }
    if let Some(ip) = literal(url) {
        return forbid(ip);
    }
    match resolve(url).await {
        Some(ips) if !ips.is_empty() && ips.iter().all(|ip| is_forbidden(*ip)) => {
            Err(UrlError::Private)
        }
        _ => Ok(()),
    }
}

/// Before a delivery through a proxy, which resolves `url`'s name with
/// its own DNS: the name must resolve here, and every address it resolves
/// to must be allowed (the proxy may connect to any of them).
pub async fn check_for_proxy(url: &reqwest::Url, allow_private: bool) -> Result<(), UrlError> {
    if allow_private {
        return Ok(());
    }
    if let Some(ip) = literal(url) {
        return forbid(ip);
    }
    match resolve(url).await {
        Some(ips) if ips.is_empty() => Err(UrlError::Unresolved),
        Some(ips) if ips.iter().any(|ip| is_forbidden(*ip)) => Err(UrlError::Private),
        Some(_) => Ok(()),
        None => Err(UrlError::Unresolved),
    }
}

fn forbid(ip: IpAddr) -> Result<(), UrlError> {
    if is_forbidden(ip) {
        Err(UrlError::Private)
    } else {
        Ok(())
    }
}

/// The addresses `url`'s host resolves to; `None` if the look-up failed
/// or took longer than [`RESOLVE_TIMEOUT`].
async fn resolve(url: &reqwest::Url) -> Option<Vec<IpAddr>> {
    let host = url.host_str()?.to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .ok()?
        .ok()?;
    Some(addrs.map(|a| a.ip()).collect())
}

/// Checks the address literal of a URL before sending to it (a name is
/// checked by [`GuardedResolver`] as it connects).
pub fn check_literal(url: &reqwest::Url, allow_private: bool) -> Result<(), UrlError> {
    match literal(url) {
        Some(ip) if !allow_private && is_forbidden(ip) => Err(UrlError::Private),
        _ => Ok(()),
    }
}

/// The system resolver, minus forbidden addresses: a name left with none
/// fails to resolve, so the delivery fails before any connection is made.
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs =
                tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host.as_str(), 0)))
                    .await
                    .map_err(|_| format!("resolving {host} timed out"))??;
            let allowed: Vec<SocketAddr> = addrs.filter(|a| !is_forbidden(a.ip())).collect();
            if allowed.is_empty() {
                return Err(format!("{host} resolves only to forbidden addresses").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_without_credentials_are_endpoints() {
        assert!(parse("https://merchant.example/hooks").is_ok());
        assert_eq!(
            parse("ftp://merchant.example/").unwrap_err(),
            UrlError::Scheme
        );
        assert_eq!(parse("not a url").unwrap_err(), UrlError::Invalid);
        assert_eq!(
            parse("https://u:p@merchant.example/").unwrap_err(),
            UrlError::Credentials
        );
        let long = format!("https://merchant.example/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(parse(&long).unwrap_err(), UrlError::TooLong);
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_unless_allowed() {
        let url = parse("http://localhost:9/hook").unwrap();
        assert_eq!(check(&url, false).await.unwrap_err(), UrlError::Private);
        assert!(check(&url, true).await.is_ok());
        let literal = parse("http://[::1]:9/").unwrap();
        assert_eq!(
            check_literal(&literal, false).unwrap_err(),
            UrlError::Private
        );
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_passes_registration_but_not_a_proxied_delivery() {
        let url = parse("http://payorch-test.invalid/hook").unwrap();
        assert!(check(&url, false).await.is_ok());
        assert_eq!(
            check_for_proxy(&url, false).await.unwrap_err(),
            UrlError::Unresolved
        );
        assert!(check_for_proxy(&url, true).await.is_ok());
    }

    #[tokio::test]
    async fn before_a_proxied_delivery_a_name_on_loopback_is_refused() {
        let url = parse("http://localhost:9/hook").unwrap();
        assert_eq!(
            check_for_proxy(&url, false).await.unwrap_err(),
            UrlError::Private
        );
        let literal = parse("http://[::ffff:10.0.0.1]:9/").unwrap();
        assert_eq!(
            check_for_proxy(&literal, false).await.unwrap_err(),
            UrlError::Private
        );
        assert!(
            check_for_proxy(&parse("http://8.8.8.8/").unwrap(), false)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn the_guarded_resolver_fails_a_name_that_resolves_only_to_loopback() {
        // What a delivery meets when a name accepted at registration (it
        // did not resolve then) later resolves to a private address.
        let name: Name = "localhost".parse().unwrap();
        let err = GuardedResolver.resolve(name).await.err().unwrap();
        assert!(err.to_string().contains("forbidden"), "{err}");
    }
}
