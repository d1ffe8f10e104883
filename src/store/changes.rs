//! A set of changes written in one statement (PostgreSQL): the webhooks'
//! dedup rows, the payments' versioned updates, their audit rows and their
//! merchant events, as the sub-statements of one data-modifying `WITH`,
//! so a change costs one round trip inside its transaction instead of
//! four. The caller's transaction still decides: the counts say whether
//! every dedup row was new and every payment was still at the version read,
//! and if not, the caller rolls everything back.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryTrait, Statement, Value};

use super::{
    entities::{event, payment_transition},
    events::Event,
    payments::{self, Payment},
    webhooks::{self, WebhookRecord},
};

/// What one change set writes.
pub struct ChangeSet<'a> {
    /// Dedup rows for the webhooks applied, with their outcomes.
    pub recorded: Vec<(&'a WebhookRecord, &'a str)>,
    /// `(read, next)`: each payment as read and as it is to be written.
    pub changed: Vec<(&'a Payment, &'a Payment)>,
    pub transitions: Vec<payment_transition::ActiveModel>,
    pub merchant_events: Vec<Event>,
}

/// How many of the rows asked for were written.
#[derive(Debug, PartialEq, Eq)]
pub struct Written {
    /// Dedup rows that were new.
    pub recorded: u64,
    /// Payments that were still at the version read.
    pub updated: u64,
}

/// Writes `set` in one statement (PostgreSQL only). Each sub-statement
/// runs to completion whatever the others did, so the caller compares
/// [`Written`] with what it asked for and rolls back on a shortfall.
pub async fn write(db: &impl ConnectionTrait, set: ChangeSet<'_>) -> Result<Written, DbErr> {
    let mut with = With::default();
    let recorded = (!set.recorded.is_empty()).then(|| {
        let insert = webhooks::dedup_rows(set.recorded).build(DbBackend::Postgres);
        with.add("recorded", insert, "RETURNING 1")
    });
    let updated = (!set.changed.is_empty()).then(|| {
        let (sql, values) = payments::versioned_values(&set.changed);
        let update = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
        with.add("updated", update, "RETURNING p.id")
    });
    if !set.transitions.is_empty() {
        let insert = payment_transition::Entity::insert_many(set.transitions);
        with.add("audited", insert.build(DbBackend::Postgres), "");
    }
    if !set.merchant_events.is_empty() {
        let rows = set
            .merchant_events
            .into_iter()
            .map(event::ActiveModel::from);
        let insert = event::Entity::insert_many(rows);
        with.add("announced", insert.build(DbBackend::Postgres), "");
    }
    let count = |name: Option<&'static str>| match name {
        Some(name) => format!("(SELECT count(*) FROM {name})"),
        None => "0::bigint".to_owned(),
    };
    let sql = format!(
        "WITH {} SELECT {} AS recorded, {} AS updated",
        with.parts.join(", "),
        count(recorded),
        count(updated),
    );
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            with.values,
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("a change set's counts".into()))?;
    let counted = |column: &str| row.try_get::<i64>("", column).map(|n| n.max(0) as u64);
    Ok(Written {
        recorded: counted("recorded")?,
        updated: counted("updated")?,
    })
}

/// The sub-statements of a `WITH`, their placeholders numbered on from
/// one to the next.
#[derive(Default)]
struct With {
    parts: Vec<String>,
    values: Vec<Value>,
}

impl With {
    /// Adds `statement` (placeholders from `$1`) as the sub-statement
    /// `name`, followed by `tail`; `name` back, to count its rows.
    fn add(&mut self, name: &'static str, statement: Statement, tail: &str) -> &'static str {
        let sql = renumbered(&statement.sql, self.values.len());
        self.parts.push(format!("{name} AS ({sql} {tail})"));
        self.values
            .extend(statement.values.map(|v| v.0).unwrap_or_default());
        name
    }
}

/// `sql` with each placeholder `$n` made `$(n + offset)`. The statements
/// are built with every value bound, so a `$` followed by digits is always
/// a placeholder (identifiers are quoted names of this schema).
fn renumbered(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::renumbered;

    #[test]
    fn placeholders_are_numbered_on_and_nothing_else_moves() {
        assert_eq!(
            renumbered("INSERT INTO t (a, b) VALUES ($1, $2), ($3, $10)", 4),
            "INSERT INTO t (a, b) VALUES ($5, $6), ($7, $14)"
        );
        assert_eq!(renumbered("SELECT $1", 0), "SELECT $1");
        assert_eq!(renumbered("a $ b $x", 3), "a $ b $x");
    }
}
