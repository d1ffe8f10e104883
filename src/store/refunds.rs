//! Refund rows, and the payment's promised total that bounds them. The
//! bound is checked in the one statement that raises the total
//! ([`promise`]), so it holds across processes without a lock in memory.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::entities::{payment, refund};
use crate::domain::{Amount, PaymentStatus, RefundStatus};

pub use refund::Model as Refund;

/// Dispatch states: the provider is asked about a refund at most once.
pub const UNSENT: &str = "unsent";
pub const SENDING: &str = "sending";
pub const SENT: &str = "sent";

/// Adds `amount` to the payment's promised total if it is `succeeded` and
/// the total stays within its amount; `false` if not (nothing changed).
pub async fn promise(
    db: &impl ConnectionTrait,
    payment_id: Uuid,
    amount: Amount,
) -> Result<bool, DbErr> {
    let result = payment::Entity::update_many()
        .col_expr(
            payment::Column::RefundedAmount,
            Expr::col(payment::Column::RefundedAmount).add(amount.get()),
        )
        .filter(payment::Column::Id.eq(payment_id))
        .filter(payment::Column::Status.eq(PaymentStatus::Succeeded.as_str()))
        .filter(
            Expr::col(payment::Column::RefundedAmount)
                .add(amount.get())
                .lte(Expr::col(payment::Column::Amount)),
        )
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Gives a failed refund's amount back to what may still be refunded.
pub async fn release(
    db: &impl ConnectionTrait,
    payment_id: Uuid,
    amount: i64,
) -> Result<(), DbErr> {
    payment::Entity::update_many()
        .col_expr(
            payment::Column::RefundedAmount,
            Expr::col(payment::Column::RefundedAmount).sub(amount),
        )
        .filter(payment::Column::Id.eq(payment_id))
        .exec(db)
        .await?;
    Ok(())
}

/// A refund about to be created.
pub struct NewRefund<'a> {
    pub payment_id: Uuid,
    pub client_id: Uuid,
    pub amount: Amount,
    pub currency: &'a str,
    pub reason: Option<String>,
    /// Another connector than the payment's (see [`Refund::connector`]).
    pub connector: Option<&'a str>,
    /// The review that asked for it (see [`Refund::review_id`]).
    pub review_id: Option<Uuid>,
}

pub async fn insert(db: &impl ConnectionTrait, new: NewRefund<'_>) -> Result<Refund, DbErr> {
    let model = model_of(new);
    refund::Entity::insert(refund::ActiveModel::from(model.clone()))
        .exec_without_returning(db)
        .await?;
    Ok(model)
}

