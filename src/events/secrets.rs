//! Endpoint signing secrets at rest: `webhook_endpoints.secret` and
//! `previous_secret` hold values sealed by [`crate::sealing`], each bound
//! to its endpoint id and column, so a value copied to another row (or
//! from `secret` to `previous_secret`) does not open.
//!
//! Rows written before sealing existed hold the secret in clear; they are
//! still read, and [`EndpointSecrets::reseal`] seals them — at every start
//! ([`Reseal::PlainOnly`]) and in `payorch secrets rotate`
//! ([`Reseal::NotCurrent`], which also moves values off the retired key).

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use crate::{
    sealing::{Keyring, OpenError, OpenedWith},
    secret::Secret,
    store::endpoints::{self, Endpoint},
};

/// Which column a value is kept in (part of what it is bound to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Secret,
    PreviousSecret,
}

impl Column {
    fn name(self) -> &'static str {
        match self {
            Column::Secret => "secret",
            Column::PreviousSecret => "previous_secret",
        }
    }
}

/// What a value is bound to: its table, column and row.
fn bound_to(id: Uuid, column: Column) -> Vec<u8> {
    format!("webhook_endpoints.{}:{id}", column.name()).into_bytes()
}

/// Which rows [`EndpointSecrets::reseal`] rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseal {
    /// Only values still in clear (at every start).
    PlainOnly,
    /// Every value not sealed under the current key (`payorch secrets rotate`).
    NotCurrent,
}

/// What a re-sealing pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Rows looked at.
    pub checked: u64,
    /// Rows rewritten under the current key.
    pub resealed: u64,
    /// Rows with a value no configured key opens (left as they are).
    pub unreadable: u64,
}

/// Seals and opens endpoint secrets with the installation's keyring.
#[derive(Clone, Debug)]
pub struct EndpointSecrets {
    keyring: Keyring,
}

impl EndpointSecrets {
    pub fn new(keyring: Keyring) -> EndpointSecrets {
        EndpointSecrets { keyring }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// `plain` sealed for endpoint `id`'s `column`.
    pub fn seal(&self, id: Uuid, column: Column, plain: &str) -> String {
        self.keyring.seal(plain, &bound_to(id, column))
    }

    /// The endpoint's value in `column`, opened.
    pub fn open(&self, id: Uuid, column: Column, stored: &str) -> Result<Secret, OpenError> {
        Ok(self.keyring.open(stored, &bound_to(id, column))?.secret)
    }

    /// The secrets that sign a delivery at `now`: the current one, and the
    /// one before a rotation while its overlap lasts.
    pub fn signing(
        &self,
        endpoint: &Endpoint,
        now: DateTime<Utc>,
    ) -> Result<Vec<Secret>, OpenError> {
        let mut secrets = vec![self.open(endpoint.id, Column::Secret, &endpoint.secret)?];
        if let (Some(previous), Some(until)) =
            (&endpoint.previous_secret, endpoint.previous_secret_until)
            && now < until
        {
            secrets.push(self.open(endpoint.id, Column::PreviousSecret, previous)?);
        }
        Ok(secrets)
    }

    /// Rewrites `which` rows under the current key. Each row is replaced
    /// only if it still holds what was read (a secret rotated meanwhile
    /// is left to the next pass), so it is safe beside running processes.
    pub async fn reseal(
        &self,
        db: &DatabaseConnection,
        which: Reseal,
    ) -> Result<ResealReport, DbErr> {
        let rows = match which {
            Reseal::PlainOnly => endpoints::with_plain_secrets(db).await?,
            Reseal::NotCurrent => endpoints::all_secrets(db).await?,
        };
        let mut report = ResealReport::default();
        for row in rows {
            report.checked += 1;
            let secret = self
                .keyring
                .open(&row.secret, &bound_to(row.id, Column::Secret));
            let previous = row.previous_secret.as_deref().map(|stored| {
                self.keyring
                    .open(stored, &bound_to(row.id, Column::PreviousSecret))
            });
            let (secret, previous) = match (secret, previous.transpose()) {
                (Ok(secret), Ok(previous)) => (secret, previous),
                (Err(err), _) | (_, Err(err)) => {
                    tracing::warn!(endpoint = %row.id, error = %err, "an endpoint secret no configured key opens");
                    report.unreadable += 1;
                    continue;
                }
            };
            let due = |with: OpenedWith| match which {
                Reseal::PlainOnly => with == OpenedWith::Plain,
                Reseal::NotCurrent => with != OpenedWith::Current,
            };
            if !due(secret.with) && !previous.as_ref().is_some_and(|p| due(p.with)) {
                continue;
            }
            let sealed_secret = self.seal(row.id, Column::Secret, secret.secret.expose());
            let sealed_previous =
                previous.map(|p| self.seal(row.id, Column::PreviousSecret, p.secret.expose()));
            if endpoints::replace_secrets(db, &row, sealed_secret, sealed_previous).await? {
                report.resealed += 1;
            }
        }
        Ok(report)
    }
}
