//! Delivering one event to one endpoint, per Standard Webhooks: `POST`
//! the stored body with `webhook-id` (the event id, the same on every
//! attempt), `webhook-timestamp` (fresh per attempt) and
//! `webhook-signature`. A 2xx is delivered; anything else — a 3xx
//! included (redirects are not followed), a timeout, a refused connection
//! — is retried on the events queue's schedule, after a 429/503's
//! `Retry-After` at the earliest; `410 Gone` disables the endpoint. Every
//! attempt is a row of `event_attempts`.
//!
//! One merchant's slow endpoints cannot hold up the others' deliveries:
//! they run concurrently, at most [`PER_CLIENT`] for one merchant (API
//! client) and [`PER_ENDPOINT`] to one endpoint. A delivery past its
//! merchant's share waits for a place up to [`SHARE_WAIT`] while the
//! merchant's attempts keep finishing, and is otherwise deferred — back
//! after the first retry delay, not counted as an attempt — instead of
//! holding a place another merchant needs. When an endpoint's slots are
//! all taken, a delivery to it waits for one if the endpoint keeps
//! answering, and is deferred if it has not finished an attempt for
//! [`STUCK_AFTER`]. An endpoint whose last
//! attempt timed out gets one attempt at a time: the others are not sent
//! and count as failed attempts ("not sent: …"), so its events move along
//! their retry schedule instead of waiting on it. Deferrals are counted in
//! the message: after [`MAX_DEFERRALS`] in a row the next one counts as an
//! attempt too, so no delivery is put off without end.
//!
//! Per delivery the database is not asked much: the body comes with the
//! message, endpoints are cached for [`ENDPOINT_TTL`], and attempts are
//! written together by one [`AttemptLog`] task (a message is acknowledged
//! only once its attempt row committed; an attempt that could not be
//! recorded defers its message, see [`after_attempt`]).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use dashmap::DashMap;
use sea_orm::DatabaseConnection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::{egress::Egress, secrets::EndpointSecrets, signing, ssrf};
use crate::{
    queue::{Disposition, Envelope, EventDelivery, QueueMessage, RetryPolicy, WebhookQueue},
    store::{
        endpoints::{self, Endpoint},
        events::{self, NewAttempt},
    },
};

/// Attempts in flight to one endpoint, at most.
pub const PER_ENDPOINT: usize = 16;
/// Attempts one merchant (API client) has in flight at once, at most: half
/// of what the deliverer holds.
pub const PER_CLIENT: usize = PREFETCH as usize / 2;
/// How long a delivery waits for a place in its merchant's share while
/// the merchant's attempts keep finishing.
pub const SHARE_WAIT: Duration = Duration::from_millis(250);
/// Deferrals of one delivery in a row; the next counts as an attempt.
pub const MAX_DEFERRALS: u32 = 10;
/// What an attempt that got no answer in time records.
const TIMED_OUT: &str = "timed out";
/// How long a delivery waits for a slot of an answering endpoint before it
/// is deferred (not counted as an attempt).
pub const SLOT_WAIT: Duration = Duration::from_secs(5);
/// An endpoint with every slot taken and no attempt finished for this long
/// is stuck: its further deliveries are deferred at once.
pub const STUCK_AFTER: Duration = Duration::from_secs(1);
/// Delivery messages one process holds at once.
pub const PREFETCH: u16 = 256;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);
/// How long an endpoint read is reused (a change, a deletion or a disable
/// takes effect within it).
pub const ENDPOINT_TTL: Duration = Duration::from_secs(1);
/// Endpoints cached at most; beyond, the cache starts again.
const MAX_CACHED: usize = 10_000;
/// Attempts written in one statement at most.
const ATTEMPT_BATCH: usize = 500;
/// How often the failure-streak series of deleted or disabled endpoints
/// are dropped (those this process does not see go).
pub const STREAK_CHECK: Duration = Duration::from_secs(30);

