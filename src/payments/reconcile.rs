//! Reconciliation: payments (and refunds) still pending after
//! `PAYORCH_RECONCILE_AFTER_S`, because their webhook never came, are
//! asked about at the provider and updated; a payment pending past
//! `PAYORCH_ABANDON_AFTER_S` that the provider says is not paid becomes
//! `abandoned`. And retention: old idempotency keys and processed webhook
//! events are purged in small batches; the audit trail never is.
//!
//! Many workers share a sweep without asking about a payment twice: a
//! batch is claimed in one transaction (`FOR UPDATE SKIP LOCKED`), which
//! stamps each payment's `checked_at`; a payment is claimed again only
//! after [`RECHECK`] (or the reconcile threshold, if longer). Work goes
//! through the payment's actor like any other change, a few payments at a
//! time ([`CONCURRENCY`]), so a sweep never crowds out webhook processing.

use std::time::Duration;

use chrono::Utc;
use futures_util::{StreamExt, stream};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType},
};
use uuid::Uuid;

use super::{PaymentError, Payments, actors::Command, decide::Source, service::PaymentService};
use crate::{
    domain::{PaymentEvent, PaymentStatus, Reference},
    provider::ProviderError,
    store::{
        entities::{idempotency_key, payment, webhook_event},
        payments::Payment,
        refunds,
    },
};

/// The shortest time between two sweeps asking about one payment.
pub const RECHECK: Duration = Duration::from_secs(300);
/// Payments (or refunds) claimed per transaction.
pub const BATCH: u64 = 100;
/// Provider calls one sweeper has in flight at once.
pub const CONCURRENCY: usize = 4;
/// Rows deleted per retention statement.
pub const PURGE_BATCH: u64 = 1_000;

/// What a sweep is told.
#[derive(Debug, Clone, Copy)]
pub struct Sweep {
    /// Pending longer than this: ask the provider.
    pub after: Duration,
    /// Pending longer than this and not paid: abandon.
    pub abandon_after: Duration,
    /// A sent refund the provider cannot find this long after it was
    /// created: `requires_review` (before that: looked up again next time).
    pub review_after: Duration,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Payments and refunds asked about.
    pub checked: usize,
    /// `(what, from, to)` for each that changed: `payment <reference>` or
    /// `refund <id>`.
    pub changed: Vec<(String, String, String)>,
    /// Failures (logged; the item is asked about again next time).
    pub errors: usize,
}

impl Payments {
    /// One pass over everything stale now: claims batches until none is
    /// left, and returns what changed.
    pub async fn reconcile(&self, sweep: Sweep) -> Result<SweepReport, PaymentError> {
        let mut report = SweepReport::default();
        let abandon_after =
            chrono::Duration::from_std(sweep.abandon_after).unwrap_or(chrono::Duration::MAX);
        loop {
            let claimed = claim_payments(&self.db, sweep.after).await?;
            if claimed.is_empty() {
                break;
            }
            let now = Utc::now();
            let checks = claimed.into_iter().map(|payment| async move {
                let abandon = now - payment.created_at >= abandon_after;
                let after = self
                    .registry
                    .call(&payment.reference, Command::Reconcile { abandon })
                    .await;
                Checked {
                    what: format!("payment {}", payment.reference),
                    before: payment.status,
                    after: after.map(|p| p.status),
                }
            });
            report.add("payment", checks).await;
        }
        // Fixed at the start: a refund claimed (stamped now) and left
        // unsettled — one the provider does not find yet — is not claimed
        // again in this pass, however small the threshold.
        let stale_before = Utc::now() - chrono::Duration::from_std(sweep.after).unwrap_or_default();
        loop {
            let claimed = self.claim_refunds(stale_before).await?;
            if claimed.is_empty() {
                break;
            }
            let checks = claimed.into_iter().map(|(reference, refund)| async move {
                let after = self
                    .registry
                    .reconcile_refund(&reference, refund.id, sweep.review_after)
                    .await;
                Checked {
                    what: format!("refund {}", refund.id),
                    before: refund.status,
                    after: after.map(|r| r.status),
                }
            });
            report.add("refund", checks).await;
        }
        // The gauge follows the table, whoever opened or closed a review.
        if let Err(err) = self.count_open_reviews().await {
            tracing::warn!(error = %err, "counting open reviews failed");
        }
        Ok(report)
    }

