//! Review rows. At most one review of a kind is open per subject (the
//! refund, or the payment for payment-level kinds): the unique partial
//! index `idx_reviews_one_open` holds it, and [`open`] inserts with `ON
//! CONFLICT DO NOTHING`, so two sweepers racing open one review between
//! them.

use chrono::Utc;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, OnConflict},
};
use uuid::Uuid;

use super::entities::review::{self, Column};
use crate::domain::{
    ReviewAction, ReviewKind,
    review::{OPEN, RESOLVED},
};

pub use review::Model as Review;

/// A review about to be opened.
pub struct NewReview {
    pub kind: ReviewKind,
    pub payment_id: Uuid,
    pub refund_id: Option<Uuid>,
    pub detail: serde_json::Value,
    /// The connector it is about when that is not the payment's own.
    pub connector: Option<String>,
    /// The provider's reference of a transaction payorch never made.
    pub reference: Option<String>,
}

impl NewReview {
    /// A review about the payment `payment_id` itself.
    pub fn of_payment(
        kind: ReviewKind,
        payment_id: Uuid,
        connector: Option<String>,
        detail: serde_json::Value,
    ) -> NewReview {
        NewReview {
            kind,
            payment_id,
            refund_id: None,
            detail,
            connector,
            reference: None,
        }
    }

    /// A review about a transaction payorch never made: its subject is a
    /// name derived from the connector and the provider's reference (there
    /// is no payment), so one such transaction has one review.
    pub fn of_unknown_transaction(
        connector: &str,
        reference: &str,
        detail: serde_json::Value,
    ) -> NewReview {
        NewReview {
            kind: ReviewKind::UnknownTransaction,
            payment_id: unknown_subject(connector, reference),
            refund_id: None,
            detail,
            connector: Some(connector.to_owned()),
            reference: Some(reference.to_owned()),
        }
    }
}

/// The subject id of a review about a transaction payorch never made.
pub fn unknown_subject(connector: &str, reference: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("payorch:unknown_transaction:{connector}:{reference}").as_bytes(),
    )
}

/// Opens a review, unless one of its kind is open for its subject already:
/// `None` then (nothing written).
pub async fn open(db: &impl ConnectionTrait, new: NewReview) -> Result<Option<Review>, DbErr> {
    let model = Review {
        id: Uuid::now_v7(),
        kind: new.kind.as_str().to_owned(),
        payment_id: new.payment_id,
        refund_id: new.refund_id,
        status: OPEN.to_owned(),
        opened_at: Utc::now(),
        detail: new.detail,
        resolved_at: None,
        resolved_by: None,
        resolution: None,
        note: None,
        connector: new.connector,
        reference: new.reference,
    };
    // No conflict target: the index is partial and on an expression; any
    // unique conflict is that one (the id is fresh).
    let inserted = review::Entity::insert(review::ActiveModel::from(model.clone()))
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok((inserted == 1).then_some(model))
}

/// How many payment-level reviews `payment_id` has had, open or not.
pub async fn count_for_payment(db: &impl ConnectionTrait, payment_id: Uuid) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    review::Entity::find()
        .filter(Column::PaymentId.eq(payment_id))
        .filter(Column::RefundId.is_null())
        .count(db)
        .await
}

/// Whether a review of `kind` about `payment_id` (at `connector`, when
/// given) was ever opened, open or resolved. Money-moving kinds open once
/// per subject, ever: an operator's resolution is final, and the same
/// money found again (a redelivered webhook, the next settlement pass) is
/// not a new case.
pub async fn ever_opened(
    db: &impl ConnectionTrait,
    kind: ReviewKind,
    payment_id: Uuid,
    connector: Option<&str>,
) -> Result<bool, DbErr> {
    let mut query = review::Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::Kind.eq(kind.as_str()))
        .filter(Column::PaymentId.eq(payment_id))
        .filter(Column::RefundId.is_null());
    if let Some(connector) = connector {
        query = query.filter(Column::Connector.eq(connector));
    }
    let found: Option<Uuid> = query.into_tuple().one(db).await?;
    Ok(found.is_some())
}

pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Review>, DbErr> {
    review::Entity::find_by_id(id).one(db).await
}

/// The open reviews of these refunds.
pub async fn open_for_refunds(
    db: &impl ConnectionTrait,
    refund_ids: &[Uuid],
) -> Result<Vec<Review>, DbErr> {
    if refund_ids.is_empty() {
        return Ok(Vec::new());
    }
    review::Entity::find()
        .filter(Column::RefundId.is_in(refund_ids.iter().copied()))
        .filter(Column::Status.eq(OPEN))
        .order_by_asc(Column::OpenedAt)
        .all(db)
        .await
}

/// The open payment-level review of a payment (not one of its refunds'),
/// if any.
pub async fn open_for_payment(
    db: &impl ConnectionTrait,
    payment_id: Uuid,
) -> Result<Option<Review>, DbErr> {
    review::Entity::find()
        .filter(Column::PaymentId.eq(payment_id))
        .filter(Column::RefundId.is_null())
        .filter(Column::Status.eq(OPEN))
        .order_by_asc(Column::OpenedAt)
        .one(db)
        .await
}