/// Delivers events; cheap to clone.
#[derive(Clone)]
pub struct Deliverer {
    db: DatabaseConnection,
    /// The HTTP client, and the SSRF check that goes with its route.
    egress: Egress,
    retry: RetryPolicy,
    /// Each endpoint's [`PER_ENDPOINT`] attempt slots.
    in_flight: Arc<DashMap<Uuid, Arc<Slots>>>,
    /// Each merchant's [`PER_CLIENT`] places.
    shares: Arc<DashMap<Uuid, Arc<Slots>>>,
    endpoints: Arc<DashMap<Uuid, (Instant, Option<Endpoint>)>>,
    attempts: AttemptLog,
    /// Where a failed part of a message for several endpoints goes.
    requeue: Option<WebhookQueue>,
    /// Opens the endpoints' sealed signing secrets.
    secrets: EndpointSecrets,
}

type Recorded = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Writes delivery attempts in batches: what is waiting when the writer is
/// free goes in one insert.
#[derive(Clone)]
struct AttemptLog {
    tx: tokio::sync::mpsc::Sender<(NewAttempt, Recorded)>,
}

impl AttemptLog {
    fn start(db: DatabaseConnection) -> AttemptLog {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(NewAttempt, Recorded)>(4 * ATTEMPT_BATCH);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(ATTEMPT_BATCH);
            while rx.recv_many(&mut batch, ATTEMPT_BATCH).await > 0 {
                let (rows, waiting): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                let result = events::record_attempts(&db, rows)
                    .await
                    .map_err(|e| e.to_string());
                for recorded in waiting {
                    let _ = recorded.send(result.clone());
                }
            }
        });
        AttemptLog { tx }
    }

    async fn record(&self, attempt: NewAttempt) -> Result<(), String> {
        let (recorded, done) = tokio::sync::oneshot::channel();
        self.tx
            .send((attempt, recorded))
            .await
            .map_err(|_| "the attempt log stopped".to_owned())?;
        done.await
            .map_err(|_| "the attempt log stopped".to_owned())?
    }
}

/// How one attempt ended.
#[derive(Debug)]
struct Tried {
    response_status: Option<u16>,
    error: Option<String>,
    retry_after: Option<Duration>,
}