    /// Unsettled refunds last touched before `before`, with their
    /// payment's reference.
    async fn claim_refunds(
        &self,
        before: chrono::DateTime<Utc>,
    ) -> Result<Vec<(String, refunds::Refund)>, PaymentError> {
        let txn = crate::store::begin_write(&self.db).await?;
        let claimed = refunds::claim_stale(&txn, before, BATCH).await?;
        super::commit(txn).await?;
        let mut with_reference = Vec::with_capacity(claimed.len());
        for refund in claimed {
            if let Some(payment) =
                crate::store::payments::find_by_id(&self.db, refund.payment_id).await?
            {
                with_reference.push((payment.reference, refund));
            }
        }
        Ok(with_reference)
    }
}

/// One item a sweep asked about: its status before and after (or why not).
struct Checked {
    what: String,
    before: String,
    after: Result<String, PaymentError>,
}

impl SweepReport {
    /// Runs `checks`, [`CONCURRENCY`] at a time, and records what they found.
    async fn add(
        &mut self,
        kind: &'static str,
        checks: impl Iterator<Item = impl std::future::Future<Output = Checked>>,
    ) {
        let results: Vec<Checked> = stream::iter(checks)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for Checked {
            what,
            before,
            after,
        } in results
        {
            self.checked += 1;
            count(kind, "checked");
            match after {
                Ok(after) if after != before => {
                    count(kind, "changed");
                    self.changed.push((what, before, after));
                }
                Ok(_) => {}
                Err(err) => {
                    count(kind, "error");
                    tracing::warn!(item = what, error = %err, "reconciliation failed");
                    self.errors += 1;
                }
            }
        }
    }
}

fn count(kind: &'static str, result: &'static str) {
    metrics::counter!("payorch_reconcile_total", "kind" => kind, "result" => result).increment(1);
}

/// Claims up to [`BATCH`] payments pending (or still `created`: their
/// initialize never finished) since before `after` ago and not asked about
/// within [`RECHECK`], stamping `checked_at`, in one transaction.
async fn claim_payments(db: &DatabaseConnection, after: Duration) -> Result<Vec<Payment>, DbErr> {
    let now = Utc::now();
    let created_before = now - chrono::Duration::from_std(after).unwrap_or_default();
    let checked_before = now - chrono::Duration::from_std(after.max(RECHECK)).unwrap_or_default();
    let txn = crate::store::begin_write(db).await?;
    let ids: Vec<Uuid> = payment::Entity::find()
        .select_only()
        .column(payment::Column::Id)
        .filter(payment::Column::Status.is_in([
            PaymentStatus::Pending.as_str(),
            PaymentStatus::Created.as_str(),
        ]))
        .filter(payment::Column::CreatedAt.lte(created_before))
        .filter(
            payment::Column::CheckedAt
                .is_null()
                .or(payment::Column::CheckedAt.lt(checked_before)),
        )
        .order_by_asc(payment::Column::CreatedAt)
        .limit(BATCH)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .into_tuple()
        .all(&txn)
        .await?;
    if ids.is_empty() {
        super::commit(txn).await?;
        return Ok(Vec::new());
    }
    payment::Entity::update_many()
        .col_expr(payment::Column::CheckedAt, Expr::value(Some(now)))
        .filter(payment::Column::Id.is_in(ids.clone()))
        .exec(&txn)
        .await?;
    let claimed = payment::Entity::find()
        .filter(payment::Column::Id.is_in(ids))
        .all(&txn)
        .await?;
    super::commit(txn).await?;
    Ok(claimed)
}

impl PaymentService {
    /// Asks the provider about a pending payment — or one still `created`,
    /// whose initialize never finished (the provider may hold its
    /// transaction, its answer lost) — and applies what it says; `abandon`:
    /// one the provider does not call paid (or failed) is abandoned. The
    /// connectors it failed over from are asked too: money one of them took
    /// opens a `charged_at_other_connector` review. Any other payment is
    /// returned as it is.
    pub(super) async fn reconcile(
        &self,
        reference: &str,
        abandon: bool,
    ) -> Result<Payment, PaymentError> {
        let mut payment = self.load(reference).await?;
        let open = [PaymentStatus::Pending, PaymentStatus::Created];
        if !open.iter().any(|s| payment.status == s.as_str()) {
            return Ok(payment);
        }
        let reference = Reference::parse(reference).map_err(super::decide::corrupt)?;
        let earlier: Vec<String> = crate::store::payments::earlier_connectors(&payment)
            .map(str::to_owned)
            .collect();
        for earlier in &earlier {
            match self.ask_earlier(payment.clone(), earlier, &reference).await {
                Ok(now) => payment = now,
                Err(err) => tracing::warn!(
                    %reference,
                    connector = earlier,
                    error = %err,
                    "asking a connector the payment failed over from failed; asked again next sweep"
                ),
            }
        }
        let created = payment.status == PaymentStatus::Created.as_str();
        let (event, held) = match self.connector_of(&payment)?.verify(&reference).await {
            Ok(report) => (report.event()?, true),
            // The provider holds no such transaction: nobody paid it.
            Err(ProviderError::Rejected(_)) => (PaymentEvent::ChargePending, false),
            Err(err) => return Err(err.into()),
        };
        let event = match event {
            PaymentEvent::ChargePending if abandon => PaymentEvent::ChargeAbandoned,
            // An initialize whose answer was lost: the transaction is open.
            PaymentEvent::ChargePending if created && held => PaymentEvent::ChargePending,
            PaymentEvent::ChargePending => return Ok(payment),
            event => event,
        };
        let change = super::decide::Change::new(event, Source::Reconcile);
        Ok(self.apply(payment, change).await?.0)
    }
}

