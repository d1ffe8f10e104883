//! [`DatabaseUrl`]: `DATABASE_URL`, checked to be PostgreSQL or SQLite, and
//! printed without its password.

use std::{fmt, str::FromStr};

use reqwest::Url;

/// A database URL whose password is hidden when printed.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }

    /// `host:port` for Postgres or the file for SQLite: what an operator needs
    /// to see in an error, without the credentials.
    pub fn location(&self) -> String {
        match Url::parse(&self.0) {
            Ok(url) if !self.is_sqlite() => format!(
                "{}:{}",
                url.host_str().unwrap_or("localhost"),
                url.port().unwrap_or(5432)
            ),
            _ => self
                .0
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:")
                .split('?')
                .next()
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.location())
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("sqlite:") {
            return Ok(DatabaseUrl(s.to_owned()));
        }
        let url = Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
        match url.scheme() {
            "postgres" | "postgresql" if url.host_str().is_some() => Ok(DatabaseUrl(s.to_owned())),
            "postgres" | "postgresql" => Err("a postgres URL needs a host".into()),
            other => Err(format!(
                "unsupported scheme `{other}` (use postgres://… or sqlite://…)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_vars::config;

    #[test]
    fn secrets_do_not_print() {
        let cfg = config(&[
            ("PAYSTACK_SECRET_KEY", "sk_live_very_secret"),
            ("DATABASE_URL", "postgres://u:hunter2@db.internal:6543/pay"),
            ("PAYORCH_PROVIDER", "sandbox"),
            (
                "PAYORCH_EVENT_PROXY",
                "http://egress:proxy-hunter3@proxy.internal:3128",
            ),
        ])
        .unwrap();
        let printed = format!("{cfg:?}");
        assert!(!printed.contains("sk_live_very_secret"));
        assert!(!printed.contains("hunter2"));
        assert!(!printed.contains("proxy-hunter3"));
        assert!(printed.contains("proxy.internal:3128"));
        assert!(printed.contains("db.internal:6543"));
    }
}
