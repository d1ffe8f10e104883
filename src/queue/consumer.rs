//! The one consumer loop, for both backends and both consumers (the
//! webhook worker and the merchant-event deliverer). It takes messages
//! while it holds fewer batches than it may, hands them to the handler a
//! batch at a time (a single message is a batch of one), turns each
//! [`Disposition`] into a [`Settlement`] by the one policy
//! ([`super::settle`]), and has the backend carry that out: a message is
//! acknowledged only once its next home is safe. A handler that panics
//! sends its whole batch to the retry tier instead of holding it forever.
//!
//! On shutdown it stops taking new messages (RabbitMQ cancels the
//! consumer; the queue table still drains what is ready for a while),
//! finishes the batches it holds, and returns.
//!
//! A handler may leave a message to be decided later, on its own
//! ([`Decision::Later`]: a webhook whose connector must be asked first):
//! the rest of its batch is settled at once and the consumer takes the
//! next batch; the message is settled alone when its answer comes. While
//! such a message is outstanding no acknowledgement covers it: batches
//! are acknowledged message by message until it is settled.
//!
//! A backend supplies an [`Inbox`]: how it takes messages, how it waits
//! for more, and how it settles them ([`Settler`]).

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use futures_util::{FutureExt, future::BoxFuture};
use tokio::task::JoinSet;

use super::{Disposition, Envelope, RetryPolicy, settle::Settlement};

/// How a consumer takes its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intake {
    /// Messages held unacknowledged at most (RabbitMQ's prefetch).
    pub prefetch: u16,
    /// Messages handed to the handler together, at most.
    pub batch: usize,
    /// Batches handled at once, at most.
    pub batches: usize,
}

impl Intake {
    /// One message at a time, up to `prefetch` of them at once.
    pub fn singly(prefetch: u16) -> Intake {
        Intake {
            prefetch,
            batch: 1,
            batches: usize::from(prefetch.max(1)),
        }
    }

    /// Up to `batch` messages together (no more than `prefetch`), one
    /// batch at a time: a batch is settled before the next is taken, so
    /// RabbitMQ can acknowledge it whole (`multiple`).
    pub fn batched(prefetch: u16, batch: usize) -> Intake {
        Intake {
            prefetch,
            batch: batch.clamp(1, usize::from(prefetch.max(1))),
            batches: 1,
        }
    }

    /// Whether one acknowledgement may cover a whole batch and everything
    /// before it (RabbitMQ's `multiple`): only when no other batch is held.
    pub fn acks_whole_batches(&self) -> bool {
        self.batches == 1
    }
}

/// What a handler made of one message.
pub enum Decision {
    /// Settled with the rest of its batch.
    Now(Disposition),
    /// Settled on its own once this finishes, without holding up the rest
    /// of its batch or the next one.
    Later(BoxFuture<'static, Disposition>),
}

impl From<Disposition> for Decision {
    fn from(disposition: Disposition) -> Decision {
        Decision::Now(disposition)
    }
}

/// A message taken from a backend: what settles it, and what it carries —
/// or why it cannot be read (such a message is parked as it came).
pub(super) struct Taken<R> {
    pub receipt: R,
    pub envelope: Result<Envelope, String>,
}

/// What an [`Inbox`] had.
pub(super) enum Take<R> {
    Messages(Vec<Taken<R>>),
    /// Nothing at the moment.
    Nothing,
    /// The source is gone (a lost connection): finish what is held, return.
    Broken,
}

/// How a handled message ends.
#[expect(
    clippy::large_enum_variant,
    reason = "one per message in hand, moved once; boxing would allocate for every message"
)]
pub(super) enum Verdict {
    Settled(Envelope, Settlement),
    Unreadable(String),
}

/// A backend's consuming side.
pub(super) trait Inbox: Send {
    type Receipt: Send + 'static;
    type Settler: Settler<Receipt = Self::Receipt>;

    /// Up to `max` messages, without waiting for a first one. After
    /// [`Self::stop`], what the backend still hands out while draining.
    fn take(&mut self, max: usize) -> impl Future<Output = Take<Self::Receipt>> + Send;

