//! The actor that owns one payment reference in this process.

use std::{
    sync::Weak,
    time::{Duration, Instant},
};

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, Message,
    WrapFuture,
};

use super::registry::RegistryInner;
use crate::{error::ApiError, store::payments::Payment};

/// What can be asked of a payment.
#[derive(Debug, Clone)]
pub enum Command {
    /// Open the provider transaction of a `created` payment.
    Initialize { callback_url: Option<String> },
    /// Ask the provider and apply what it reports.
    Verify,
}

pub(super) struct Envelope(pub Command);

impl Message for Envelope {
    type Result = Result<Payment, ApiError>;
}

pub struct PaymentActor {
    pub(super) reference: String,
    pub(super) generation: u64,
    pub(super) registry: Weak<RegistryInner>,
    pub(super) last_active: Instant,
}

impl Actor for PaymentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(registry) = self.registry.upgrade() else {
            ctx.stop();
            return;
        };
        ctx.set_mailbox_capacity(registry.mailbox);
        let idle = registry.idle;
        // Check at a fraction of the idle time so an actor lingers at most ~1.25×.
        let every = (idle / 4).max(Duration::from_millis(10));
        ctx.run_interval(every, move |actor, ctx| {
            if actor.last_active.elapsed() < idle {
                return;
            }
            match actor.registry.upgrade() {
                // Leaves the registry only if no message is on its way here;
                // otherwise it stays and serves it.
                Some(registry) if registry.evict(&actor.reference, actor.generation) => ctx.stop(),
                Some(_) => {}
                None => ctx.stop(),
            }
        });
    }
}

impl Handler<Envelope> for PaymentActor {
    type Result = AtomicResponse<Self, Result<Payment, ApiError>>;

    fn handle(&mut self, Envelope(command): Envelope, _ctx: &mut Self::Context) -> Self::Result {
        self.last_active = Instant::now();
        let Some(registry) = self.registry.upgrade() else {
            return AtomicResponse::new(Box::pin(
                async { Err(ApiError::Unavailable("the payment service (shutting down)")) }
                    .into_actor(self),
            ));
        };
        let service = registry.service.clone();
        let reference = self.reference.clone();
        // The I/O runs on tokio; the actor only waits, so messages stay in order.
        let work = registry.runtime.spawn(async move {
            match command {
                Command::Initialize { callback_url } => {
                    service
                        .initialize_at_provider(&reference, callback_url)
                        .await
                }
                Command::Verify => service.verify(&reference).await,
            }
        });
        AtomicResponse::new(Box::pin(
            async move {
                work.await.unwrap_or_else(|err| {
                    Err(ApiError::Internal(format!("payment task failed: {err}")))
                })
            }
            .into_actor(self)
            .map(|result, actor, _| {
                actor.last_active = Instant::now();
                result
            }),
        ))
    }
}
