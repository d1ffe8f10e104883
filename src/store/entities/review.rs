use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reviews")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// A `ReviewKind`: `refund_outcome_unknown`…
    pub kind: String,
    pub payment_id: Uuid,
    pub refund_id: Option<Uuid>,
    /// `open` or `resolved`.
    pub status: String,
    pub opened_at: DateTimeUtc,
    /// What payorch knew when it opened the review.
    pub detail: Json,
    pub resolved_at: Option<DateTimeUtc>,
    /// `provider`, or the operator (`cli:alice`).
    pub resolved_by: Option<String>,
    /// A `ReviewAction`.
    pub resolution: Option<String>,
    pub note: Option<String>,
    /// The connector the review is about, when it is not the payment's own
    /// (money found at another connector, a transaction payorch never made).
    pub connector: Option<String>,
    /// The provider's reference of a transaction payorch never made.
    pub reference: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