    /// Returns when [`Self::take`] may find something; cancel-safe.
    fn wait(&mut self) -> impl Future<Output = ()> + Send;

    /// Shutdown: no new deliveries; `held` batches are being finished.
    fn stop(&mut self, held: usize) -> impl Future<Output = ()> + Send;

    fn settler(&self) -> Self::Settler;
}

/// A backend's settling side, shared by the batches in flight.
pub(super) trait Settler: Clone + Send + Sync + 'static {
    type Receipt: Send + 'static;

    /// Carries out each message's verdict, in the order taken; `whole`
    /// when one acknowledgement may cover the batch and everything taken
    /// before it (no other message is outstanding).
    fn settle(
        &self,
        batch: Vec<(Self::Receipt, Verdict)>,
        whole: bool,
    ) -> impl Future<Output = ()> + Send;
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// Shutdown: everything held was finished.
    Stopped,
    /// The inbox broke; what it held was finished. Open another.
    Broken,
}

/// The consumer loop over one inbox, until `shutdown` or until it breaks.
pub(super) async fn run<I, S, H, F>(
    inbox: &mut I,
    intake: Intake,
    retry: &RetryPolicy,
    mut shutdown: Pin<&mut S>,
    handle: &H,
) -> Ended
where
    I: Inbox,
    S: Future<Output = ()>,
    H: Fn(Vec<Envelope>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Vec<Decision>> + Send + 'static,
{
    let batch = Batch {
        settler: inbox.settler(),
        retry: Arc::new(retry.clone()),
        whole: intake.acks_whole_batches(),
        outstanding: Arc::default(),
    };
    let mut in_flight = JoinSet::new();
    // Messages decided later; in batches, RabbitMQ's prefetch bounds them.
    let mut later = JoinSet::new();
    let mut stopping = false;
    let ended = loop {
        let held = in_flight.len() + if batch.whole { 0 } else { later.len() };
        let room = intake.batches.saturating_sub(held);
        if room > 0 {
            match inbox.take(room * intake.batch).await {
                Take::Messages(taken) => {
                    let mut taken = taken.into_iter().peekable();
                    while taken.peek().is_some() {
                        let taken: Vec<_> = taken.by_ref().take(intake.batch).collect();
                        in_flight.spawn(batch.clone().handle(taken, handle.clone()));
                    }
                    continue;
                }
                Take::Broken => break Ended::Broken,
                Take::Nothing if stopping && in_flight.is_empty() && later.is_empty() => {
                    break Ended::Stopped;
                }
                Take::Nothing => {}
            }
        }
        let shutdown_now = tokio::select! {
            _ = shutdown.as_mut(), if !stopping => true,
            _ = inbox.wait(), if room > 0 && !stopping => false,
            Some(settled) = later.join_next(), if !later.is_empty() => {
                if let Err(err) = settled {
                    // Its message is unsettled and holds a place until the
                    // session ends: end it, and the broker redelivers it.
                    tracing::error!(error = %err, "a message decided later was not settled; reconnecting");
                    break Ended::Broken;
                }
                false
            }
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => match joined {
                Ok(rest) => {
                    for one in rest {
                        later.spawn(one);
                    }
                    false
                }
                Err(err) => {
                    // A batch that died before it was settled leaves its
                    // messages unsettled: with them outstanding, a later
                    // whole-batch acknowledgement would cover them too.
                    // Give up the session; the broker redelivers them.
                    tracing::error!(error = %err, "a batch ended without settling; reconnecting");
                    break Ended::Broken;
                }
            },
        };
        if shutdown_now {
            stopping = true;
            inbox.stop(in_flight.len() + later.len()).await;
        }
    };
    while let Some(joined) = in_flight.join_next().await {
        for one in joined.unwrap_or_default() {
            later.spawn(one);
        }
    }
    while later.join_next().await.is_some() {}
    ended
}

/// What settles the batches of one consumer loop.
#[derive(Clone)]
struct Batch<T> {
    settler: T,
    retry: Arc<RetryPolicy>,
    /// Whether the intake lets one acknowledgement cover a batch.
    whole: bool,
    /// Messages decided later and not yet settled.
    outstanding: Arc<AtomicUsize>,
}

impl<T: Settler> Batch<T> {
    /// Hands one batch to the handler and settles each message it decided
    /// now; what settles each one it decides later (one task each).
    async fn handle<H, F>(
        self,
        taken: Vec<Taken<T::Receipt>>,
        handle: H,
    ) -> Vec<BoxFuture<'static, ()>>
    where
        H: Fn(Vec<Envelope>) -> F,
        F: Future<Output = Vec<Decision>>,
    {
        let envelopes: Vec<Envelope> = taken
            .iter()
            .filter_map(|t| t.envelope.as_ref().ok().cloned())
            .collect();
        let mut decisions = if envelopes.is_empty() {
            Vec::new()
        } else {
            guarded(&handle, envelopes).await
        }
        .into_iter();
        let mut now = Vec::with_capacity(taken.len());
        let mut later = Vec::new();
        for Taken { receipt, envelope } in taken {
            match envelope {
                Ok(envelope) => match decisions.next() {
                    Some(Decision::Later(decided)) => later.push((receipt, envelope, decided)),
                    Some(Decision::Now(disposition)) => {
                        now.push((receipt, self.verdict(envelope, &disposition)));
                    }
                    None => {
                        let disposition = Disposition::Retry("no disposition".into());
                        now.push((receipt, self.verdict(envelope, &disposition)));
                    }
                },
                Err(reason) => now.push((receipt, Verdict::Unreadable(reason))),
            }
        }
        // Counted before anything is settled: no acknowledgement may cover
        // a message still being decided.
        self.outstanding.fetch_add(later.len(), Ordering::SeqCst);
        let whole = self.whole && self.outstanding.load(Ordering::SeqCst) == 0;
        if !now.is_empty() {
            self.settler.settle(now, whole).await;
        }
        later
            .into_iter()
            .map(|(receipt, envelope, decided)| {
                let batch = self.clone();
                async move {
                    let disposition = guarded_later(decided, &envelope).await;
                    let verdict = batch.verdict(envelope, &disposition);
                    batch.settler.settle(vec![(receipt, verdict)], false).await;
                    batch.outstanding.fetch_sub(1, Ordering::SeqCst);
                }
                .boxed()
            })
            .collect()
    }

    fn verdict(&self, envelope: Envelope, disposition: &Disposition) -> Verdict {
        let settlement = Settlement::of(disposition, envelope.attempt, &self.retry);
        Verdict::Settled(envelope, settlement)
    }
}

/// A later decision; a panic retries the message later.
async fn guarded_later(
    decided: BoxFuture<'static, Disposition>,
    envelope: &Envelope,
) -> Disposition {
    std::panic::AssertUnwindSafe(decided)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            tracing::error!(
                dedup_key = envelope.message.dedup_key(),
                "message handling panicked; retrying it later"
            );
            Disposition::Retry("handling panicked".into())
        })
}

