//! Webhook endpoints of API clients. Every query is scoped to the client:
//! another client's endpoint is as invisible as a missing one.
//!
//! `secret` and `previous_secret` are kept sealed; this module stores and
//! returns them as they are (`crate::events::secrets` seals and opens them).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use super::entities::webhook_endpoint;

pub use webhook_endpoint::Model as Endpoint;

impl Endpoint {
    /// The event types it asked for; empty: every type.
    pub fn types(&self) -> Vec<String> {
        serde_json::from_value(self.event_types.clone()).unwrap_or_default()
    }

    pub fn wants(&self, event_type: &str) -> bool {
        let types = self.types();
        types.is_empty() || types.iter().any(|t| t == event_type)
    }
}

pub struct NewEndpoint {
    /// Chosen before the insert: the sealed secret is bound to it.
    pub id: Uuid,
    pub client_id: Uuid,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    /// Sealed.
    pub secret: String,
}

pub async fn insert(db: &impl ConnectionTrait, new: NewEndpoint) -> Result<Endpoint, DbErr> {
    let now = Utc::now();
    let model = Endpoint {
        id: new.id,
        client_id: new.client_id,
        url: new.url,
        description: new.description,
        event_types: serde_json::json!(new.event_types),
        enabled: true,
        secret: new.secret,
        previous_secret: None,
        previous_secret_until: None,
        created_at: now,
        updated_at: now,
    };
    webhook_endpoint::Entity::insert(webhook_endpoint::ActiveModel::from(model.clone()))
        .exec_without_returning(db)
        .await?;
    Ok(model)
}

pub async fn find_owned(
    db: &impl ConnectionTrait,
    client_id: Uuid,
    id: Uuid,
) -> Result<Option<Endpoint>, DbErr> {
    webhook_endpoint::Entity::find_by_id(id)
        .filter(webhook_endpoint::Column::ClientId.eq(client_id))
        .one(db)
        .await
}

pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Endpoint>, DbErr> {
    webhook_endpoint::Entity::find_by_id(id).one(db).await
}

/// The client's endpoints, oldest first.
pub async fn for_client(
    db: &impl ConnectionTrait,
    client_id: Uuid,
) -> Result<Vec<Endpoint>, DbErr> {
    webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::ClientId.eq(client_id))
        .order_by_asc(webhook_endpoint::Column::Id)
        .all(db)
        .await
}

/// The enabled endpoints of any of `clients`.
pub async fn enabled_for(
    db: &impl ConnectionTrait,
    clients: impl IntoIterator<Item = Uuid>,
) -> Result<Vec<Endpoint>, DbErr> {
    webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::ClientId.is_in(clients))
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .all(db)
        .await
}

/// Which of `ids` are endpoints that exist and are enabled.
pub async fn enabled_among(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<std::collections::HashSet<Uuid>, DbErr> {
    Ok(webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::Id.is_in(ids))
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .all(db)
        .await?
        .into_iter()
        .map(|endpoint| endpoint.id)
        .collect())
}

/// What a `PATCH` changes; `None`: leave it.
#[derive(Debug, Default)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
    pub event_types: Option<Vec<String>>,
}

pub async fn update(
    db: &impl ConnectionTrait,
    endpoint: Endpoint,
    changes: EndpointChanges,
) -> Result<Endpoint, DbErr> {
    let mut active = endpoint.into_active_model();
    if let Some(url) = changes.url {
        active.url = Set(url);
    }
    if let Some(description) = changes.description {
        active.description = Set(description);
    }
    if let Some(enabled) = changes.enabled {
        active.enabled = Set(enabled);
    }
    if let Some(types) = changes.event_types {
        active.event_types = Set(serde_json::json!(types));
    }
    active.updated_at = Set(Utc::now());
    active.update(db).await
}

