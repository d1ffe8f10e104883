//! The in-process queue: rows of `queued_messages` in payorch's own database
//! (SQLite in embedded mode, or PostgreSQL without RabbitMQ). Publishing is
//! one committed insert, so an acknowledged webhook survives a stop or a
//! crash; a consumer leases rows, hands them to its handler, and deletes,
//! delays or parks each as the one policy settles the handler's
//! [`Disposition`] (`super::settle`), in the one consumer loop
//! (`super::consumer`).
//!
//! Consumers wake when this process publishes, and otherwise look again
//! every [`POLL`] (for retries coming due, and rows other processes wrote):
//! no hot loop. On PostgreSQL several processes share the table
//! (`FOR UPDATE SKIP LOCKED`); a lease that is not settled in [`LEASE`] —
//! its process died — is taken by the next consumer. Leases are fenced:
//! each takes the row's next `lease` number, and a settlement counts only
//! under the number it was leased with, so a consumer that outlived its
//! lease (a stalled process) changes nothing of a message another now
//! holds. Times are the database's clock (PostgreSQL's `statement_timestamp()`),
//! so processes on hosts with skewed clocks agree on when a lease ends and
//! a retry comes due. A SQLite file belongs to one process, so there the
//! leases left by a crash are released at start.

use std::{future::Future, sync::Arc, time::Duration};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};
use tokio::sync::Notify;

use super::{
    Disposition, Envelope, QueueError, QueueMessage, RetryPolicy, Settlement,
    consumer::{self, Decision, Inbox, Intake, Settler, Take, Taken, Verdict},
};

/// How long a consumer holds a message before another may take it.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often an idle consumer looks for due retries and others' rows.
pub const POLL: Duration = Duration::from_millis(500);

const READY: &str = "ready";
const PARKED: &str = "parked";

#[derive(Clone)]
pub struct TableQueue {
    db: DatabaseConnection,
    /// The queue's name in the table: `{prefix}.webhooks`, `{prefix}.events`.
    name: String,
    prefix: String,
    pub retry: RetryPolicy,
    /// Retries wait up to this much longer, at random.
    jitter_percent: u32,
    /// Wakes this process's consumer when this process publishes.
    published: Arc<Notify>,
    /// How long a consumer holds a message before another may take it.
    lease: Duration,
}

/// A leased message: its row, its lease, when it came due, and what it
/// carries.
struct Leased {
    receipt: Lease,
    due: i64,
    envelope: Envelope,
}