/// The handler's decisions; a panic retries the whole batch later.
async fn guarded<H, F>(handle: &H, envelopes: Vec<Envelope>) -> Vec<Decision>
where
    H: Fn(Vec<Envelope>) -> F,
    F: Future<Output = Vec<Decision>>,
{
    let count = envelopes.len();
    let first = envelopes[0].message.dedup_key().to_owned();
    std::panic::AssertUnwindSafe(handle(envelopes))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            tracing::error!(
                count,
                dedup_key = first,
                "message handling panicked; retrying the batch later"
            );
            (0..count)
                .map(|_| Decision::Now(Disposition::Retry("handling panicked".into())))
                .collect()
        })
}

/// A handler of one message as a handler of batches (of one).
pub fn one_at_a_time<H, F>(
    handle: H,
) -> impl Fn(Vec<Envelope>) -> BoxFuture<'static, Vec<Decision>> + Clone + Send + Sync + 'static
where
    H: Fn(Envelope) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Disposition> + Send + 'static,
{
    move |envelopes: Vec<Envelope>| {
        let handled: Vec<F> = envelopes.into_iter().map(&handle).collect();
        async move {
            futures_util::future::join_all(handled)
                .await
                .into_iter()
                .map(Decision::Now)
                .collect()
        }
        .boxed()
    }
}
