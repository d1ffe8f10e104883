//! Operators: the people who settle what payorch could not settle by
//! itself. One core for the command line (`payorch operator …`, `payorch
//! reviews resolve`) and the operator API (`/v1/operator/…`), so that
//! whichever way an operator acts, the same rules apply and the same audit
//! row is written.
//!
//! - An operator has a name and a generated password, shown once and kept
//!   as an argon2id hash ([`password`]), for the console's sign-in.
//! - Bearer tokens (`payorch operator token NAME`) are kept as their
//!   SHA-256 ([`crate::store::operators`]); disabling an operator revokes
//!   every token it holds, and authentication checks both on every request.
//! - Every action is appended to `operator_audit` with who acted
//!   ([`Actor`]: `operator:NAME` through the API, `cli:USER` at the command
//!   line), what, on what, and the note. Managing operators writes its row
//!   in the same transaction as the change; resolving a review writes it
//!   right after the payment core committed the resolution (the review row
//!   itself records who, when, the action and the note in that commit).

pub mod clients;
pub mod endpoints;
pub mod password;
pub mod payments;

use std::{fmt, sync::OnceLock};

use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use crate::{
    domain::ReviewAction,
    payments::{Payments, ReviewError, is_unique_violation},
    queue::{QueueError, WebhookQueue},
    store::{
        self,
        operators::{self as rows, AuditEntry, NewAuditEntry, Operator},
        reviews::{self, Review, ReviewFilter},
    },
};

/// Who acts, as the audit log and a resolved review name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An operator, through the operator API: `operator:NAME`.
    Operator(String),
    /// Someone at the command line: `cli:USER`, or `cli` without `$USER`.
    Cli(Option<String>),
}

impl Actor {
    /// The person running this process (`$USER`).
    pub fn cli_user() -> Actor {
        Actor::Cli(std::env::var("USER").ok().filter(|user| !user.is_empty()))
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Operator(name) => write!(f, "operator:{name}"),
            Actor::Cli(Some(user)) => write!(f, "cli:{user}"),
            Actor::Cli(None) => f.write_str("cli"),
        }
    }
}

/// An operator's name: 1 to 64 ASCII letters, digits and `. _ - @`, so
/// that `operator:NAME` reads unambiguously in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorName(String);

