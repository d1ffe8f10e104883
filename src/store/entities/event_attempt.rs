use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub event_id: String,
    pub endpoint_id: Uuid,
    /// 0 for the first attempt.
    pub attempt: i32,
    pub at: DateTimeUtc,
    /// `delivered`, `retrying` (failed; another attempt is due) or `failed`.
    pub status: String,
    pub response_status: Option<i32>,
    pub duration_ms: i64,
    pub error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
