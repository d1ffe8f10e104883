//! Per-payment actors: every state change of one payment inside this process
//! goes through that payment's [`PaymentActor`] mailbox, one at a time.
//!
//! Actix and poem's tokio runtime live side by side: actix actors need an
//! actix `System`, and `Actor::start` on a tokio worker panics. So
//! [`ActorSystem`] runs a `System` on an OS thread of its own with a few
//! `Arbiter`s (each a single-threaded event loop); the registry starts actors
//! on them with `start_in_arbiter`, and handlers on tokio reach them through
//! `Addr::send(..).await`. An actor does not do the I/O on its arbiter: it
//! hands the work to the tokio runtime and waits for it *atomically*
//! (`AtomicResponse`), so the next message starts only after the previous
//! one finished — serialization is the whole point.

mod payment;
mod registry;
mod system;

pub use payment::Command;
pub use registry::PaymentRegistry;
pub use system::ActorSystem;