/// Reviews, oldest first; `open_only`: those still open.
pub async fn list(
    db: &impl ConnectionTrait,
    open_only: bool,
    limit: u64,
) -> Result<Vec<Review>, DbErr> {
    let mut query = review::Entity::find();
    if open_only {
        query = query.filter(Column::Status.eq(OPEN));
    }
    query
        .order_by_asc(Column::OpenedAt)
        .order_by_asc(Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Who closed a review, how and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub by: String,
    pub action: ReviewAction,
    pub note: Option<String>,
}

/// Resolves the open review `id`; `false` if it is not open (resolved
/// before, by someone else or this same call retried).
pub async fn resolve(
    db: &impl ConnectionTrait,
    id: Uuid,
    resolution: &Resolution,
) -> Result<bool, DbErr> {
    let result = resolving(resolution)
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(OPEN))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Resolves whatever review is open for the refund `refund_id`.
pub async fn resolve_for_refund(
    db: &impl ConnectionTrait,
    refund_id: Uuid,
    resolution: &Resolution,
) -> Result<u64, DbErr> {
    let result = resolving(resolution)
        .filter(Column::RefundId.eq(refund_id))
        .filter(Column::Status.eq(OPEN))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

fn resolving(resolution: &Resolution) -> sea_orm::UpdateMany<review::Entity> {
    review::Entity::update_many()
        .col_expr(Column::Status, Expr::value(RESOLVED))
        .col_expr(Column::ResolvedAt, Expr::value(Some(Utc::now())))
        .col_expr(Column::ResolvedBy, Expr::value(Some(resolution.by.clone())))
        .col_expr(
            Column::Resolution,
            Expr::value(Some(resolution.action.as_str().to_owned())),
        )
        .col_expr(Column::Note, Expr::value(resolution.note.clone()))
}

/// Opens the resolved review `id` again (its action did not do what it
/// asked: a refund at a connector failed), with `why` as its note.
pub async fn reopen(db: &impl ConnectionTrait, id: Uuid, why: &str) -> Result<bool, DbErr> {
    let result = review::Entity::update_many()
        .col_expr(Column::Status, Expr::value(OPEN))
        .col_expr(
            Column::ResolvedAt,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .col_expr(Column::ResolvedBy, Expr::value(Option::<String>::None))
        .col_expr(Column::Resolution, Expr::value(Option::<String>::None))
        .col_expr(Column::Note, Expr::value(Some(why.to_owned())))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(RESOLVED))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Open reviews per kind (kinds with none are absent).
pub async fn count_open(db: &impl ConnectionTrait) -> Result<Vec<(String, i64)>, DbErr> {
    review::Entity::find()
        .select_only()
        .column(Column::Kind)
        .column_as(Column::Id.count(), "n")
        .filter(Column::Status.eq(OPEN))
        .group_by(Column::Kind)
        .into_tuple()
        .all(db)
        .await
}

/// Which reviews an operator lists.
pub struct ReviewFilter<'a> {
    /// `Some(true)`: open ones only; `Some(false)`: resolved ones only.
    pub open: Option<bool>,
    pub kind: Option<&'a str>,
    /// Only those that come after this one (the last of a previous page).
    pub after: Option<&'a Review>,
    pub limit: u64,
}

/// Reviews matching `filter`, oldest first (as [`list`]).
pub async fn list_where(
    db: &impl ConnectionTrait,
    filter: ReviewFilter<'_>,
) -> Result<Vec<Review>, DbErr> {
    use sea_orm::Condition;
    let mut query = review::Entity::find();
    match filter.open {
        Some(true) => query = query.filter(Column::Status.eq(OPEN)),
        Some(false) => query = query.filter(Column::Status.ne(OPEN)),
        None => {}
    }
    if let Some(kind) = filter.kind {
        query = query.filter(Column::Kind.eq(kind));
    }
    if let Some(after) = filter.after {
        query = query.filter(
            Condition::any()
                .add(Column::OpenedAt.gt(after.opened_at))
                .add(
                    Condition::all()
                        .add(Column::OpenedAt.eq(after.opened_at))
                        .add(Column::Id.gt(after.id)),
                ),
        );
    }
    query
        .order_by_asc(Column::OpenedAt)
        .order_by_asc(Column::Id)
        .limit(filter.limit)
        .all(db)
        .await
}

/// Every review of a payment, oldest first.
pub async fn for_payment(
    db: &impl ConnectionTrait,
    payment_id: Uuid,
) -> Result<Vec<Review>, DbErr> {
    use sea_orm::QueryOrder;
    review::Entity::find()
        .filter(Column::PaymentId.eq(payment_id))
        .order_by_asc(Column::OpenedAt)
        .all(db)
        .await
}
