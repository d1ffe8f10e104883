use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    /// `evt_` + a UUIDv7 in hex: ordered by creation.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub client_id: Uuid,
    #[sea_orm(column_name = "type")]
    pub kind: String,
    pub payment_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    /// The JSON body exactly as delivered and signed.
    pub body: String,
    pub created_at: DateTimeUtc,
    /// When the relay queued its deliveries; unset: still in the outbox.
    pub published_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
