use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refunds")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub payment_id: Uuid,
    pub client_id: Uuid,
    pub amount: i64,
    pub currency: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub reason: Option<String>,
    /// `unsent`, `sending` or `sent`: the provider is asked at most once.
    pub dispatch: String,
    pub provider_refund_id: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The connector it goes to when that is not the payment's own (a
    /// review's `refund_at_connector`); `None`: the payment's connector.
    pub connector: Option<String>,
    /// The review that asked for it (`refund_at_connector`): such a refund
    /// gives back money outside the payment's own flow, so it neither
    /// counts against what may be refunded nor makes the payment `refunded`.
    pub review_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