impl OperatorName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(name: &str) -> Result<OperatorName, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
        if name.is_empty() || name.len() > Self::MAX_LEN || !name.chars().all(allowed) {
            return Err(format!(
                "1 to {} letters, digits and . _ - @",
                Self::MAX_LEN
            ));
        }
        Ok(OperatorName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("no operator named {0}")]
    NotFound(String),
    #[error("an operator named {0} exists already")]
    NameTaken(String),
    #[error("operator {0} is disabled")]
    Disabled(String),
    #[error(transparent)]
    Password(#[from] password::HashError),
    #[error("database: {0}")]
    Database(#[from] DbErr),
}

/// Why parked messages could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("database: {0}")]
    Database(#[from] DbErr),
}

/// The operator core: operators, their tokens, their actions.
#[derive(Clone)]
pub struct Operators {
    db: DatabaseConnection,
}

impl Operators {
    pub fn new(db: DatabaseConnection) -> Operators {
        Operators { db }
    }

    /// Creates an operator with a generated password, returned to be shown
    /// once (only its argon2id hash is stored).
    pub async fn create(
        &self,
        name: &OperatorName,
        by: &Actor,
    ) -> Result<(Operator, String), OperatorError> {
        let password = password::generate();
        let hash = {
            let password = password.clone();
            tokio::task::spawn_blocking(move || password::hash(&password))
                .await
                .expect("hashing a password does not panic")?
        };
        let txn = store::begin_write(&self.db).await?;
        let operator = match rows::create(&txn, name.as_str(), &hash).await {
            Err(err) if is_unique_violation(&err) => {
                return Err(OperatorError::NameTaken(name.as_str().to_owned()));
            }
            created => created?,
        };
        audit(
            &txn,
            by,
            "operator.create",
            &operator_target(name.as_str()),
            None,
        )
        .await?;
        txn.commit().await?;
        Ok((operator, password))
    }

    /// Disables the operator `name` and revokes its tokens at once;
    /// `false` when it was disabled already (nothing written).
    pub async fn disable(&self, name: &str, by: &Actor) -> Result<bool, OperatorError> {
        let txn = store::begin_write(&self.db).await?;
        let operator = rows::find_by_name(&txn, name)
            .await?
            .ok_or_else(|| OperatorError::NotFound(name.to_owned()))?;
        let disabled = rows::disable(&txn, operator.id).await?;
        if disabled {
            audit(&txn, by, "operator.disable", &operator_target(name), None).await?;
        }
        txn.commit().await?;
        Ok(disabled)
    }

    /// Issues a bearer token for the enabled operator `name`, returned to
    /// be shown once (only its hash is stored).
    pub async fn issue_token(
        &self,
        name: &str,
        by: &Actor,
    ) -> Result<(Operator, String), OperatorError> {
        let txn = store::begin_write(&self.db).await?;
        let row = rows::find_by_name(&txn, name)
            .await?
            .ok_or_else(|| OperatorError::NotFound(name.to_owned()))?;
        if row.disabled_at.is_some() {
            return Err(OperatorError::Disabled(name.to_owned()));
        }
        let (token_id, token) = rows::issue_token(&txn, row.id).await?;
        audit(
            &txn,
            by,
            "operator.token",
            &operator_target(name),
            Some(&format!("token {token_id}")),
        )
        .await?;
        txn.commit().await?;
        Ok((Operator::from(row), token))
    }

    /// The enabled operator holding the unrevoked bearer `token`, or the
    /// unexpired console session `token`.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Operator>, DbErr> {
        rows::authenticate(&self.db, token).await
    }

    /// Starts a console session for `operator` (signed in), audited as
    /// `console.sign_in`: the session token for the cookie.
    pub async fn start_session(&self, operator: &Operator) -> Result<String, DbErr> {
        let token = rows::issue_session(&self.db, operator.id, SESSION_TTL).await?;
        audit(
            &self.db,
            &Actor::Operator(operator.name.clone()),
            "console.sign_in",
            &operator_target(&operator.name),
            None,
        )
        .await?;
        Ok(token)
    }

    /// Ends the console session `token` (signed out).
    pub async fn end_session(&self, token: &str) -> Result<bool, DbErr> {
        rows::revoke_token(&self.db, token).await
    }

    /// The enabled operator `name` if `password` is theirs (the console's
    /// sign-in). An unknown name costs the same argon2 work as a known
    /// one, so the answer's timing does not tell which names exist.
    pub async fn sign_in(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<Operator>, OperatorError> {
        static UNKNOWN: OnceLock<String> = OnceLock::new();
        let row = rows::find_by_name(&self.db, name).await?;
        let stored = row.as_ref().map(|row| row.password_hash.clone());
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || {
            let phc = stored.unwrap_or_else(|| {
                UNKNOWN
                    .get_or_init(|| password::hash(&password::generate()).unwrap_or_default())
                    .clone()
            });
            password::verify(&password, &phc)
        })
        .await
        .expect("verifying a password does not panic");
        Ok(row
            .filter(|row| matches && row.disabled_at.is_none())
            .map(Operator::from))
    }

    /// Reviews as `filter` asks, oldest first.
    pub async fn reviews(&self, filter: ReviewFilter<'_>) -> Result<Vec<Review>, ReviewError> {
        Ok(reviews::list_where(&self.db, filter).await?)
    }

    pub async fn review(&self, id: Uuid) -> Result<Review, ReviewError> {
        reviews::find(&self.db, id)
            .await?
            .ok_or(ReviewError::NotFound)
    }

    /// Resolves the review `id` as `by` decides, through the payment core
    /// ([`Payments::resolve_review`]: the rules of which action fits which
    /// review, the money, the record on the review), then appends the
    /// decision to the audit log as `review.<action>` on `review:<id>`.
    pub async fn resolve_review(
        &self,
        payments: &Payments,
        id: Uuid,
        action: ReviewAction,
        by: &Actor,
        note: Option<String>,
    ) -> Result<Review, ReviewError> {
        let resolved = payments
            .resolve_review(id, action, &by.to_string(), note.clone())
            .await?;
        audit(
            &self.db,
            by,
            &format!("review.{}", action.as_str()),
            &format!("review:{id}"),
            note.as_deref(),
        )
        .await?;
        Ok(resolved)
    }

    /// Moves parked messages of `queue` (`name` in the audit log:
    /// `webhooks`, `events`) back to be handled again with a fresh attempt
    /// count — all of them, or the one whose identity is `only` — and
    /// records it as `dead_letters.replay` on `queue:NAME` (or
    /// `queue:NAME/ID`). How many moved.
    pub async fn replay_dead_letters(
        &self,
        queue: &WebhookQueue,
        name: &str,
        only: Option<&str>,
        by: &Actor,
    ) -> Result<usize, ReplayError> {
        let moved = queue.replay(only).await?;
        let target = match only {
            Some(id) => format!("queue:{name}/{id}"),
            None => format!("queue:{name}"),
        };
        let note = format!("{moved} message(s) replayed");
        audit(&self.db, by, "dead_letters.replay", &target, Some(&note)).await?;
        Ok(moved)
    }

    /// The audit log, newest first.
    pub async fn audit_log(&self, limit: u64) -> Result<Vec<AuditEntry>, DbErr> {
        rows::audit_log(&self.db, limit).await
    }
}

/// How long a console session lasts after sign-in.
pub const SESSION_TTL: chrono::Duration = chrono::Duration::hours(12);

/// The CSRF token of the console session `session`: derived from it (a
/// page of another site can read neither), sent back by the console in
/// `X-CSRF-Token` on every request.
pub fn csrf_token(session: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!("payorch-csrf:{session}").as_bytes()))
}

/// Whether `sent` is the CSRF token of the session `session` (compared
/// in constant time).
pub fn csrf_matches(session: &str, sent: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(sent.as_bytes().ct_eq(csrf_token(session).as_bytes()))
}

fn operator_target(name: &str) -> String {
    format!("operator:{name}")
}

async fn audit(
    db: &impl sea_orm::ConnectionTrait,
    by: &Actor,
    action: &str,
    target: &str,
    note: Option<&str>,
) -> Result<AuditEntry, DbErr> {
    rows::record(
        db,
        NewAuditEntry {
            operator: &by.to_string(),
            action,
            target,
            note,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_read_as_the_audit_log_names_them() {
        assert_eq!(
            Actor::Operator("alice".into()).to_string(),
            "operator:alice"
        );
        assert_eq!(Actor::Cli(Some("bob".into())).to_string(), "cli:bob");
        assert_eq!(Actor::Cli(None).to_string(), "cli");
    }

    #[test]
    fn operator_names_are_short_and_plain() {
        for good in ["alice", "ops.on-call_1", "a@example.com", &"x".repeat(64)] {
            assert!(OperatorName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "al ice", "alice:admin", "ālice", &"x".repeat(65), "a/b"] {
            assert!(OperatorName::parse(bad).is_err(), "{bad}");
        }
    }
}
