//! [`EventProxy`]: `PAYORCH_EVENT_PROXY`, the proxy merchant event
//! deliveries go through (see `crate::events::egress`), checked to be an
//! `http` or `https` URL reqwest accepts as a proxy, and printed without
//! its credentials.

use std::{fmt, str::FromStr};

use reqwest::Url;

/// `PAYORCH_EVENT_PROXY`: an `http` or `https` proxy for merchant event
/// deliveries, printed without its credentials.
#[derive(Clone)]
pub struct EventProxy(Url);

impl EventProxy {
    pub fn url(&self) -> &Url {
        &self.0
    }
}

impl FromStr for EventProxy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "unsupported scheme `{}` (use http://… or https://…)",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("a proxy URL needs a host".into());
        }
        reqwest::Proxy::all(url.clone()).map_err(|e| format!("not a proxy URL ({e})"))?;
        Ok(EventProxy(url))
    }
}

impl fmt::Debug for EventProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EventProxy({}://{}:{})",
            self.0.scheme(),
            self.0.host_str().unwrap_or_default(),
            self.0.port_or_known_default().unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_proxy_is_an_http_or_https_url_printed_without_credentials() {
        for good in ["http://proxy.internal:3128", "https://10.0.0.5:8443/"] {
            assert!(good.parse::<EventProxy>().is_ok(), "{good}");
        }
        for bad in [
            "proxy.internal:3128",
            "not a url",
            "socks5://proxy.internal:1080",
            "ftp://proxy.internal/",
            "http://",
        ] {
            assert!(bad.parse::<EventProxy>().is_err(), "{bad}");
        }
        let proxy: EventProxy = "http://user:hunter2@proxy.internal:3128".parse().unwrap();
        let printed = format!("{proxy:?}");
        assert_eq!(printed, "EventProxy(http://proxy.internal:3128)");
    }
}