impl Deliverer {
    pub fn new(
        db: DatabaseConnection,
        retry: RetryPolicy,
        timeout: Duration,
        allow_private: bool,
        proxy: Option<&reqwest::Url>,
        secrets: EndpointSecrets,
    ) -> Deliverer {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3).min(timeout))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("payorch-events/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(PER_ENDPOINT);
        Deliverer {
            attempts: AttemptLog::start(db.clone()),
            db,
            egress: Egress::new(client, allow_private, proxy),
            retry,
            in_flight: Arc::default(),
            shares: Arc::default(),
            endpoints: Arc::default(),
            requeue: None,
            secrets,
        }
    }

    /// Consumes the events queue until `shutdown`.
    pub async fn run(self, queue: WebhookQueue, shutdown: impl std::future::Future<Output = ()>) {
        let deliverer = Deliverer {
            requeue: Some(queue.clone()),
            ..self
        };
        let streaks = tokio::spawn(forget_gone_streaks(deliverer.db.clone()));
        queue
            .consume(PREFETCH, shutdown, move |envelope| {
                let deliverer = deliverer.clone();
                async move { deliverer.handle(envelope).await }
            })
            .await;
        streaks.abort();
    }

    /// Delivers one queued message to its endpoints, concurrently; what
    /// becomes of the message. With several endpoints, each one's failure
    /// is queued again for that endpoint alone (those put off, together),
    /// and the message is done.
    pub async fn handle(&self, envelope: Envelope) -> Disposition {
        let QueueMessage::EventDelivery(delivery) = envelope.message else {
            return Disposition::Park("not an event delivery".into());
        };
        let body = match delivery.body {
            Some(body) => body,
            None => match events::find(&self.db, &delivery.event_id).await {
                Ok(Some(event)) => event.body,
                Ok(None) => return Disposition::Ack,
                Err(err) => return Disposition::Defer(format!("database: {err}")),
            },
        };
        let attempt = envelope.attempt;
        let deferred = delivery.deferred;
        if let [only] = delivery.endpoints.as_slice() {
            let disposition = self
                .deliver(&delivery.event_id, *only, &body, attempt, deferred)
                .await;
            // A deferral goes back with its count, and an attempt made
            // after deferrals with the count back at 0 (the consumer would
            // send the message back as it came).
            let deferred = match disposition {
                Disposition::Defer(_) => deferred + 1,
                Disposition::Retry(_) | Disposition::RetryNotBefore(..) if deferred > 0 => 0,
                _ => return disposition,
            };
            let Some(queue) = &self.requeue else {
                return disposition;
            };
            let again = for_endpoints(&delivery.event_id, vec![*only], &body, attempt, deferred);
            return match queue.requeue(&again, &disposition).await {
                Ok(()) => Disposition::Ack,
                Err(err) => Disposition::Defer(format!("could not queue a retry: {err}")),
            };
        }
        let Some(queue) = &self.requeue else {
            return Disposition::Park("a delivery to several endpoints outside a consumer".into());
        };
        let outcomes =
            futures_util::future::join_all(delivery.endpoints.iter().map(|endpoint| {
                self.deliver(&delivery.event_id, *endpoint, &body, attempt, deferred)
            }))
            .await;
        let mut requeued = Ok(());
        // The endpoints put off go back together, as one message.
        let mut put_off = Vec::new();
        let mut why = None;
        for (endpoint, disposition) in delivery.endpoints.iter().zip(outcomes) {
            match disposition {
                Disposition::Ack => continue,
                Disposition::Defer(_) => {
                    put_off.push(*endpoint);
                    why = Some(disposition);
                    continue;
                }
                _ => {}
            }
            let again = for_endpoints(&delivery.event_id, vec![*endpoint], &body, attempt, 0);
            if let Err(err) = queue.requeue(&again, &disposition).await {
                requeued = Err(err);
            }
        }
        if let Some(why) = why {
            let again = for_endpoints(&delivery.event_id, put_off, &body, attempt, deferred + 1);
            if let Err(err) = queue.requeue(&again, &why).await {
                requeued = Err(err);
            }
        }
        match requeued {
            Ok(()) => Disposition::Ack,
            // All again, delivered ones too (receivers deduplicate).
            Err(err) => Disposition::Defer(format!("could not queue a retry: {err}")),
        }
    }

    /// One attempt of `event_id` to `endpoint_id`, put off `deferred`
    /// times since the last; what becomes of it.
    async fn deliver(
        &self,
        event_id: &str,
        endpoint_id: Uuid,
        body: &str,
        attempt: u32,
        deferred: u32,
    ) -> Disposition {
        let endpoint = match self.endpoint(endpoint_id).await {
            Ok(Some(endpoint)) if endpoint.enabled => endpoint,
            Ok(_) => {
                tracing::debug!(endpoint = %endpoint_id, "endpoint deleted or disabled; delivery dropped");
                crate::telemetry::failure_streak::forget(endpoint_id);
                metrics::counter!("payorch_event_deliveries_total", "result" => "skipped")
                    .increment(1);
                return Disposition::Ack;
            }
            Err(err) => return Disposition::Defer(format!("database: {err}")),
        };
        let (tried, elapsed) = match self.slot(&endpoint).await {
            Ok(slot) => {
                let started = Instant::now();
                let tried = self.post(&endpoint, event_id, body).await;
                let elapsed = started.elapsed();
                slot.finished(&tried);
                metrics::histogram!("payorch_event_attempt_seconds").record(elapsed.as_secs_f64());
                (tried, elapsed)
            }
            Err(Busy::Deferred(why)) if deferred < MAX_DEFERRALS => {
                metrics::counter!("payorch_event_deliveries_total", "result" => "deferred")
                    .increment(1);
                return Disposition::Defer(why.into());
            }
            Err(busy) => (busy.not_sent(deferred), Duration::ZERO),
        };
        let delivered = tried.error.is_none();
        let last = self.retry.delay_after(attempt).is_none();
        let gone = tried.response_status == Some(410);
        let status = if delivered {
            "delivered"
        } else if last || gone {
            "failed"
        } else {
            "retrying"
        };
        let recorded = self
            .attempts
            .record(NewAttempt {
                event_id: event_id.to_owned(),
                endpoint_id: endpoint.id,
                attempt,
                at: Utc::now(),
                status,
                response_status: tried.response_status,
                duration_ms: elapsed.as_millis() as u64,
                error: tried.error.clone(),
            })
            .await;
        if let Err(err) = &recorded {
            tracing::warn!(error = %err, event = event_id, "could not record a delivery attempt");
        }
        metrics::counter!("payorch_event_deliveries_total", "result" => status).increment(1);
        crate::telemetry::failure_streak::record(endpoint.id, delivered);
        if delivered {
            tracing::debug!(event = event_id, endpoint = %endpoint.id, "event delivered");
        } else {
            tracing::info!(
                event = event_id,
                endpoint = %endpoint.id,
                attempt,
                status,
                error = tried.error.as_deref().unwrap_or_default(),
                "event delivery failed"
            );
        }
        if gone {
            tracing::warn!(endpoint = %endpoint.id, "endpoint answered 410 Gone; disabling it");
            if let Err(err) = endpoints::disable(&self.db, endpoint.id).await {
                tracing::warn!(error = %err, "could not disable an endpoint");
            }
            self.endpoints.remove(&endpoint.id);
            crate::telemetry::failure_streak::forget(endpoint.id);
        }
        after_attempt(status, tried, recorded)
    }

    /// The endpoint, read at most once per [`ENDPOINT_TTL`].
    async fn endpoint(&self, id: Uuid) -> Result<Option<Endpoint>, sea_orm::DbErr> {
        if let Some(cached) = self.endpoints.get(&id)
            && cached.0.elapsed() < ENDPOINT_TTL
        {
            return Ok(cached.1.clone());
        }
        let endpoint = endpoints::find(&self.db, id).await?;
        if self.endpoints.len() >= MAX_CACHED {
            self.endpoints.clear();
        }
        self.endpoints
            .insert(id, (Instant::now(), endpoint.clone()));
        Ok(endpoint)
    }

    /// A place for an attempt to `endpoint`, held until dropped: one of its
    /// merchant's [`PER_CLIENT`] and one of the endpoint's
    /// [`PER_ENDPOINT`]. Not when the endpoint's last attempt timed out and
    /// another is in flight, nor when its merchant's share is in use. When
    /// the endpoint's slots are all taken, a delivery waits for one (at
    /// most [`SLOT_WAIT`]) if the endpoint is answering — it finished an
    /// attempt within the last [`STUCK_AFTER`] — and otherwise gets none:
    /// an endpoint that hangs holds its slots, not the consumer's.
    async fn slot(&self, endpoint: &Endpoint) -> Result<Slot, Busy> {
        let slots = place(
            &self.in_flight,
            endpoint.id,
            || Slots::new(PER_ENDPOINT),
            |slots| slots.free.available_permits() < PER_ENDPOINT,
        );
        if slots.timing_out.load(Ordering::Relaxed) && slots.free.available_permits() < PER_ENDPOINT
        {
            return Err(Busy::NotAnswering);
        }
        let shares = place(
            &self.shares,
            endpoint.client_id,
            || Slots::new(PER_CLIENT),
            |share| share.free.available_permits() < PER_CLIENT,
        );
        const SHARE_IN_USE: Busy = Busy::Deferred("its merchant's share of deliveries is in use");
        let share = match shares.free.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) if shares.answered_within(STUCK_AFTER) => {
                tokio::time::timeout(SHARE_WAIT, shares.free.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .ok_or(SHARE_IN_USE)?
            }
            Err(_) => return Err(SHARE_IN_USE),
        };
        let permit = match slots.free.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) if slots.answered_within(STUCK_AFTER) => {
                tokio::time::timeout(SLOT_WAIT, slots.free.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .ok_or(Busy::Deferred("endpoint busy"))?
            }
            Err(_) => return Err(Busy::Deferred("endpoint busy")),
        };
        Ok(Slot {
            _permit: permit,
            _share: share,
            slots,
            shares,
        })
    }

    async fn post(&self, endpoint: &Endpoint, id: &str, body: &str) -> Tried {
        let failed = |error: String| Tried {
            response_status: None,
            error: Some(error),
            retry_after: None,
        };
        let url = match ssrf::parse(&endpoint.url) {
            Ok(url) => url,
            Err(err) => return failed(format!("endpoint URL {err}")),
        };
        if let Err(err) = self.egress.check(&url).await {
            return failed(format!("endpoint URL {err}"));
        }
        let now = Utc::now();
        let timestamp = now.timestamp();
        let secrets = match self.secrets.signing(endpoint, now) {
            Ok(secrets) => secrets,
            Err(err) => {
                tracing::warn!(endpoint = %endpoint.id, error = %err, "cannot open an endpoint's signing secret");
                return failed(format!("signing secret {err}"));
            }
        };
        let signature = signing::signature_header(
            secrets.iter().map(|secret| secret.expose()),
            id,
            timestamp,
            body,
        );
        let sent = self
            .egress
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_owned())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) if err.is_timeout() => return failed(TIMED_OUT.into()),
            Err(err) if err.is_connect() => {
                return failed(format!("cannot connect: {}", source_of(&err)));
            }
            Err(err) => return failed(format!("request failed: {}", source_of(&err))),
        };
        let status = response.status();
        if status.is_success() {
            return Tried {
                response_status: Some(status.as_u16()),
                error: None,
                retry_after: None,
            };
        }
        let retry_after = matches!(status.as_u16(), 429 | 503)
            .then(|| response.headers().get("retry-after"))
            .flatten()
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(|seconds| Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
        Tried {
            response_status: Some(status.as_u16()),
            error: Some(format!("answered {status}")),
            retry_after,
        }
    }
}