/// A row as one consumer leased it: only this lease settles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    id: i64,
    lease: i64,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl TableQueue {
    pub fn new(db: DatabaseConnection, prefix: &str, retry: RetryPolicy) -> TableQueue {
        TableQueue {
            db,
            name: format!("{prefix}.{}", super::WEBHOOKS),
            prefix: prefix.to_owned(),
            retry,
            jitter_percent: 0,
            published: Arc::new(Notify::new()),
            lease: LEASE,
        }
    }

    /// The same queue with leases of `lease` instead of [`LEASE`].
    pub fn leased_for(self, lease: Duration) -> TableQueue {
        TableQueue { lease, ..self }
    }

    /// Another queue kind in the same table (`events`), whose retries wait
    /// up to `jitter_percent` % longer at random.
    pub fn of_kind(self, kind: &str, jitter_percent: u32) -> TableQueue {
        TableQueue {
            name: format!("{}.{kind}", self.prefix),
            jitter_percent,
            published: Arc::new(Notify::new()),
            ..self
        }
    }

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// The database's clock in Unix milliseconds, as SQL.
    fn clock(&self) -> &'static str {
        match self.backend() {
            // Fixed for the statement, so the planner can bound an index
            // scan on it (clock_timestamp() changes as the scan goes).
            DbBackend::Postgres => "(EXTRACT(EPOCH FROM statement_timestamp()) * 1000)::bigint",
            _ => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        }
    }

    /// `sql` with `$n` placeholders, as this database spells them (SQLite:
    /// `?n`, which may repeat like PostgreSQL's `$n`).
    fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        let backend = self.backend();
        let sql = match backend {
            DbBackend::Postgres => sql.to_owned(),
            _ => sql.replace('$', "?"),
        };
        Statement::from_sql_and_values(backend, sql, values)
    }

    async fn insert(&self, envelope: &Envelope, state: &str) -> Result<(), QueueError> {
        self.insert_after(envelope, state, Duration::ZERO).await
    }

    /// Stores a message that becomes ready after `delay`.
    async fn insert_after(
        &self,
        envelope: &Envelope,
        state: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let body = serde_json::to_string(&envelope.message).expect("a queue message serializes");
        let clock = self.clock();
        self.db
            .execute_raw(self.statement(
                &format!(
                    "INSERT INTO queued_messages \
                     (queue, message_id, body, attempt, reason, state, available_at_ms, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, {clock} + $7, {clock})"
                ),
                vec![
                    self.name.clone().into(),
                    envelope.message.dedup_key().to_owned().into(),
                    body.into(),
                    (envelope.attempt as i32).into(),
                    envelope.reason.clone().into(),
                    state.into(),
                    millis(delay).into(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Stores a message for the consumers; `Ok` once its row committed.
    pub async fn publish(&self, envelope: &Envelope) -> Result<(), QueueError> {
        self.insert(envelope, READY).await?;
        self.published.notify_one();
        Ok(())
    }

    /// Stores `envelope` where `disposition` sends a consumed message.
    pub async fn requeue(
        &self,
        envelope: &Envelope,
        disposition: &Disposition,
    ) -> Result<(), QueueError> {
        let settlement = Settlement::of(disposition, envelope.attempt, &self.retry);
        match (&settlement, settlement.moved(envelope)) {
            (Settlement::ToTier { wait, .. }, Some(moved)) => {
                let delay = super::jittered(*wait, self.jitter_percent);
                self.insert_after(&moved, READY, delay).await?;
                self.published.notify_one();
            }
            (Settlement::Park { .. }, Some(moved)) => self.insert(&moved, PARKED).await?,
            _ => {}
        }
        Ok(())
    }

    /// Stores a message straight in the parked state (unusable on receipt).
    pub async fn park_new(&self, envelope: &Envelope) -> Result<(), QueueError> {
        self.insert(envelope, PARKED).await
    }

    /// Leases up to `limit` ready messages, in the order they came due: a
    /// retry due now waits behind a message published before it came due,
    /// so one sender's retries cannot hold back the others' messages.
    async fn lease(&self, limit: usize) -> Result<Vec<Leased>, QueueError> {
        let skip_locked = match self.backend() {
            DbBackend::Postgres => " FOR UPDATE SKIP LOCKED",
            _ => "",
        };
        let clock = self.clock();
        let sql = format!(
            "UPDATE queued_messages SET leased_until_ms = {clock} + $1, lease = lease + 1 \
             WHERE id IN (\
             SELECT id FROM queued_messages WHERE queue = $2 AND state = '{READY}' \
             AND available_at_ms <= {clock} \
             AND (leased_until_ms IS NULL OR leased_until_ms < {clock}) \
             ORDER BY available_at_ms, id LIMIT $3{skip_locked}) \
             RETURNING id, lease, body, attempt, reason, available_at_ms"
        );
        let rows = self
            .db
            .query_all_raw(self.statement(
                &sql,
                vec![
                    millis(self.lease).into(),
                    self.name.clone().into(),
                    (limit as i64).into(),
                ],
            ))
            .await?;
        let mut leased = Vec::with_capacity(rows.len());
        for row in rows {
            let receipt = Lease {
                id: row.try_get("", "id")?,
                lease: row.try_get("", "lease")?,
            };
            let due: i64 = row.try_get("", "available_at_ms")?;
            let body: String = row.try_get("", "body")?;
            let attempt: i32 = row.try_get("", "attempt")?;
            let reason: Option<String> = row.try_get("", "reason")?;
            let message = match serde_json::from_str::<QueueMessage>(&body) {
                Ok(message) => message,
                Err(err) => {
                    // Not ours to read, but not ours to drop either.
                    tracing::warn!(id = receipt.id, error = %err, "unreadable queued message; parking it");
                    let reason = format!("unreadable: {err}");
                    self.settle(receipt, &Settlement::Park { reason }).await?;
                    continue;
                }
            };
            leased.push(Leased {
                receipt,
                due,
                envelope: Envelope {
                    message,
                    attempt: attempt.max(0) as u32,
                    reason,
                },
            });
        }
        leased.sort_by_key(|l| (l.due, l.receipt.id));
        Ok(leased)
    }

    /// Deletes, delays or parks a leased message — if its lease is still
    /// `receipt`'s; otherwise another consumer took it over after the lease
    /// ran out, and this settlement changes nothing (logged, counted).
    async fn settle(&self, receipt: Lease, settlement: &Settlement) -> Result<(), QueueError> {
        let Lease { id, lease } = receipt;
        let statement = match settlement {
            Settlement::Ack => self.statement(
                "DELETE FROM queued_messages WHERE id = $1 AND lease = $2",
                vec![id.into(), lease.into()],
            ),
            Settlement::ToTier {
                wait,
                attempt,
                reason,
                ..
            } => self.delay_statement(receipt, *attempt, reason, *wait),
            Settlement::Park { reason } => self.park_statement(receipt, reason),
        };
        let done = self.db.execute_raw(statement).await?;
        if done.rows_affected() == 0 {
            tracing::warn!(
                id,
                queue = self.name,
                "a consumer outlived its lease and another took the message over; \
                 its settlement changed nothing"
            );
            metrics::counter!("payorch_queue_stale_leases_total").increment(1);
        }
        Ok(())
    }

    /// Makes a message ready again after `delay` (jittered), at `attempt`.
    fn delay_statement(
        &self,
        receipt: Lease,
        attempt: u32,
        reason: &str,
        delay: Duration,
    ) -> Statement {
        let delay = super::jittered(delay, self.jitter_percent);
        self.statement(
            &format!(
                "UPDATE queued_messages SET attempt = $1, reason = $2, \
                 available_at_ms = {} + $3, leased_until_ms = NULL \
                 WHERE id = $4 AND lease = $5",
                self.clock()
            ),
            vec![
                (attempt as i32).into(),
                reason.to_owned().into(),
                millis(delay).into(),
                receipt.id.into(),
                receipt.lease.into(),
            ],
        )
    }

    fn park_statement(&self, receipt: Lease, reason: &str) -> Statement {
        tracing::warn!(id = receipt.id, reason, "webhook parked in the queue table");
        self.statement(
            &format!(
                "UPDATE queued_messages SET state = '{PARKED}', reason = $1, \
                 leased_until_ms = NULL WHERE id = $2 AND lease = $3"
            ),
            vec![
                reason.to_owned().into(),
                receipt.id.into(),
                receipt.lease.into(),
            ],
        )
    }

    /// Releases every lease (SQLite at start: the file has one process, so
    /// a lease still held is a crashed run's).
    async fn release_stale_leases(&self) -> Result<(), QueueError> {
        if self.backend() != DbBackend::Postgres {
            self.db
                .execute_raw(self.statement(
                    "UPDATE queued_messages SET leased_until_ms = NULL WHERE queue = $1",
                    vec![self.name.clone().into()],
                ))
                .await?;
        }
        Ok(())
    }

    /// Consumes until `shutdown`, one message at a time, up to `prefetch`
    /// at once (see [`Self::consume_with`]).
    pub async fn consume<H, F>(&self, prefetch: u16, shutdown: impl Future<Output = ()>, handle: H)
    where
        H: Fn(Envelope) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Disposition> + Send + 'static,
    {
        self.consume_with(
            Intake::singly(prefetch),
            shutdown,
            consumer::one_at_a_time(handle),
        )
        .await;
    }

    /// Consumes until `shutdown`; then takes no new work but drains what is
    /// ready (within [`DRAIN_LIMIT`]), finishes what it holds, and returns.
    /// What is left stays in the table for the next start.
    pub async fn consume_with<H, F>(
        &self,
        intake: Intake,
        shutdown: impl Future<Output = ()>,
        handle: H,
    ) where
        H: Fn(Vec<Envelope>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Vec<Decision>> + Send + 'static,
    {
        tokio::pin!(shutdown);
        if let Err(err) = self.release_stale_leases().await {
            tracing::warn!(error = %err, "could not release stale queue leases");
        }
        tracing::info!(
            queue = self.name,
            prefetch = intake.prefetch,
            "in-process worker consuming"
        );
        let mut leases = Leases {
            queue: self.clone(),
            draining_since: None,
        };
        consumer::run(&mut leases, intake, &self.retry, shutdown.as_mut(), &handle).await;
        tracing::info!("in-process worker stopped");
    }

    /// Up to `limit` parked messages, oldest first.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<Envelope>, QueueError> {
        let rows = self
            .db
            .query_all_raw(self.statement(
                &format!(
                    "SELECT body, attempt, reason FROM queued_messages \
                     WHERE queue = $1 AND state = '{PARKED}' ORDER BY id LIMIT $2"
                ),
                vec![self.name.clone().into(), (limit as i64).into()],
            ))
            .await?;
        let mut parked = Vec::with_capacity(rows.len());
        for row in rows {
            let body: String = row.try_get("", "body")?;
            let attempt: i32 = row.try_get("", "attempt")?;
            let Ok(message) = serde_json::from_str(&body) else {
                continue;
            };
            parked.push(Envelope {
                message,
                attempt: attempt.max(0) as u32,
                reason: row.try_get("", "reason")?,
            });
        }
        Ok(parked)
    }

    /// Makes parked messages ready again with a fresh attempt count.
    pub async fn replay(&self, only: Option<&str>) -> Result<usize, QueueError> {
        let mut sql = format!(
            "UPDATE queued_messages SET state = '{READY}', attempt = 0, reason = NULL, \
             available_at_ms = {}, leased_until_ms = NULL WHERE queue = $1 AND state = '{PARKED}'",
            self.clock()
        );
        let mut values: Vec<Value> = vec![self.name.clone().into()];
        if let Some(id) = only {
            sql.push_str(" AND message_id = $2");
            values.push(id.to_owned().into());
        }
        let result = self.db.execute_raw(self.statement(&sql, values)).await?;
        self.published.notify_one();
        Ok(result.rows_affected() as usize)
    }

    /// Messages waiting (ready or retrying) and parked.
    pub async fn depths(&self) -> Result<(u64, u64), QueueError> {
        let rows = self
            .db
            .query_all_raw(self.statement(
                "SELECT state, COUNT(*) AS n FROM queued_messages WHERE queue = $1 GROUP BY state",
                vec![self.name.clone().into()],
            ))
            .await?;
        let (mut waiting, mut parked) = (0, 0);
        for row in rows {
            let state: String = row.try_get("", "state")?;
            let n: i64 = row.try_get("", "n")?;
            if state == PARKED {
                parked = n as u64;
            } else {
                waiting = n as u64;
            }
        }
        Ok((waiting, parked))
    }

    pub async fn check(&self) -> Result<(), QueueError> {
        self.db.execute_unprepared("SELECT 1").await?;
        Ok(())
    }
}

/// How long a stopping consumer keeps taking ready messages before it
/// leaves the rest for the next start.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// The table's side of the consumer loop: leased rows.
struct Leases {
    queue: TableQueue,
    /// Since when a stopping consumer drains.
    draining_since: Option<tokio::time::Instant>,
}

impl Inbox for Leases {
    /// The leased row, with its lease.
    type Receipt = Lease;
    type Settler = TableQueue;

    async fn take(&mut self, max: usize) -> Take<Lease> {
        // A stopping consumer past its drain time takes nothing new.
        if self
            .draining_since
            .is_some_and(|since| since.elapsed() >= DRAIN_LIMIT)
        {
            return Take::Nothing;
        }
        match self.queue.lease(max).await {
            Ok(leased) if leased.is_empty() => Take::Nothing,
            Ok(leased) => Take::Messages(
                leased
                    .into_iter()
                    .map(
                        |Leased {
                             receipt, envelope, ..
                         }| Taken {
                            receipt,
                            envelope: Ok(envelope),
                        },
                    )
                    .collect(),
            ),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the queue table; retrying");
                Take::Nothing
            }
        }
    }

    /// Until this process publishes, or [`POLL`] passed (retries coming
    /// due, rows other processes wrote).
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.queue.published.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }

    async fn stop(&mut self, held: usize) {
        tracing::info!(held, "in-process worker draining");
        self.draining_since = Some(tokio::time::Instant::now());
    }

    fn settler(&self) -> TableQueue {
        self.queue.clone()
    }
}

impl Settler for TableQueue {
    type Receipt = Lease;

    async fn settle(&self, batch: Vec<(Lease, Verdict)>, _whole: bool) {
        for (receipt, verdict) in batch {
            let settlement = match verdict {
                Verdict::Settled(_, settlement) => settlement,
                Verdict::Unreadable(reason) => Settlement::Park { reason },
            };
            if let Err(err) = TableQueue::settle(self, receipt, &settlement).await {
                // The lease runs out and the message comes back.
                tracing::warn!(id = receipt.id, error = %err, "could not settle a queued message");
            }
        }
    }
}
