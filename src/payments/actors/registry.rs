//! The registry of live payment actors: creates one on first use, and lets
//! an idle one leave without racing a message that is on its way to it.
//!
//! Beside each entry sits a count of messages in flight, changed only under
//! the map-shard lock that eviction also takes. An actor leaves only when
//! that count is zero, so a sender that found the entry is always served by
//! it; a sender that arrives after it left creates a fresh actor.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use actix::{Actor, Addr, Handler, MailboxError, Message};
use dashmap::DashMap;

use uuid::Uuid;

use super::{
    ActorSystem,
    payment::{
        Command, Envelope, Home, PaymentActor, RefundCommand, RefundEnvelope,
        RefundWebhookEnvelope, WebhookEnvelope,
    },
};
use crate::{
    domain::RefundReport,
    domain::webhook::RefundNotice,
    payments::{PaymentError, WebhookApplied, WebhookChange, service::PaymentService},
    store::refunds::Refund,
    store::{payments::Payment, webhooks::WebhookRecord},
    timing::RequestClock,
};

struct Entry {
    addr: Addr<PaymentActor>,
    generation: u64,
    in_flight: usize,
}

struct RegistryInner {
    actors: DashMap<String, Entry>,
    generations: AtomicU64,
    system: ActorSystem,
    pub(super) service: Arc<PaymentService>,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) idle: Duration,
    pub(super) mailbox: usize,
}

impl Home for RegistryInner {
    fn service(&self) -> &Arc<PaymentService> {
        &self.service
    }

    fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    fn idle(&self) -> Duration {
        self.idle
    }

    fn mailbox(&self) -> usize {
        self.mailbox
    }

    fn evict(&self, reference: &str, generation: u64) -> bool {
        let evicted = self
            .actors
            .remove_if(reference, |_, entry| {
                entry.generation == generation && entry.in_flight == 0
            })
            .is_some();
        if evicted {
            metrics::gauge!("payorch_payment_actors").decrement(1.0);
        }
        evicted
    }
}

#[derive(Clone)]
pub struct PaymentRegistry {
    inner: Arc<RegistryInner>,
}

/// Gives back the in-flight slot even if the caller's future is dropped
/// (a client that hung up): the message itself is still processed.
struct InFlight<'a> {
    inner: &'a RegistryInner,
    reference: &'a str,
    generation: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(mut entry) = self.inner.actors.get_mut(self.reference)
            && entry.generation == self.generation
        {
            entry.in_flight -= 1;
        }
    }
}

impl PaymentRegistry {
    /// Must be called inside the tokio runtime the work should run on.
    pub(crate) fn new(
        service: Arc<PaymentService>,
        system: ActorSystem,
        idle: Duration,
        mailbox: usize,
    ) -> PaymentRegistry {
        PaymentRegistry {
            inner: Arc::new(RegistryInner {
                actors: DashMap::new(),
                generations: AtomicU64::new(0),
                system,
                service,
                runtime: tokio::runtime::Handle::current(),
                idle,
                mailbox: mailbox.max(1),
            }),
        }
    }

    /// Live actors in this process.
    pub fn len(&self) -> usize {
        self.inner.actors.len()
    }

    /// Sends `command` to the payment's actor and waits for its answer. A
    /// full mailbox is a 503 with `Retry-After`, never an unbounded queue.
    pub async fn call(&self, reference: &str, command: Command) -> Result<Payment, PaymentError> {
        self.send(reference, Envelope(command, RequestClock::current()))
            .await
    }

    /// Applies a webhook through the payment's actor: its `event`, or
    /// (`None`) what the payment's connector reports.
    pub async fn apply_webhook(
        &self,
        record: WebhookRecord,
        event: WebhookChange,
    ) -> Result<WebhookApplied, PaymentError> {
        let reference = record.reference.clone();
        self.send(&reference, WebhookEnvelope(record, event)).await
    }

    /// Sends the refund to the provider through the payment's actor (at
    /// most once per refund).
    pub async fn send_refund(
        &self,
        reference: &str,
        refund_id: Uuid,
    ) -> Result<Refund, PaymentError> {
        self.send(
            reference,
            RefundEnvelope(refund_id, RefundCommand::Send, RequestClock::current()),
        )
        .await
    }

    /// Finds out what became of a pending refund, through the payment's actor.
    pub async fn reconcile_refund(
        &self,
        reference: &str,
        refund_id: Uuid,
        review_after: std::time::Duration,
    ) -> Result<Refund, PaymentError> {
        self.send(
            reference,
            RefundEnvelope(refund_id, RefundCommand::Reconcile { review_after }, None),
        )
        .await
    }

    /// Applies a refund webhook through the payment's actor.
    pub async fn apply_refund_webhook(
        &self,
        record: WebhookRecord,
        notice: RefundNotice,
        report: RefundReport,
    ) -> Result<bool, PaymentError> {
        let reference = record.reference.clone();
        self.send(&reference, RefundWebhookEnvelope(record, notice, report))
            .await
    }

    async fn send<M, R>(&self, reference: &str, message: M) -> Result<R, PaymentError>
    where
        M: Message<Result = Result<R, PaymentError>> + Send + 'static,
        R: Send + 'static,
        PaymentActor: Handler<M>,
    {
        let (addr, generation) = self.claim(reference)?;
        let _slot = InFlight {
            inner: &self.inner,
            reference,
            generation,
        };
        match addr.send(message).await {
            Ok(result) => result,
            // The actor stopped (shutdown) and its work may still be running:
            // not sent again, which could race it. The caller may retry.
            Err(MailboxError::Closed) => Err(PaymentError::Unavailable("the payment service")),
            Err(MailboxError::Timeout) => Err(PaymentError::Unavailable("this payment")),
        }
    }

    /// Finds or starts the actor and takes an in-flight slot, under the shard lock.
    fn claim(&self, reference: &str) -> Result<(Addr<PaymentActor>, u64), PaymentError> {
        let inner = &self.inner;
        let mut entry = inner.actors.entry(reference.to_owned()).or_insert_with(|| {
            let generation = inner.generations.fetch_add(1, Ordering::Relaxed);
            let registry: Weak<dyn Home> = Arc::downgrade(inner) as Weak<RegistryInner>;
            let reference = reference.to_owned();
            let addr =
                PaymentActor::start_in_arbiter(inner.system.arbiter(), move |_| PaymentActor {
                    reference,
                    generation,
                    registry,
                    last_active: Instant::now(),
                });
            metrics::gauge!("payorch_payment_actors").increment(1.0);
            Entry {
                addr,
                generation,
                in_flight: 0,
            }
        });
        if entry.in_flight >= inner.mailbox {
            return Err(PaymentError::Busy);
        }
        entry.in_flight += 1;
        Ok((entry.addr.clone(), entry.generation))
    }

    /// Stops every actor (shutdown).
    pub fn stop(&self) {
        metrics::gauge!("payorch_payment_actors").decrement(self.inner.actors.len() as f64);
        self.inner.actors.clear();
        self.inner.system.stop();
    }
}
