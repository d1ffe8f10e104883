//! Webhook endpoints of API clients. Every query is scoped to the client:
//! another client's endpoint is as invisible as a missing one.

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

    /// The secrets that sign a delivery at `now`: the current one, and the
    /// one before a rotation while its overlap lasts.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_secret_until)
            && now < until
        {
            secrets.push(previous);
        }
        secrets
    }
}

pub struct NewEndpoint {
    pub client_id: Uuid,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub secret: String,
}

pub async fn insert(db: &impl ConnectionTrait, new: NewEndpoint) -> Result<Endpoint, DbErr> {
    let now = Utc::now();
    let model = Endpoint {
        id: Uuid::now_v7(),
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

/// A new secret; the current one keeps signing until `overlap_until`.
pub async fn rotate(
    db: &impl ConnectionTrait,
    endpoint: Endpoint,
    secret: String,
    overlap_until: DateTime<Utc>,
) -> Result<Endpoint, DbErr> {
    let previous = endpoint.secret.clone();
    let mut active = endpoint.into_active_model();
    active.previous_secret = Set(Some(previous));
    active.previous_secret_until = Set(Some(overlap_until));
    active.secret = Set(secret);
    active.updated_at = Set(Utc::now());
    active.update(db).await
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
