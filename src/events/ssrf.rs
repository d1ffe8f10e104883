//! Where merchant events may be sent. An endpoint URL must be `http(s)`;
//! unless private endpoints are allowed, a URL that resolves to a
//! loopback, private, link-local, shared, multicast or unspecified address
//! is refused — at registration, and again at delivery, where the HTTP
//! client resolves names through [`GuardedResolver`] (DNS can change
//! between the two, and a check before connecting could be raced).

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `ip` is somewhere a public endpoint cannot be.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                // 100.64.0.0/10, carrier-grade NAT.
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

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
    #[error("resolves to a loopback, private, link-local or unspecified address")]
    Private,
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
/// checks again when it connects.
pub async fn check(url: &reqwest::Url, allow_private: bool) -> Result<(), UrlError> {
    if allow_private {
        return Ok(());
    }
    if let Some(ip) = literal(url) {
        return if is_forbidden(ip) {
            Err(UrlError::Private)
        } else {
            Ok(())
        };
    }
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let resolved =
        tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await;
    match resolved {
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if !addrs.is_empty() && addrs.iter().all(|a| is_forbidden(a.ip())) {
                Err(UrlError::Private)
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
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
    fn private_and_local_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "100.128.0.1",
            "172.32.0.1",
        ] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

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
}
