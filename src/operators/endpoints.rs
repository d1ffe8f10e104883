//! Merchant endpoints as operators see them: how each is doing (its
//! latest attempts, its failure streak), and what they can do about one —
//! turn it off, or send an event to it again.

use sea_orm::{DbErr, TransactionTrait};
use uuid::Uuid;

use super::{Actor, Operators, audit};
use crate::{
    events::{Events, EventsError},
    store::{
        endpoints::{self, Endpoint},
        events::{self, Attempt},
    },
};

/// At most this many endpoints are listed.
pub const MAX_ENDPOINTS: u64 = 500;
/// Each endpoint's latest attempts shown.
pub const LAST_ATTEMPTS: u64 = 5;

/// An endpoint with its latest attempts (newest first) and failure streak.
pub struct EndpointHealth {
    pub endpoint: Endpoint,
    pub last_attempts: Vec<Attempt>,
    pub failure_streak: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("no endpoint {0}")]
    EndpointNotFound(Uuid),
    #[error("no event {0}")]
    EventNotFound(String),
    #[error(transparent)]
    Events(#[from] EventsError),
    #[error("database: {0}")]
    Database(#[from] DbErr),
}

impl Operators {
    /// Every endpoint (or `client_id`'s), with how it is doing.
    pub async fn endpoints(&self, client_id: Option<Uuid>) -> Result<Vec<EndpointHealth>, DbErr> {
        let listed = endpoints::list(&self.db, client_id, MAX_ENDPOINTS).await?;
        let ids: Vec<Uuid> = listed.iter().map(|e| e.id).collect();
        let mut latest = events::latest_attempts(&self.db, &ids, LAST_ATTEMPTS).await?;
        let mut health = Vec::with_capacity(listed.len());
        for endpoint in listed {
            let last_attempts = latest.remove(&endpoint.id).unwrap_or_default();
            health.push(self.health(endpoint, last_attempts).await?);
        }
        Ok(health)
    }

    /// `endpoint` with its latest attempts and, when the latest failed, its
    /// failure streak (a streak needs reading only then).
    async fn health(
        &self,
        endpoint: Endpoint,
        last_attempts: Vec<Attempt>,
    ) -> Result<EndpointHealth, DbErr> {
        let failure_streak = match last_attempts.first() {
            Some(latest) if latest.status != "delivered" => {
                events::failure_streak(&self.db, endpoint.id).await?
            }
            _ => 0,
        };
        Ok(EndpointHealth {
            endpoint,
            last_attempts,
            failure_streak,
        })
    }

    /// Turns the endpoint off: nothing more is delivered to it until its
    /// merchant turns it on again. Disabling a disabled endpoint records
    /// nothing.
    pub async fn disable_endpoint(
        &self,
        id: Uuid,
        note: Option<&str>,
        by: &Actor,
    ) -> Result<EndpointHealth, EndpointError> {
        let txn = self.db.begin().await?;
        let endpoint = endpoints::find(&txn, id)
            .await?
            .ok_or(EndpointError::EndpointNotFound(id))?;
        if endpoint.enabled {
            endpoints::disable(&txn, id).await?;
            audit(
                &txn,
                by,
                "endpoint.disable",
                &format!("endpoint:{id}"),
                note,
            )
            .await?;
        }
        txn.commit().await?;
        let endpoint = endpoints::find(&self.db, id)
            .await?
            .ok_or(EndpointError::EndpointNotFound(id))?;
        let last_attempts = events::latest_attempts(&self.db, &[id], LAST_ATTEMPTS)
            .await?
            .remove(&id)
            .unwrap_or_default();
        Ok(self.health(endpoint, last_attempts).await?)
    }

    /// Queues the event `id` again for its merchant's endpoints that want
    /// it, or for `only`; the endpoints it went to.
    pub async fn redeliver_event(
        &self,
        events_core: &Events,
        id: &str,
        only: Option<Uuid>,
        by: &Actor,
    ) -> Result<Vec<Uuid>, EndpointError> {
        let event = events::find(&self.db, id)
            .await?
            .ok_or_else(|| EndpointError::EventNotFound(id.to_owned()))?;
        let targets = events_core.redeliver(event.client_id, id, only).await?;
        let note = format!("to {} endpoint(s)", targets.len());
        audit(
            &self.db,
            by,
            "event.redeliver",
            &format!("event:{id}"),
            Some(&note),
        )
        .await?;
        Ok(targets)
    }
}