/// What becomes of a message after an attempt with `status` (`delivered`,
/// `failed` or `retrying`): acknowledged only once its attempt row is
/// recorded. An attempt that could not be recorded is deferred — sent
/// again later, not counted (receivers deduplicate by `webhook-id`) —
/// rather than acknowledged with no trace in `event_attempts`.
fn after_attempt(status: &str, tried: Tried, recorded: Result<(), String>) -> Disposition {
    if let Err(err) = recorded {
        return Disposition::Defer(format!("the attempt could not be recorded: {err}"));
    }
    if status != "retrying" {
        return Disposition::Ack;
    }
    let error = tried.error.unwrap_or_default();
    match tried.retry_after {
        Some(after) => Disposition::RetryNotBefore(error, after),
        None => Disposition::Retry(error),
    }
}

/// Every [`STREAK_CHECK`], drops the failure-streak series of endpoints
/// deleted or disabled since (by the API, perhaps in another process, with
/// no delivery here to notice).
async fn forget_gone_streaks(db: DatabaseConnection) {
    use crate::telemetry::failure_streak;
    let mut every = tokio::time::interval(STREAK_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let tracked = failure_streak::endpoints();
        if tracked.is_empty() {
            continue;
        }
        match endpoints::enabled_among(&db, tracked.iter().copied()).await {
            Ok(enabled) => {
                for id in tracked.into_iter().filter(|id| !enabled.contains(id)) {
                    failure_streak::forget(id);
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "could not check endpoints for their failure streaks")
            }
        }
    }
}

