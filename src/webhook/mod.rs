//! Provider webhooks: check the connector's proof over the raw body, parse it once
//! into what the worker needs, queue it, answer. Processing happens in the
//! worker (`crate::worker`), through the payment core, deduplicated by
//! event identity.

pub mod ingest;
pub mod queued;
