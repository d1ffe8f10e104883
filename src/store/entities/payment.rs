use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub client_id: Uuid,
    /// What the provider sees: globally unique (the client's reference when
    /// no other client holds it, else a generated one).
    #[sea_orm(unique)]
    pub reference: String,
    /// The client's own reference, unique per client: what the API shows.
    pub client_reference: String,
    pub provider: String,
    pub amount: i64,
    pub currency: String,
    pub email: String,
    pub status: String,
    pub failure_reason: Option<String>,
    pub authorization_url: Option<String>,
    pub access_code: Option<String>,
    pub metadata: Option<Json>,
    /// Optimistic-concurrency counter: every update is `WHERE version = ?`.
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub paid_at: Option<DateTimeUtc>,
    /// The sum of this payment's refunds that have not failed; never above
    /// `amount` (checked in the statement that raises it).
    pub refunded_amount: i64,
    /// When a reconciliation sweep last asked the provider about it.
    pub checked_at: Option<DateTimeUtc>,
    /// The connectors this payment failed over from, comma-separated,
    /// oldest first: each may hold a transaction under its reference.
    pub earlier_connectors: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
