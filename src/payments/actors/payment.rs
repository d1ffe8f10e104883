//! The actor that owns one payment reference in this process.

use std::{
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, Message,
    WrapFuture,
};

use uuid::Uuid;

use crate::{
    domain::RefundReport,
    domain::webhook::RefundNotice,
    payments::{
        Completion, PaymentError, WebhookApplied, WebhookChange,
        service::{Opening, PaymentService},
    },
    provider::routing::ConnectorName,
    store::refunds::Refund,
    store::{payments::Payment, webhooks::WebhookRecord},
    timing::RequestClock,
};

/// What can be asked of a payment.
#[derive(Debug, Clone)]
pub enum Command {
    /// Open the provider transaction of a `created` payment.
    Initialize {
        opening: Opening,
        callback_url: Option<String>,
        /// The connectors to try, in order, after the one holding it.
        route: Vec<ConnectorName>,
        /// Where the request's answer goes, with its key, when the
        /// provider's checkout is applied.
        answer: Option<Completion>,
    },
    /// Ask the provider and apply what it reports, for the client that
    /// owns the payment.
    /// For `client_id`, whose own reference for it is `client_reference`.
    Verify {
        client_id: Uuid,
        client_reference: String,
    },
    /// A reconciliation sweep's verify; `abandon`: a payment not paid at
    /// the provider is abandoned.
    Reconcile { abandon: bool },
}

/// What can be asked about one of the payment's refunds.
#[derive(Debug, Clone)]
pub enum RefundCommand {
    /// Send it to the provider, unless it was sent before.
    Send,
    /// Find out what became of it (reconciliation); one the provider
    /// cannot find `review_after` after its creation goes to review.
    Reconcile { review_after: std::time::Duration },
}

pub(super) struct RefundEnvelope(pub Uuid, pub RefundCommand, pub Option<RequestClock>);

impl Message for RefundEnvelope {
    type Result = Result<Refund, PaymentError>;
}

/// Apply a provider's refund webhook (`false` in the reply: nothing to do).
pub(super) struct RefundWebhookEnvelope(pub WebhookRecord, pub RefundNotice, pub RefundReport);

impl Message for RefundWebhookEnvelope {
    type Result = Result<bool, PaymentError>;
}

/// A command, with the clock of the request that sent it.
pub(super) struct Envelope(pub Command, pub Option<RequestClock>);

impl Message for Envelope {
    type Result = Result<Payment, PaymentError>;
}

/// Apply a provider webhook: its event, or (`None`) what the payment's
/// connector reports when asked (for webhooks whose proof does not sign
/// their figures).
pub(super) struct WebhookEnvelope(pub WebhookRecord, pub WebhookChange);

impl Message for WebhookEnvelope {
    type Result = Result<WebhookApplied, PaymentError>;
}

/// What a payment actor needs of the registry that started it: the work
/// it runs and where, its limits, and a way to leave when idle. (The
/// registry implements it; the actor knows no more of the registry.)
pub(super) trait Home: Send + Sync + 'static {
    fn service(&self) -> &Arc<PaymentService>;
    fn runtime(&self) -> &tokio::runtime::Handle;
    /// How long the actor may stay idle before it leaves.
    fn idle(&self) -> Duration;
    /// Messages it may have waiting.
    fn mailbox(&self) -> usize;
    /// Removes the actor's entry if it is still `generation` and nothing is
    /// on its way to it; `true`: it may stop.
    fn evict(&self, reference: &str, generation: u64) -> bool;
}

pub struct PaymentActor {
    pub(super) reference: String,
    pub(super) generation: u64,
    pub(super) registry: Weak<dyn Home>,
    pub(super) last_active: Instant,
}

impl Actor for PaymentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(registry) = self.registry.upgrade() else {
            ctx.stop();
            return;
        };
        ctx.set_mailbox_capacity(registry.mailbox());
        let idle = registry.idle();
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

impl PaymentActor {
    /// Runs `work` on the tokio runtime and answers once it is done, holding
    /// the mailbox meanwhile: the next message starts only after this one.
    /// `clock`: the request's, which the work's connector calls add to.
    fn serialize<T, F, Fut>(
        &mut self,
        clock: Option<RequestClock>,
        work: F,
    ) -> AtomicResponse<Self, Result<T, PaymentError>>
    where
        T: Send + 'static,
        F: FnOnce(Arc<PaymentService>, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, PaymentError>> + Send + 'static,
    {
        self.last_active = Instant::now();
        let Some(registry) = self.registry.upgrade() else {
            return AtomicResponse::new(Box::pin(
                async {
                    Err(PaymentError::Unavailable(
                        "the payment service (shutting down)",
                    ))
                }
                .into_actor(self),
            ));
        };
        let task = registry.runtime().spawn(RequestClock::run(
            clock,
            work(registry.service().clone(), self.reference.clone()),
        ));
        AtomicResponse::new(Box::pin(
            async move {
                task.await.unwrap_or_else(|err| {
                    Err(PaymentError::Internal(format!(
                        "payment task failed: {err}"
                    )))
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

impl Handler<Envelope> for PaymentActor {
    type Result = AtomicResponse<Self, Result<Payment, PaymentError>>;

    fn handle(
        &mut self,
        Envelope(command, clock): Envelope,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        self.serialize(clock, |service, reference| async move {
            match command {
                Command::Initialize {
                    opening,
                    callback_url,
                    route,
                    answer,
                } => {
                    service
                        .open_at_provider(opening, callback_url, &route, answer)
                        .await
                }
                Command::Verify {
                    client_id,
                    client_reference,
                } => {
                    service
                        .verify(client_id, &client_reference, &reference)
                        .await
                }
                Command::Reconcile { abandon } => service.reconcile(&reference, abandon).await,
            }
        })
    }
}

impl Handler<WebhookEnvelope> for PaymentActor {
    type Result = AtomicResponse<Self, Result<WebhookApplied, PaymentError>>;

    fn handle(
        &mut self,
        WebhookEnvelope(record, event): WebhookEnvelope,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        self.serialize(None, |service, _| async move {
            match event {
                WebhookChange::Event(event) => service.apply_webhook(&record, event).await,
                WebhookChange::Confirm {
                    transaction_id,
                    last_try,
                } => {
                    service
                        .confirm_webhook(&record, transaction_id, last_try)
                        .await
                }
            }
        })
    }
}

impl Handler<RefundEnvelope> for PaymentActor {
    type Result = AtomicResponse<Self, Result<Refund, PaymentError>>;

    fn handle(
        &mut self,
        RefundEnvelope(refund_id, command, clock): RefundEnvelope,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        self.serialize(clock, |service, _| async move {
            match command {
                RefundCommand::Send => service.send_refund(refund_id).await,
                RefundCommand::Reconcile { review_after } => {
                    service.reconcile_refund(refund_id, review_after).await
                }
            }
        })
    }
}

impl Handler<RefundWebhookEnvelope> for PaymentActor {
    type Result = AtomicResponse<Self, Result<bool, PaymentError>>;

    fn handle(
        &mut self,
        RefundWebhookEnvelope(record, notice, report): RefundWebhookEnvelope,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        self.serialize(None, |service, _| async move {
            service.apply_refund_webhook(&record, &notice, report).await
        })
    }
}
