use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub client_id: Uuid,
    pub url: String,
    pub description: Option<String>,
    /// A JSON array of event types; empty: every type.
    pub event_types: Json,
    pub enabled: bool,
    /// `whsec_` + base64, sealed (`enc:v1:<key id>:…`, see
    /// `crate::events::secrets`; in clear only in rows written before
    /// sealing, until the next start): signs every delivery.
    pub secret: String,
    /// The secret before the last rotation (sealed the same way), signing
    /// too until `previous_secret_until`.
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
