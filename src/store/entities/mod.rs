//! sea-orm entities, one per table of `migrations/`. They mirror the schema
//! exactly; meaning (valid amounts, states) lives in `crate::domain`.

pub mod api_client;
pub mod event;
pub mod event_attempt;
pub mod idempotency_key;
pub mod operator;
pub mod operator_audit;
pub mod operator_token;
pub mod payment;
pub mod payment_transition;
pub mod provider_call;
pub mod refund;
pub mod review;
pub mod webhook_endpoint;
pub mod webhook_event;