/// Inserts a review's refund unless that review, or another one, has
/// refunded the payment at that connector before (the unique indexes
/// `idx_refunds_one_per_review` and `idx_refunds_once_at_connector`):
/// `None` then, nothing written.
pub async fn insert_once(
    db: &impl ConnectionTrait,
    new: NewRefund<'_>,
) -> Result<Option<Refund>, DbErr> {
    let model = model_of(new);
    let inserted = refund::Entity::insert(refund::ActiveModel::from(model.clone()))
        .on_conflict(
            sea_orm::sea_query::OnConflict::new()
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok((inserted == 1).then_some(model))
}

fn model_of(new: NewRefund<'_>) -> Refund {
    let now = Utc::now();
    Refund {
        id: Uuid::now_v7(),
        payment_id: new.payment_id,
        client_id: new.client_id,
        amount: new.amount.get(),
        currency: new.currency.to_owned(),
        status: RefundStatus::Pending.as_str().to_owned(),
        reason: new.reason,
        dispatch: UNSENT.to_owned(),
        provider_refund_id: None,
        failure_reason: None,
        created_at: now,
        updated_at: now,
        connector: new.connector.map(str::to_owned),
        review_id: new.review_id,
    }
}

pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Refund>, DbErr> {
    refund::Entity::find_by_id(id).one(db).await
}

/// The refunds a provider's report may name: those whose provider id is
/// `provider_refund_id` (two connectors may hand out the same numeric
/// id: the caller picks the one sent to the reporting connector), then the
/// one whose own id is `ours`.
pub async fn find_reported(
    db: &impl ConnectionTrait,
    provider_refund_id: Option<&str>,
    ours: Option<Uuid>,
) -> Result<Vec<Refund>, DbErr> {
    let mut found = match provider_refund_id {
        Some(id) => {
            refund::Entity::find()
                .filter(refund::Column::ProviderRefundId.eq(id))
                .order_by_asc(refund::Column::CreatedAt)
                .all(db)
                .await?
        }
        None => Vec::new(),
    };
    if let Some(id) = ours
        && !found.iter().any(|r| r.id == id)
        && let Some(refund) = find(db, id).await?
    {
        found.push(refund);
    }
    Ok(found)
}

/// A payment's refunds, oldest first.
pub async fn for_payment(
    db: &impl ConnectionTrait,
    payment_id: Uuid,
) -> Result<Vec<Refund>, DbErr> {
    refund::Entity::find()
        .filter(refund::Column::PaymentId.eq(payment_id))
        .order_by_asc(refund::Column::CreatedAt)
        .order_by_asc(refund::Column::Id)
        .all(db)
        .await
}

/// Moves the dispatch state `from → to` if it is still `from`; `false`
/// if another attempt moved it first.
pub async fn mark_dispatch(
    db: &impl ConnectionTrait,
    id: Uuid,
    from: &str,
    to: &str,
    provider_refund_id: Option<&str>,
) -> Result<bool, DbErr> {
    let mut update = refund::Entity::update_many()
        .col_expr(refund::Column::Dispatch, Expr::value(to))
        .col_expr(refund::Column::UpdatedAt, Expr::value(Utc::now()));
    if let Some(provider_id) = provider_refund_id {
        update = update.col_expr(
            refund::Column::ProviderRefundId,
            Expr::value(Some(provider_id.to_owned())),
        );
    }
    let result = update
        .filter(refund::Column::Id.eq(id))
        .filter(refund::Column::Dispatch.eq(from))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Records the provider's id of a refund sent without it (its answer was
/// lost), and that it was sent; a refund with an id already is left as it
/// is.
pub async fn record_sent(
    db: &impl ConnectionTrait,
    id: Uuid,
    provider_refund_id: &str,
) -> Result<(), DbErr> {
    refund::Entity::update_many()
        .col_expr(refund::Column::Dispatch, Expr::value(SENT))
        .col_expr(
            refund::Column::ProviderRefundId,
            Expr::value(Some(provider_refund_id.to_owned())),
        )
        .col_expr(refund::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(refund::Column::Id.eq(id))
        .filter(refund::Column::ProviderRefundId.is_null())
        .exec(db)
        .await?;
    Ok(())
}

fn unsettled() -> Vec<&'static str> {
    RefundStatus::UNSETTLED.map(RefundStatus::as_str).to_vec()
}

/// Settles a pending (or under review) refund as `to`; `false` if it was
/// settled before.
pub async fn settle(
    db: &impl ConnectionTrait,
    id: Uuid,
    to: RefundStatus,
    failure_reason: Option<&str>,
) -> Result<bool, DbErr> {
    let result = refund::Entity::update_many()
        .col_expr(refund::Column::Status, Expr::value(to.as_str()))
        .col_expr(
            refund::Column::FailureReason,
            Expr::value(failure_reason.map(str::to_owned)),
        )
        .col_expr(refund::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(refund::Column::Id.eq(id))
        .filter(refund::Column::Status.is_in(unsettled()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Moves a pending refund to `requires_review`; `false` if it is not
/// pending any more.
pub async fn require_review(db: &impl ConnectionTrait, id: Uuid) -> Result<bool, DbErr> {
    let result = refund::Entity::update_many()
        .col_expr(
            refund::Column::Status,
            Expr::value(RefundStatus::RequiresReview.as_str()),
        )
        .col_expr(refund::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(refund::Column::Id.eq(id))
        .filter(refund::Column::Status.eq(RefundStatus::Pending.as_str()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The total of a payment's succeeded refunds of its own money (not a
/// review's refund of money taken elsewhere).
pub async fn succeeded_total(db: &impl ConnectionTrait, payment_id: Uuid) -> Result<i64, DbErr> {
    let refunds = refund::Entity::find()
        .filter(refund::Column::PaymentId.eq(payment_id))
        .filter(refund::Column::ReviewId.is_null())
        .filter(refund::Column::Status.eq(RefundStatus::Succeeded.as_str()))
        .all(db)
        .await?;
    Ok(refunds.iter().map(|r| r.amount).sum())
}

/// Unsettled refunds (pending or under review: the provider may still
/// answer) last touched before `before`, for a sweep: each is
/// touched (its `updated_at` set to now) in the same statement on
/// PostgreSQL (`SKIP LOCKED`), so concurrent sweepers take different ones.
pub async fn claim_stale(
    db: &impl ConnectionTrait,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Refund>, DbErr> {
    let candidates = refund::Entity::find()
        .select_only()
        .column(refund::Column::Id)
        .filter(refund::Column::Status.is_in(unsettled()))
        .filter(refund::Column::UpdatedAt.lt(before))
        .order_by_asc(refund::Column::UpdatedAt)
        .limit(limit)
        .lock_with_behavior(
            sea_orm::sea_query::LockType::Update,
            sea_orm::sea_query::LockBehavior::SkipLocked,
        )
        .into_tuple::<Uuid>()
        .all(db)
        .await?;
    let mut claimed = Vec::with_capacity(candidates.len());
    for id in candidates {
        let result = refund::Entity::update_many()
            .col_expr(refund::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(refund::Column::Id.eq(id))
            .filter(refund::Column::UpdatedAt.lt(before))
            .exec(db)
            .await?;
        if result.rows_affected == 1
            && let Some(refund) = find(db, id).await?
        {
            claimed.push(refund);
        }
    }
    Ok(claimed)
}
