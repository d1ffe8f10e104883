use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub client_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: Uuid,
    pub request_hash: String,
    pub state: String,
    pub payment_id: Option<Uuid>,
    /// The refund this key's request created, for a refund request.
    pub refund_id: Option<Uuid>,
    pub response_status: Option<i32>,
    pub response_body: Option<String>,
    pub created_at: DateTimeUtc,
    pub locked_until: Option<DateTimeUtc>,
    /// The token of the request that holds the key now; only it may attach,
    /// complete or release the key.
    pub owner: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
