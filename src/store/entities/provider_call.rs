use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "provider_calls")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The payment's provider-facing reference.
    pub reference: String,
    pub connector: String,
    /// `initialize`, `verify`, `refund`, `find_refund`.
    pub operation: String,
    pub started_at: DateTimeUtc,
    pub duration_ms: i64,
    /// `ok`, or the error's kind (`timeout`, `circuit_open`, …).
    pub outcome: String,
    pub error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
