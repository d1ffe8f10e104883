//! How a delivery leaves payorch, so that the SSRF guard sees where it
//! goes.
//!
//! The delivery client never takes a proxy from the environment
//! (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, as HTTP clients usually do):
//! through a proxy it is the proxy that resolves the endpoint's name, not
//! [`ssrf::GuardedResolver`], so a proxy picked up by accident would open
//! every private address to merchants' URLs. Without a proxy the client
//! connects itself, resolving names through the guarded resolver.
//!
//! An operator who needs one names it in `PAYORCH_EVENT_PROXY` (checked
//! at startup, `crate::config::EventProxy`). Then every delivery goes
//! through it, and because the client only ever connects to the proxy,
//! the endpoint is checked before each send instead
//! ([`ssrf::check_for_proxy`]): its name must resolve, here and now, and
//! only to allowed addresses. The proxy resolves the name again with its
//! own DNS; that second answer is the proxy's to police
//! (docs/operations.md says so).

use std::sync::Arc;

use reqwest::Url;

use super::ssrf::{self, UrlError};

/// The delivery client and the check that goes with its route.
#[derive(Clone)]
pub struct Egress {
    http: reqwest::Client,
    allow_private: bool,
    /// Deliveries go through `PAYORCH_EVENT_PROXY`.
    proxied: bool,
}

impl Egress {
    /// Builds the client from `client` (timeouts, pool, user agent):
    /// through `proxy` when there is one, otherwise direct, never through
    /// a proxy of the environment.
    pub fn new(client: reqwest::ClientBuilder, allow_private: bool, proxy: Option<&Url>) -> Egress {
        let mut client = client.no_proxy();
        match proxy {
            Some(proxy) => {
                let proxy = reqwest::Proxy::all(proxy.clone())
                    .expect("PAYORCH_EVENT_PROXY was checked at startup");
                client = client.proxy(proxy);
            }
            // The guarded resolver would also resolve the proxy's own
            // name, which is often private: only without one.
            None if !allow_private => {
                client = client.dns_resolver(Arc::new(ssrf::GuardedResolver));
            }
            None => {}
        }
        Egress {
            http: client
                .build()
                .expect("building the event delivery HTTP client"),
            allow_private,
            proxied: proxy.is_some(),
        }
    }

    /// What must hold of `url` before a delivery is sent to it: an address
    /// literal is allowed; through a proxy, the name resolves only to
    /// allowed addresses (directly, the resolver checks names as it
    /// connects).
    pub async fn check(&self, url: &Url) -> Result<(), UrlError> {
        if self.proxied {
            ssrf::check_for_proxy(url, self.allow_private).await
        } else {
            ssrf::check_literal(url, self.allow_private)
        }
    }

    /// A `POST` to `url`; call [`Egress::check`] first.
    pub fn post(&self, url: Url) -> reqwest::RequestBuilder {
        self.http.post(url)
    }
}
