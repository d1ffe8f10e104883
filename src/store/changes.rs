//! A set of changes written in one statement (PostgreSQL): the webhooks'
//! dedup rows, the payments' versioned updates, their audit rows and their
//! merchant events, as the sub-statements of one data-modifying `WITH`,
//! so a change costs one round trip inside its transaction instead of
//! four. The caller's transaction still decides: the counts say whether
//! every dedup row was new and every payment was still at the version read,
//! and if not, the caller rolls everything back.
//!
//! A change with no dedup row can also be written on its own, outside any
//! transaction ([`write_alone`]): one statement is atomic by itself, and
//! its inserts are made conditional on every versioned update matching, so
//! a payment that moved on leaves nothing written and nothing to roll
//! back. That saves the `BEGIN` and `COMMIT` round trips of a request's
//! change (an initialize's checkout, a verify).

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
    Ok(statement(db, set, false, None).await?.0)
}

/// Writes `set`, which records no webhook, as one statement standing on
/// its own (no transaction needed): its audit rows and merchant events are
/// inserted only if every payment was still at the version read. So either
/// [`Written::updated`] counts every payment of the set and all of it is
/// written, or nothing is. `beside`, an `UPDATE` (an Idempotency-Key's
/// answer), runs under the same condition; its rows are counted apart.
pub async fn write_alone(
    db: &impl ConnectionTrait,
    set: ChangeSet<'_>,
    beside: Option<Statement>,
) -> Result<(Written, u64), DbErr> {
    if !set.recorded.is_empty() {
        return Err(DbErr::Custom(
            "a change recording webhooks needs its transaction".into(),
        ));
    }
    if set.changed.is_empty() {
        // Nothing to condition the inserts on.
        return Err(DbErr::Custom(
            "a change on its own must update a payment".into(),
        ));
    }
    statement(db, set, true, beside).await
}

async fn statement(
    db: &impl ConnectionTrait,
    set: ChangeSet<'_>,
    guarded: bool,
    beside: Option<Statement>,
) -> Result<(Written, u64), DbErr> {
    // The inserts' condition, when guarded: every payment updated.
    let guard = guarded.then(|| format!("(SELECT count(*) FROM updated) = {}", set.changed.len()));
    let insert = |statement: Statement| match &guard {
        Some(guard) => only_if(statement, guard),
        None => Ok(statement),
    };
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
        let rows = payment_transition::Entity::insert_many(set.transitions);
        with.add("audited", insert(rows.build(DbBackend::Postgres))?, "");
    }
    if !set.merchant_events.is_empty() {
        let rows = set
            .merchant_events
            .into_iter()
            .map(event::ActiveModel::from);
        let rows = event::Entity::insert_many(rows);
        with.add("announced", insert(rows.build(DbBackend::Postgres))?, "");
    }
    let beside = match beside {
        Some(update) => {
            let update = match &guard {
                Some(guard) => update_only_if(update, guard)?,
                None => update,
            };
            Some(with.add("beside", update, "RETURNING 1"))
        }
        None => None,
    };
    let count = |name: Option<&'static str>| match name {
        Some(name) => format!("(SELECT count(*) FROM {name})"),
        None => "0::bigint".to_owned(),
    };
    let sql = format!(
        "WITH {} SELECT {} AS recorded, {} AS updated, {} AS beside",
        with.parts.join(", "),
        count(recorded),
        count(updated),
        count(beside),
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
    let written = Written {
        recorded: counted("recorded")?,
        updated: counted("updated")?,
    };
    Ok((written, counted("beside")?))
}

/// `INSERT INTO t (…) VALUES (…), …` as `INSERT INTO t (…) SELECT * FROM
/// (VALUES (…), …) AS v WHERE condition`: the same rows, or none. Every
/// value is a bound, typed placeholder, so the rows' types are what the
/// plain insert would have coerced.
fn only_if(insert: Statement, condition: &str) -> Result<Statement, DbErr> {
    let unexpected = || DbErr::Custom(format!("not a plain multi-row insert: {}", insert.sql));
    let (head, rows) = insert.sql.split_once(" VALUES ").ok_or_else(unexpected)?;
    if !head.starts_with("INSERT INTO ") || rows.contains("DEFAULT") || rows.contains("RETURNING") {
        return Err(unexpected());
    }
    let sql = format!("{head} SELECT * FROM (VALUES {rows}) AS v WHERE {condition}");
    Ok(Statement { sql, ..insert })
}

/// `UPDATE t SET … WHERE conditions` as `UPDATE t SET … WHERE
/// (conditions) AND condition`.
fn update_only_if(update: Statement, condition: &str) -> Result<Statement, DbErr> {
    let unexpected = || DbErr::Custom(format!("not a plain update: {}", update.sql));
    let (head, conditions) = update.sql.split_once(" WHERE ").ok_or_else(unexpected)?;
    if !head.starts_with("UPDATE ") || conditions.contains("RETURNING") {
        return Err(unexpected());
    }
    let sql = format!("{head} WHERE ({conditions}) AND {condition}");
    Ok(Statement { sql, ..update })
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
    use sea_orm::{DbBackend, Statement};

    use super::{only_if, renumbered, update_only_if};

    #[test]
    fn a_guarded_update_keeps_its_own_conditions_whole() {
        let update = Statement::from_sql_and_values(
            DbBackend::Postgres,
            r#"UPDATE "k" SET "a" = $1 WHERE "k"."b" = $2 OR "k"."c" = $3"#,
            [1.into(), 2.into(), 3.into()],
        );
        let guarded = update_only_if(update, "(SELECT count(*) FROM updated) = 1").unwrap();
        assert_eq!(
            guarded.sql,
            r#"UPDATE "k" SET "a" = $1 WHERE ("k"."b" = $2 OR "k"."c" = $3) AND (SELECT count(*) FROM updated) = 1"#
        );
        for sql in [
            r#"UPDATE "k" SET "a" = $1"#,
            r#"INSERT INTO "k" ("a") VALUES ($1)"#,
            r#"UPDATE "k" SET "a" = $1 WHERE "k"."b" = $2 RETURNING "a""#,
        ] {
            let statement = Statement::from_string(DbBackend::Postgres, sql);
            assert!(update_only_if(statement, "true").is_err(), "{sql}");
        }
    }

    #[test]
    fn a_guarded_insert_keeps_its_rows_and_values_behind_the_condition() {
        let insert = Statement::from_sql_and_values(
            DbBackend::Postgres,
            r#"INSERT INTO "t" ("a", "b") VALUES ($1, $2), ($3, $4)"#,
            [1.into(), 2.into(), 3.into(), 4.into()],
        );
        let guarded = only_if(insert, "(SELECT count(*) FROM updated) = 1").unwrap();
        assert_eq!(
            guarded.sql,
            r#"INSERT INTO "t" ("a", "b") SELECT * FROM (VALUES ($1, $2), ($3, $4)) AS v WHERE (SELECT count(*) FROM updated) = 1"#
        );
        assert_eq!(guarded.values.map(|v| v.0.len()), Some(4));
    }

    #[test]
    fn only_a_plain_multi_row_insert_is_guarded() {
        for sql in [
            r#"UPDATE "t" SET "a" = $1"#,
            r#"INSERT INTO "t" ("a") VALUES (DEFAULT)"#,
            r#"INSERT INTO "t" ("a") VALUES ($1) RETURNING "a""#,
        ] {
            let statement = Statement::from_string(DbBackend::Postgres, sql);
            assert!(only_if(statement, "true").is_err(), "{sql}");
        }
    }

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
