//! Provider webhooks: verify the signature over the raw body, parse just
//! enough to name the event, queue it, answer. Processing happens in the
//! worker (`crate::worker`), deduplicated by event identity.

pub mod event;
pub mod ingest;
pub mod signature;