/// The innermost cause: reqwest's own message names only the URL.
fn source_of(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The entry for `key` in `map`, made by `new` if missing. A map grown to
/// [`MAX_CACHED`] first drops the entries not `in_use`.
fn place<T>(
    map: &DashMap<Uuid, Arc<T>>,
    key: Uuid,
    new: impl FnOnce() -> Arc<T>,
    in_use: impl Fn(&T) -> bool,
) -> Arc<T> {
    if map.len() >= MAX_CACHED {
        map.retain(|_, entry| in_use(entry));
    }
    map.entry(key).or_insert_with(new).clone()
}

/// Why a delivery gets no place now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    /// Put off, not counted: the merchant's share or the endpoint's slots
    /// are in use.
    Deferred(&'static str),
    /// Not sent, counted: the endpoint's last attempt timed out and another
    /// is still waiting for its answer.
    NotAnswering,
}

impl Busy {
    /// The attempt a delivery that was not sent counts as.
    fn not_sent(self, deferred: u32) -> Tried {
        let why = match self {
            Busy::Deferred(why) => format!("{why}, put off {deferred} times"),
            Busy::NotAnswering => {
                "the endpoint's last attempt timed out and another is in flight".to_owned()
            }
        };
        Tried {
            response_status: None,
            error: Some(format!("not sent: {why}")),
            retry_after: None,
        }
    }
}

/// One endpoint's attempt slots (or one merchant's places), when one was
/// last given back, and whether the endpoint's last attempt timed out.
struct Slots {
    free: Arc<Semaphore>,
    born: Instant,
    /// Milliseconds after `born` when an attempt last finished.
    last_done_ms: AtomicU64,
    timing_out: AtomicBool,
}

impl Slots {
    fn new(places: usize) -> Arc<Slots> {
        Arc::new(Slots {
            free: Arc::new(Semaphore::new(places)),
            born: Instant::now(),
            last_done_ms: Default::default(),
            timing_out: Default::default(),
        })
    }

    fn answered_within(&self, window: Duration) -> bool {
        let last = Duration::from_millis(self.last_done_ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last) < window
    }
}

/// A held place; giving it back marks the endpoint and its merchant as
/// answering.
struct Slot {
    _permit: OwnedSemaphorePermit,
    _share: OwnedSemaphorePermit,
    slots: Arc<Slots>,
    shares: Arc<Slots>,
}

impl Slot {
    /// Gives the place back after `tried`.
    fn finished(self, tried: &Tried) {
        let timed_out = tried.error.as_deref() == Some(TIMED_OUT);
        self.slots.timing_out.store(timed_out, Ordering::Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        for slots in [&self.slots, &self.shares] {
            let now = slots.born.elapsed().as_millis() as u64;
            slots.last_done_ms.store(now, Ordering::Relaxed);
        }
    }
}

/// `event_id` for `endpoints` (of one message), at `attempt`, put off
/// `deferred` times.
fn for_endpoints(
    event_id: &str,
    endpoints: Vec<Uuid>,
    body: &str,
    attempt: u32,
    deferred: u32,
) -> Envelope {
    let mut delivery = EventDelivery::new(event_id, endpoints, Some(body.to_owned()));
    delivery.deferred = deferred;
    Envelope {
        message: QueueMessage::EventDelivery(delivery),
        attempt,
        reason: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tried(response_status: Option<u16>, error: Option<&str>) -> Tried {
        Tried {
            response_status,
            error: error.map(str::to_owned),
            retry_after: None,
        }
    }

    #[test]
    fn an_attempt_that_was_not_recorded_is_never_acknowledged() {
        for (status, attempt) in [
            ("delivered", tried(Some(200), None)),
            ("failed", tried(Some(410), Some("answered 410 Gone"))),
            ("retrying", tried(Some(500), Some("answered 500"))),
        ] {
            let disposition = after_attempt(status, attempt, Err("pool closed".into()));
            assert!(
                matches!(&disposition, Disposition::Defer(why) if why.contains("pool closed")),
                "{status}: {disposition:?}"
            );
        }
    }

    #[test]
    fn a_recorded_attempt_is_acknowledged_unless_it_is_to_be_retried() {
        assert_eq!(
            after_attempt("delivered", tried(Some(204), None), Ok(())),
            Disposition::Ack
        );
        assert_eq!(
            after_attempt("failed", tried(None, Some("timed out")), Ok(())),
            Disposition::Ack
        );
        assert_eq!(
            after_attempt("retrying", tried(None, Some("timed out")), Ok(())),
            Disposition::Retry("timed out".into())
        );
        let limited = Tried {
            retry_after: Some(Duration::from_secs(30)),
            ..tried(Some(429), Some("answered 429"))
        };
        assert_eq!(
            after_attempt("retrying", limited, Ok(())),
            Disposition::RetryNotBefore("answered 429".into(), Duration::from_secs(30))
        );
    }
}