/// A new secret; the current one (`previous`, sealed again for its new
/// column) keeps signing until `overlap_until`.
pub async fn rotate(
    db: &impl ConnectionTrait,
    endpoint: Endpoint,
    secret: String,
    previous: String,
    overlap_until: DateTime<Utc>,
) -> Result<Endpoint, DbErr> {
    let mut active = endpoint.into_active_model();
    active.previous_secret = Set(Some(previous));
    active.previous_secret_until = Set(Some(overlap_until));
    active.secret = Set(secret);
    active.updated_at = Set(Utc::now());
    active.update(db).await
}

/// Endpoints with a secret still in clear (written before sealing).
pub async fn with_plain_secrets(db: &impl ConnectionTrait) -> Result<Vec<Endpoint>, DbErr> {
    use sea_orm::Condition;
    webhook_endpoint::Entity::find()
        .filter(
            Condition::any()
                .add(webhook_endpoint::Column::Secret.not_like("enc:%"))
                .add(webhook_endpoint::Column::PreviousSecret.not_like("enc:%")),
        )
        .all(db)
        .await
}

/// Every endpoint, for a re-sealing pass.
pub async fn all_secrets(db: &impl ConnectionTrait) -> Result<Vec<Endpoint>, DbErr> {
    webhook_endpoint::Entity::find()
        .order_by_asc(webhook_endpoint::Column::Id)
        .all(db)
        .await
}

/// Replaces `row`'s secrets with the same secrets sealed again, if the row
/// still holds what `row` read; `false`: it changed meanwhile (rotated,
/// deleted), nothing written.
pub async fn replace_secrets(
    db: &impl ConnectionTrait,
    row: &Endpoint,
    secret: String,
    previous: Option<String>,
) -> Result<bool, DbErr> {
    let mut update = webhook_endpoint::Entity::update_many()
        .col_expr(
            webhook_endpoint::Column::Secret,
            sea_orm::sea_query::Expr::value(secret),
        )
        .col_expr(
            webhook_endpoint::Column::PreviousSecret,
            sea_orm::sea_query::Expr::value(previous),
        )
        .filter(webhook_endpoint::Column::Id.eq(row.id))
        .filter(webhook_endpoint::Column::Secret.eq(row.secret.clone()));
    update = match &row.previous_secret {
        Some(previous) => {
            update.filter(webhook_endpoint::Column::PreviousSecret.eq(previous.clone()))
        }
        None => update.filter(webhook_endpoint::Column::PreviousSecret.is_null()),
    };
    Ok(update.exec(db).await?.rows_affected == 1)
}

/// Turns an endpoint off (it answered `410 Gone`).
pub async fn disable(db: &impl ConnectionTrait, id: Uuid) -> Result<(), DbErr> {
    webhook_endpoint::Entity::update_many()
        .col_expr(
            webhook_endpoint::Column::Enabled,
            sea_orm::sea_query::Expr::value(false),
        )
        .col_expr(
            webhook_endpoint::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(Utc::now()),
        )
        .filter(webhook_endpoint::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// `false`: no such endpoint of this client.
pub async fn delete_owned(
    db: &impl ConnectionTrait,
    client_id: Uuid,
    id: Uuid,
) -> Result<bool, DbErr> {
    let result = webhook_endpoint::Entity::delete_many()
        .filter(webhook_endpoint::Column::Id.eq(id))
        .filter(webhook_endpoint::Column::ClientId.eq(client_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Every client's endpoints, or `client_id`'s, oldest first, at most `limit`.
pub async fn list(
    db: &impl ConnectionTrait,
    client_id: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Endpoint>, DbErr> {
    use sea_orm::QuerySelect;
    let mut query = webhook_endpoint::Entity::find();
    if let Some(client_id) = client_id {
        query = query.filter(webhook_endpoint::Column::ClientId.eq(client_id));
    }
    query
        .order_by_asc(webhook_endpoint::Column::Id)
        .limit(limit)
        .all(db)
        .await
}