impl PaymentService {
    /// Asks `connector`, which `payment` failed over from, whether it holds
    /// a paid transaction under the payment's reference; if so, that is
    /// applied as its report (the state machine ignores it for the
    /// payment, the pipeline opens a review).
    pub(super) async fn ask_earlier(
        &self,
        payment: Payment,
        connector: &str,
        reference: &Reference,
    ) -> Result<Payment, PaymentError> {
        let Some(name) = crate::provider::routing::ConnectorName::of_stored(connector) else {
            return Ok(payment);
        };
        let Some(client) = self.connectors.get(name.as_str()) else {
            return Ok(payment);
        };
        let report = match client.verify(reference).await {
            Ok(report) => report,
            // It holds no such transaction: the request never arrived.
            Err(ProviderError::Rejected(_)) => return Ok(payment),
            Err(err) => return Err(err.into()),
        };
        let event = report.event()?;
        if !matches!(event, PaymentEvent::ChargeSucceeded { .. }) {
            return Ok(payment);
        }
        let change = super::decide::Change {
            connector: Some(name.as_str()),
            ..super::decide::Change::new(event, Source::Reconcile)
        };
        Ok(self.apply(payment, change).await?.0)
    }
}

/// Deletes idempotency keys older than their retention and processed
/// webhook events older than `webhook_retention`, [`PURGE_BATCH`] rows per
/// statement so no statement holds locks for long. Returns (keys, events).
pub async fn purge(
    db: &DatabaseConnection,
    webhook_retention: Duration,
) -> Result<(u64, u64), DbErr> {
    let now = Utc::now();
    let key_cutoff =
        now - chrono::Duration::from_std(super::idempotency::RETENTION).unwrap_or_default();
    let mut keys = 0;
    loop {
        let batch: Vec<(Uuid, Uuid)> = idempotency_key::Entity::find()
            .select_only()
            .column(idempotency_key::Column::ClientId)
            .column(idempotency_key::Column::Key)
            .filter(idempotency_key::Column::CreatedAt.lt(key_cutoff))
            .limit(PURGE_BATCH)
            .into_tuple()
            .all(db)
            .await?;
        if batch.is_empty() {
            break;
        }
        let mut any = sea_orm::Condition::any();
        for (client_id, key) in &batch {
            any = any.add(
                idempotency_key::Column::ClientId
                    .eq(*client_id)
                    .and(idempotency_key::Column::Key.eq(*key)),
            );
        }
        keys += idempotency_key::Entity::delete_many()
            .filter(any)
            .exec(db)
            .await?
            .rows_affected;
        if (batch.len() as u64) < PURGE_BATCH {
            break;
        }
    }
    let event_cutoff = now - chrono::Duration::from_std(webhook_retention).unwrap_or_default();
    let mut events = 0;
    loop {
        let batch: Vec<Uuid> = webhook_event::Entity::find()
            .select_only()
            .column(webhook_event::Column::Id)
            .filter(webhook_event::Column::ProcessedAt.lt(event_cutoff))
            .limit(PURGE_BATCH)
            .into_tuple()
            .all(db)
            .await?;
        if batch.is_empty() {
            break;
        }
        let n = batch.len() as u64;
        events += webhook_event::Entity::delete_many()
            .filter(webhook_event::Column::Id.is_in(batch))
            .exec(db)
            .await?
            .rows_affected;
        if n < PURGE_BATCH {
            break;
        }
    }
    Ok((keys, events))
}

/// Runs a sweep every `every` until `shutdown` (a worker's background duty),
/// the first one interval after it starts: processes started together do
/// not all sweep at once, and a sweep never races its own process's start.
pub async fn run_sweeper(
    payments: Payments,
    sweep: Sweep,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        match payments.reconcile(sweep).await {
            Ok(report) if !report.changed.is_empty() || report.errors > 0 => tracing::info!(
                checked = report.checked,
                changed = report.changed.len(),
                errors = report.errors,
                "reconciliation sweep"
            ),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "reconciliation sweep failed"),
        }
    }
}
