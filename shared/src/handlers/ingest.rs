//! `POST /v1/events`: validate, claim the event id, record the event and queue it for routing.

use jiff::Timestamp;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::domain::ids::{dedup_id_for, message_group_for};
use crate::domain::{Event, FieldError, Tenant, storable};
use crate::jobs::{RouteJob, encode};
use crate::metrics::{self, RejectReason};
use crate::ports::queue::MAX_MESSAGE_BYTES;
use crate::ports::{Clock, EventRecord, EventStore, OutgoingMessage, QueueSender};
use crate::topology::events_queue;

#[derive(Clone, Debug)]
pub struct IngestSettings {
    /// Largest accepted body. An event travels in one SQS message (256 KiB at most) with a
    /// little routing metadata around it, so the default leaves 16 KiB of headroom.
    pub max_body_bytes: usize,
    /// Events per second each API key may submit, across every instance (none: unlimited).
    pub rate_per_key: Option<u32>,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 240 * 1024,
            rate_per_key: None,
        }
    }
}

pub struct IngestDeps {
    pub catalog: Arc<Catalog>,
    pub events: Arc<dyn EventStore>,
    pub queue: Arc<dyn QueueSender>,
    pub clock: Arc<dyn Clock>,
    /// The per-key submission rate, shared by every instance.
    pub rate_limits: Arc<dyn crate::ports::RateLimiter>,
    pub settings: IngestSettings,
}

/// Whether a key may submit one more event now: `Ok(None)` go, `Ok(Some(wait))` over its rate.
/// `key_id` names the key without revealing it (a prefix of its SHA-256). A limiter failure lets
/// the event through: ingest stays up when the rate table is not (the API's own throttling
/// still holds), and the failure is logged.
pub async fn check_rate(deps: &IngestDeps, key_id: &str) -> Option<(Duration, u32)> {
    let rate = deps.settings.rate_per_key?;
    match deps.rate_limits.acquire(&format!("ingest:{key_id}"), rate, deps.clock.now()).await {
        Ok(crate::ports::Pace::Go) => None,
        Ok(crate::ports::Pace::Wait(wait)) => Some((wait, rate)),
        Err(e) => {
            tracing::warn!(error = %e, "ingest rate limit not checked: the limiter is unavailable");
            None
        }
    }
}

/// How far ahead `send_after` may be: a scheduled event waits on the `deferred` queue in hops
/// of 15 minutes, each one paid for.
pub const MAX_SCHEDULE_AHEAD: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The body of `202 Accepted` (and of its replays): the event as the caller named it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AcceptedEvent {
    pub event_id: String,
    pub event_type: String,
    pub status: Acceptance,
    /// The priority in force: the event's own, else its type's default.
    pub priority: crate::domain::Priority,
    #[schema(value_type = String, format = DateTime)]
    pub accepted_at: Timestamp,
    pub links: Links,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Acceptance {
    Accepted,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Links {
    /// Where the event's status is read: `GET /v1/events/{event_id}`.
    #[serde(rename = "self")]
    pub self_: String,
}

/// The answer to a submission; a replay carries the first answer's status and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub status: u16,
    pub body: String,
    pub location: String,
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IngestError {
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body is not JSON: {0}")]
    Malformed(String),
    /// The envelope is invalid (`event_id`, `user_id`, `priority` …), or the event holds what
    /// can never be stored or queued (see [`storable`]).
    #[error("the event is invalid")]
    Invalid(Vec<FieldError>),
    #[error("the event type is not in the catalog")]
    UnknownEventType(Vec<FieldError>),
    /// The payload fails its event type's JSON Schema.
    #[error("the payload does not match its event type's schema")]
    SchemaViolation(Vec<FieldError>),
    /// The `event_id` names another event: one with a live idempotency record of another body,
    /// or a recorded event that differs, however old.
    #[error("event_id was already used for a different event")]
    Conflict,
    /// Another request holds the `event_id`'s claim; it lapses after `retry_after` (whole
    /// seconds, at least one) if that request dies. No longer answered by [`submit_event`]: the
    /// event record is the claim, and a repeat is answered `202` once it has queued the event
    /// itself. Kept so that the `409 in-progress` problem clients may meet stays described.
    #[error("a request with this event_id is still being processed")]
    InProgress { retry_after: Duration },
    /// A backing service failed: the same request may succeed later.
    #[error("service unavailable")]
    Unavailable,
}

impl IngestError {
    /// The `Reason` this answer counts under in `EventsRejected`.
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            IngestError::TooLarge { .. } => RejectReason::PayloadTooLarge,
            IngestError::Malformed(_) => RejectReason::MalformedJson,
            IngestError::Invalid(_) => RejectReason::InvalidEvent,
            IngestError::UnknownEventType(_) => RejectReason::UnknownEventType,
            IngestError::SchemaViolation(_) => RejectReason::SchemaViolation,
            IngestError::Conflict => RejectReason::IdempotencyConflict,
            IngestError::InProgress { .. } => RejectReason::InProgress,
            IngestError::Unavailable => RejectReason::Unavailable,
        }
    }
}

pub fn location_of(event_id: &str) -> String {
    format!("/v1/events/{event_id}")
}

/// Submits one event for `tenant` (the one the caller's API key belongs to): its event id and
/// user are scoped by the tenant from here on; the answer names them as the caller did.
pub async fn submit_event(deps: &IngestDeps, tenant: &Tenant, body: &[u8]) -> Result<Accepted, IngestError> {
    let recorded = record_submission(deps, tenant, body).await?;
    queue_recorded(deps, std::slice::from_ref(&recorded)).await?;
    Ok(recorded.accept())
}

/// An event validated and recorded, its route job not yet queued: [`queue_recorded`] queues it,
/// then [`Recorded::accept`] answers. `POST /v1/events/batch` records each of its events, then
/// queues them together (one `SendMessageBatch` per lane for up to ten).
#[derive(Debug)]
pub struct Recorded {
    record: EventRecord,
    written: bool,
    local_event_id: String,
    message: OutgoingMessage,
}

/// Validates one event and records it, or finds it recorded (a repeat).
pub async fn record_submission(deps: &IngestDeps, tenant: &Tenant, body: &[u8]) -> Result<Recorded, IngestError> {
    if body.len() > deps.settings.max_body_bytes {
        return Err(IngestError::TooLarge { limit: deps.settings.max_body_bytes });
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| IngestError::Malformed(e.to_string()))?;
    let event = Event::parse(&value).map_err(IngestError::Invalid)?;
    if let Some(at) = event.send_after
        && at > deps.clock.now().checked_add(MAX_SCHEDULE_AHEAD).unwrap_or(at)
    {
        return Err(IngestError::Invalid(vec![FieldError::new("/send_after", "must be at most 30 days ahead")]));
    }
    let local_event_id = event.event_id.as_str().to_owned();
    let event = Event { event_id: tenant.event(&event.event_id), user_id: tenant.user(&event.user_id), ..event };
    let Some(event_type) = deps.catalog.event_type(&event.event_type) else {
        return Err(IngestError::UnknownEventType(vec![FieldError::new("/event_type", format!("unknown event type {:?}", event.event_type))]));
    };
    event_type.check_payload(&event.payload).map_err(IngestError::SchemaViolation)?;
    // What DynamoDB or SQS refuses would fail every attempt: refuse it now, not with a 503.
    let unstorable = storable::check_event(&value);
    if !unstorable.is_empty() {
        return Err(IngestError::Invalid(unstorable));
    }

    let now = deps.clock.now();
    let priority = event.priority.unwrap_or(event_type.priority);
    let fresh = EventRecord { event, priority, lane: priority.lane(), accepted_at: now };
    if route_job(&fresh).len() > MAX_MESSAGE_BYTES {
        return Err(IngestError::TooLarge { limit: deps.settings.max_body_bytes });
    }
    // The event record is the idempotency record: one conditional write claims the event id
    // and records the event. The record in force is ours, or the one an earlier request with
    // this event_id wrote (a repeat, however old; another body under it is a conflict).
    let (record, written) = record_event(deps, fresh).await?;
    // A repeat queues the recorded event again: the earlier request may have failed to queue it
    // (or may still be about to), and no answer is 202 before the event is on its queue. The
    // queue drops a copy sent within five minutes (the same dedup id), and routing a copy later
    // changes nothing (notification ids derive from event and channel; the sender's claim is
    // conditional).
    let key = record.event.event_id.as_str();
    let message = OutgoingMessage::fifo(route_job(&record), message_group_for(&record.event.user_id), dedup_id_for(key));
    Ok(Recorded { record, written, local_event_id, message })
}

/// Queues the route jobs of recorded events: one `SendMessageBatch` per lane for every ten, in
/// the order given (a user's events stay in order). On failure none of them may be answered
/// `202`; they stay recorded, and a retry of the request queues them.
pub async fn queue_recorded(deps: &IngestDeps, recorded: &[Recorded]) -> Result<(), IngestError> {
    for lane in crate::domain::Lane::ALL {
        let messages: Vec<OutgoingMessage> = recorded.iter().filter(|r| r.record.lane == lane).map(|r| r.message.clone()).collect();
        if messages.is_empty() {
            continue;
        }
        if let Err(error) = deps.queue.send_batch(&events_queue(lane), messages).await {
            let ids: Vec<&str> = recorded.iter().filter(|r| r.record.lane == lane).map(|r| r.record.event.event_id.as_str()).collect();
            tracing::error!(%error, event_ids = ?ids, "could not queue the events");
            return Err(IngestError::Unavailable);
        }
    }
    Ok(())
}

impl Recorded {
    /// The answer, once the event is queued: from the record in force, so a repeat of an event
    /// answers as its first acceptance did.
    pub fn accept(self) -> Accepted {
        let Recorded { record, written, local_event_id, .. } = self;
        let location = location_of(&local_event_id);
        let body = serde_json::to_string(&AcceptedEvent {
            event_id: local_event_id,
            event_type: record.event.event_type.clone(),
            status: Acceptance::Accepted,
            priority: record.priority,
            accepted_at: record.accepted_at,
            links: Links { self_: location.clone() },
        })
        .unwrap_or_default();
        let key = record.event.event_id.as_str();
        if written {
            metrics::event_accepted(record.lane);
            tracing::info!(event_id = %key, event_type = %record.event.event_type, priority = record.priority.as_str(), "event accepted");
        } else {
            tracing::info!(event_id = %key, "event was already recorded; answered as first accepted");
        }
        Accepted { status: 202, body, location, replayed: !written }
    }
}

fn route_job(record: &EventRecord) -> String {
    encode(&RouteJob { event: record.event.clone(), priority: record.priority, accepted_at: record.accepted_at, fallback: None })
}

/// Writes `fresh` unless an event with its id is recorded. Returns the record in force and
/// whether this call wrote it; an event recorded with another body is a [`IngestError::Conflict`]
/// however old it is.
async fn record_event(deps: &IngestDeps, fresh: EventRecord) -> Result<(EventRecord, bool), IngestError> {
    let event_id = fresh.event.event_id.clone();
    match deps.events.put_event(&fresh).await {
        Ok(true) => return Ok((fresh, true)),
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, %event_id, "could not record the event");
            return Err(IngestError::Unavailable);
        }
    }
    match deps.events.get_event(&event_id).await {
        Ok(Some(stored)) if stored.event.same_as(&fresh.event) => Ok((stored, false)),
        Ok(Some(_)) => Err(IngestError::Conflict),
        Ok(None) => {
            // Deleted (retention) between the write and the read: a retry writes it afresh.
            tracing::warn!(%event_id, "the recorded event vanished before it could be compared");
            Err(IngestError::Unavailable)
        }
        Err(e) => {
            tracing::error!(error = %e, %event_id, "could not read the recorded event");
            Err(IngestError::Unavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use crate::adapters::memory::queue::MemoryQueue;
    use crate::adapters::memory::store::MemoryStore;
    use crate::domain::storable::MAX_PAYLOAD_DEPTH;
    use crate::domain::{EventId, Lane, Priority};
    use crate::jobs::decode;
    use crate::ports::{QueueError, QueueReceiver, StoreError};
    use crate::topology::all_queues;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Mutex, OnceLock};

    // -----------------------------------------------------------------------------------------
    // Doubles.

    /// A clock that stands still until stepped.
    struct StepClock(Mutex<Timestamp>);

    impl StepClock {
        fn advance(&self, d: Duration) {
            let mut t = self.0.lock().unwrap();
            *t = t.checked_add(d).unwrap();
        }
    }

    impl Clock for StepClock {
        fn now(&self) -> Timestamp {
            *self.0.lock().unwrap()
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Op {
        PutEvent,
        GetEvent,
    }

    /// The in-process store, counting calls; each call named in `down` fails as an outage.
    #[derive(Default)]
    struct Store {
        inner: MemoryStore,
        down: Mutex<Vec<Op>>,
        calls: Mutex<Vec<Op>>,
        /// `put_event` answers "exists" without writing, as if the event were recorded and then
        /// deleted by retention before `get_event` looks.
        vanishing: AtomicBool,
    }

    impl Store {
        fn fail(&self, op: Op) {
            self.down.lock().unwrap().push(op);
        }

        fn heal(&self) {
            self.down.lock().unwrap().clear();
        }

        fn calls(&self, op: Op) -> usize {
            self.calls.lock().unwrap().iter().filter(|c| **c == op).count()
        }

        fn call(&self, op: Op) -> Result<(), StoreError> {
            self.calls.lock().unwrap().push(op);
            if self.down.lock().unwrap().contains(&op) {
                return Err(StoreError::Unavailable(format!("{op:?} is down")));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl EventStore for Store {
        async fn put_event(&self, record: &EventRecord) -> Result<bool, StoreError> {
            self.call(Op::PutEvent)?;
            if self.vanishing.load(Ordering::SeqCst) {
                return Ok(false);
            }
            self.inner.put_event(record).await
        }

        async fn get_event(&self, event_id: &EventId) -> Result<Option<EventRecord>, StoreError> {
            self.call(Op::GetEvent)?;
            self.inner.get_event(event_id).await
        }
    }

    /// The in-process queues, counting sends; while `down`, every send fails as an outage.
    struct Queue {
        inner: MemoryQueue,
        down: AtomicBool,
        sends: AtomicUsize,
    }

    #[async_trait]
    impl QueueSender for Queue {
        async fn send_batch(&self, queue: &str, messages: Vec<OutgoingMessage>) -> Result<(), QueueError> {
            self.sends.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(QueueError::Unavailable("the queue is down".into()));
            }
            self.inner.send_batch(queue, messages).await
        }
    }

    struct Harness {
        deps: IngestDeps,
        store: Arc<Store>,
        queue: Arc<Queue>,
        clock: Arc<StepClock>,
    }

    fn catalog() -> Arc<Catalog> {
        static CATALOG: OnceLock<Arc<Catalog>> = OnceLock::new();
        CATALOG.get_or_init(|| Arc::new(Catalog::embedded().expect("the repository catalog loads"))).clone()
    }

    const T0: &str = "2026-11-22T10:00:00Z";

    fn harness() -> Harness {
        harness_with(IngestSettings::default())
    }

    fn harness_with(settings: IngestSettings) -> Harness {
        let store = Arc::new(Store::default());
        let queue = Arc::new(Queue {
            inner: MemoryQueue::new(&all_queues(&Default::default())),
            down: AtomicBool::new(false),
            sends: AtomicUsize::new(0),
        });
        let clock = Arc::new(StepClock(Mutex::new(T0.parse().unwrap())));
        let deps = IngestDeps {
            catalog: catalog(),
            events: store.clone(),
            queue: queue.clone(),
            clock: clock.clone(),
            rate_limits: Arc::new(crate::adapters::memory::store::MemoryStore::new()),
            settings,
        };
        Harness { deps, store, queue, clock }
    }

    impl Harness {
        async fn submit(&self, body: &Value) -> Result<Accepted, IngestError> {
            submit_event(&self.deps, &Tenant::default_tenant(), body.to_string().as_bytes()).await
        }

        async fn depth(&self, lane: Lane) -> usize {
            self.queue.inner.depth(&events_queue(lane)).await.unwrap()
        }

        fn sends(&self) -> usize {
            self.queue.sends.load(Ordering::SeqCst)
        }

        async fn stored(&self, event_id: &str) -> Option<EventRecord> {
            self.store.inner.get_event(&EventId::parse(event_id).unwrap()).await.unwrap()
        }

        /// The route jobs waiting on `lane`, received (and so hidden) for inspection.
        async fn take_jobs(&self, lane: Lane) -> Vec<RouteJob> {
            let messages = self.queue.inner.receive(&events_queue(lane), 10, Duration::ZERO).await.unwrap();
            messages.iter().map(|m| decode::<RouteJob>(&m.body, "route job").unwrap()).collect()
        }
    }

    /// `order.completed`: `high` by default, so the fast lane.
    fn order(event_id: &str) -> Value {
        json!({
            "event_id": event_id,
            "event_type": "order.completed",
            "user_id": "u-42",
            "payload": {"order_id": "A-17", "total": "59.90", "currency": "EUR"},
        })
    }

    /// `user.registered`: `normal` by default, so the bulk lane.
    fn welcome(event_id: &str) -> Value {
        json!({"event_id": event_id, "event_type": "user.registered", "user_id": "u-7", "payload": {"name": "Ada"}})
    }

    fn with_payload(mut body: Value, member: &str, value: Value) -> Value {
        body["payload"][member] = value;
        body
    }

    fn answer(accepted: &Accepted) -> Value {
        serde_json::from_str(&accepted.body).unwrap()
    }

    fn t0() -> Timestamp {
        T0.parse().unwrap()
    }

    // -----------------------------------------------------------------------------------------
    // Accepted.

    #[tokio::test]
    async fn an_accepted_event_is_recorded_and_queued_on_its_priority_lane() {
        let h = harness();
        assert_eq!((h.depth(Lane::Fast).await, h.depth(Lane::Bulk).await), (0, 0));

        let accepted = h.submit(&order("evt-1")).await.unwrap();
        assert_eq!((accepted.status, accepted.location.as_str(), accepted.replayed), (202, "/v1/events/evt-1", false));
        let body = answer(&accepted);
        assert_eq!(body["status"], "accepted");
        assert_eq!(body["priority"], "high");
        assert_eq!(body["accepted_at"], T0);
        assert_eq!((h.depth(Lane::Fast).await, h.depth(Lane::Bulk).await), (1, 0));
        let record = h.stored("evt-1").await.expect("the event is recorded");
        assert_eq!((record.priority, record.lane, record.accepted_at), (Priority::High, Lane::Fast, t0()));
        let jobs = h.take_jobs(Lane::Fast).await;
        assert_eq!(jobs.len(), 1);
        assert_eq!((jobs[0].event.event_id.as_str(), jobs[0].priority, jobs[0].accepted_at), ("evt-1", Priority::High, t0()));

        let accepted = h.submit(&welcome("evt-2")).await.unwrap();
        assert_eq!(answer(&accepted)["priority"], "normal");
        assert_eq!(h.depth(Lane::Bulk).await, 1);

        // The event's own priority overrides its type's.
        let mut low = order("evt-3");
        low["priority"] = json!("low");
        assert_eq!(answer(&h.submit(&low).await.unwrap())["priority"], "low");
        assert_eq!(h.depth(Lane::Bulk).await, 2);
        assert_eq!(h.stored("evt-3").await.unwrap().lane, Lane::Bulk);
    }

    #[tokio::test]
    async fn send_after_is_bounded_to_thirty_days_ahead() {
        let h = harness();
        let at = |days: i64| (t0() + jiff::SignedDuration::from_hours(24 * days)).to_string();
        let mut later = order("evt-later");
        later["send_after"] = json!(at(30));
        assert!(h.submit(&later).await.is_ok(), "30 days ahead is fine");
        let mut too_late = order("evt-too-late");
        too_late["send_after"] = json!(at(31));
        let Err(IngestError::Invalid(errors)) = h.submit(&too_late).await else { panic!("refused") };
        assert_eq!(errors[0].path, "/send_after");
        assert!(h.stored("evt-too-late").await.is_none());
    }

    #[tokio::test]
    async fn a_tenants_event_is_kept_under_its_scoped_ids_and_answered_with_its_own() {
        let h = harness();
        let acme = Tenant::parse("acme").unwrap();
        let accepted = submit_event(&h.deps, &acme, order("evt-1").to_string().as_bytes()).await.unwrap();
        assert_eq!((answer(&accepted)["event_id"].as_str(), accepted.location.as_str()), (Some("evt-1"), "/v1/events/evt-1"));
        let again = submit_event(&h.deps, &Tenant::default_tenant(), order("evt-1").to_string().as_bytes()).await.unwrap();
        assert!(!again.replayed, "the same id of another tenant is another event");
        let stored = h.store.inner.get_event(&EventId::parse_stored("acme#evt-1").unwrap()).await.unwrap().expect("scoped");
        assert_eq!(stored.event.user_id.as_str(), format!("acme#{}", order("x")["user_id"].as_str().unwrap()));
        let jobs = h.queue.inner.receive(&events_queue(Lane::Fast), 10, Duration::ZERO).await.unwrap();
        assert!(jobs.iter().any(|m| m.group_id.as_deref().is_some_and(|g| g.starts_with("acme#"))), "grouped by tenant#user");
        assert!(jobs.iter().any(|m| m.group_id.as_deref().is_some_and(|g| g.starts_with("default#"))));
    }

    // -----------------------------------------------------------------------------------------
    // Idempotency records.

    #[tokio::test]
    async fn a_repeat_replays_the_first_answer_and_queues_the_event_again_under_its_dedup_id() {
        let h = harness();
        let first = h.submit(&order("evt-1")).await.unwrap();
        h.clock.advance(Duration::from_secs(3600));
        // Key order and spacing do not make another body.
        let text = r#"{ "payload": {"currency": "EUR", "total": "59.90", "order_id": "A-17"},
                        "user_id": "u-42", "event_type": "order.completed", "event_id": "evt-1" }"#;
        let again = submit_event(&h.deps, &Tenant::default_tenant(), text.as_bytes()).await.unwrap();
        assert_eq!(again, Accepted { replayed: true, ..first });
        assert_eq!(h.store.calls(Op::GetEvent), 1, "the recorded event was compared");
        // Queued again (the first request may not have got that far), and dropped by the queue
        // as a copy: the same deduplication id.
        assert_eq!(h.sends(), 2);
        assert_eq!(h.depth(Lane::Fast).await, 1);
        assert_eq!(h.stored("evt-1").await.unwrap().accepted_at, t0(), "the first acceptance stands");
    }

    #[tokio::test]
    async fn another_body_under_a_recorded_event_is_a_conflict_however_old() {
        let h = harness();
        h.submit(&order("evt-1")).await.unwrap();
        let other = with_payload(order("evt-1"), "total", json!("99.00"));
        assert_eq!(h.submit(&other).await, Err(IngestError::Conflict));
        h.clock.advance(Duration::from_secs(30 * 24 * 3600));
        assert_eq!(h.submit(&other).await, Err(IngestError::Conflict));
        assert_eq!(h.sends(), 1, "the other body is never queued");
        assert_eq!(h.stored("evt-1").await.unwrap().event.payload["total"], "59.90");
    }

    #[tokio::test]
    async fn a_repeat_while_the_first_request_has_not_queued_yet_queues_it_and_is_accepted() {
        // The first request recorded the event and is still on its way to the queue (or died
        // before it got there): the repeat queues the event itself before answering.
        let h = harness();
        let body = order("evt-1");
        let event = Event::parse(&body).unwrap();
        let record = EventRecord { event, priority: Priority::High, lane: Lane::Fast, accepted_at: t0() };
        assert!(h.store.inner.put_event(&record).await.unwrap());
        h.clock.advance(Duration::from_millis(12_500));
        let accepted = h.submit(&body).await.unwrap();
        assert_eq!((accepted.status, accepted.replayed), (202, true));
        assert_eq!(answer(&accepted)["accepted_at"], T0, "the first acceptance's time");
        let jobs = h.take_jobs(Lane::Fast).await;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].accepted_at, t0());
        // Another body meanwhile is a conflict, and queues nothing.
        let other = with_payload(order("evt-1"), "total", json!("1.00"));
        assert_eq!(h.submit(&other).await, Err(IngestError::Conflict));
        assert_eq!(h.sends(), 1);
    }

    #[tokio::test]
    async fn a_recorded_event_with_integral_floats_is_the_same_event() {
        // DynamoDB hands `59.0` back as `59`; the in-process store keeps the float, so the record
        // is rewritten here as DynamoDB would return it.
        let h = harness();
        let body = with_payload(order("evt-1"), "weight", json!(59.0));
        let first = h.submit(&body).await.unwrap();
        let mut record = h.stored("evt-1").await.unwrap();
        record.event.payload["weight"] = json!(59);
        let store = MemoryStore::new();
        store.put_event(&record).await.unwrap();
        let h2 = Harness { deps: IngestDeps { events: Arc::new(store), ..h.deps }, ..h };
        h2.clock.advance(Duration::from_secs(3600));
        assert_eq!(h2.submit(&body).await.unwrap().body, first.body);
    }

    // -----------------------------------------------------------------------------------------
    // Outages.

    #[tokio::test]
    async fn a_failed_event_write_is_unavailable_and_queues_nothing() {
        let h = harness();
        h.store.fail(Op::PutEvent);
        assert_eq!(h.submit(&order("evt-1")).await, Err(IngestError::Unavailable));
        assert_eq!((h.sends(), h.stored("evt-1").await), (0, None));

        h.store.heal();
        let accepted = h.submit(&order("evt-1")).await.unwrap();
        assert_eq!((accepted.status, accepted.replayed), (202, false));
        assert_eq!(h.depth(Lane::Fast).await, 1);
    }

    #[tokio::test]
    async fn a_failed_send_is_unavailable_and_the_retry_queues_the_recorded_event() {
        let h = harness();
        h.queue.down.store(true, Ordering::SeqCst);
        assert_eq!(h.submit(&order("evt-1")).await, Err(IngestError::Unavailable));
        assert_eq!(h.depth(Lane::Fast).await, 0);
        assert_eq!(h.stored("evt-1").await.unwrap().accepted_at, t0(), "recorded before the send failed");

        h.queue.down.store(false, Ordering::SeqCst);
        h.clock.advance(Duration::from_secs(5));
        let accepted = h.submit(&order("evt-1")).await.unwrap();
        assert_eq!(accepted.status, 202);
        assert_eq!(answer(&accepted)["accepted_at"], T0, "answered from the recorded event");
        assert_eq!(h.depth(Lane::Fast).await, 1);
        assert_eq!(h.take_jobs(Lane::Fast).await[0].accepted_at, t0());
    }

    #[tokio::test]
    async fn a_failed_read_of_the_recorded_event_is_unavailable() {
        let h = harness();
        let first = h.submit(&order("evt-1")).await.unwrap();
        h.store.fail(Op::GetEvent);
        assert_eq!(h.submit(&order("evt-1")).await, Err(IngestError::Unavailable));
        assert_eq!(h.sends(), 1, "nothing queued without the comparison");
        h.store.heal();
        assert_eq!(h.submit(&order("evt-1")).await.unwrap().body, first.body);
    }

    #[tokio::test]
    async fn an_event_gone_between_write_and_read_is_unavailable() {
        let h = harness();
        h.store.vanishing.store(true, Ordering::SeqCst);
        assert_eq!(h.submit(&order("evt-1")).await, Err(IngestError::Unavailable));
        assert_eq!((h.store.calls(Op::GetEvent), h.sends()), (1, 0));
        h.store.vanishing.store(false, Ordering::SeqCst);
        assert!(!h.submit(&order("evt-1")).await.unwrap().replayed);
        assert_eq!(h.depth(Lane::Fast).await, 1);
    }

    // -----------------------------------------------------------------------------------------
    // Rejected before the claim.

    #[tokio::test]
    async fn unstorable_payloads_are_invalid_with_each_failing_path() {
        let h = harness();
        let mut deep = json!({});
        for _ in 1..MAX_PAYLOAD_DEPTH {
            deep = json!({ "n": deep });
        }
        let body = json!({
            "event_id": "evt-1",
            "event_type": "order.completed",
            "user_id": "u-42",
            "payload": {
                "order_id": "A-17", "total": "59.90", "currency": "EUR",
                "big": 1e130, "tiny": -1e-131, "fine": 1e125,
                "deep": deep,
                "na\u{FFFF}me": "x", "a/b": ["ok", "x\u{FFFE}"],
            },
        });
        let Err(IngestError::Invalid(errors)) = h.submit(&body).await else { panic!("not invalid") };
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        let too_deep = format!("/payload/deep{}", "/n".repeat(MAX_PAYLOAD_DEPTH - 1));
        assert_eq!(paths, vec!["/payload/big", "/payload/tiny", too_deep.as_str(), "/payload/a~1b/1", "/payload/na\u{FFFF}me"]);
        assert_eq!(IngestError::Invalid(errors).reject_reason(), RejectReason::InvalidEvent);
        assert_eq!((h.store.calls(Op::PutEvent), h.sends()), (0, 0));

        // The escaped form is the same character.
        let escaped = r#"{"event_id": "evt-2", "event_type": "user.registered", "user_id": "u-7", "payload": {"name": "Ada\uffff"}}"#;
        let Err(IngestError::Invalid(errors)) = submit_event(&h.deps, &Tenant::default_tenant(), escaped.as_bytes()).await else { panic!("not invalid") };
        assert_eq!(errors.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), vec!["/payload/name"]);

        // One level less is stored and queued.
        let mut ok = json!({});
        for _ in 2..MAX_PAYLOAD_DEPTH {
            ok = json!({ "n": ok });
        }
        let fine = with_payload(with_payload(order("evt-3"), "deep", ok), "big", json!(9.999e125));
        assert_eq!(h.submit(&fine).await.unwrap().status, 202);
        assert_eq!(h.depth(Lane::Fast).await, 1);
    }

    #[tokio::test]
    async fn bad_input_is_refused_before_anything_is_claimed() {
        let h = harness_with(IngestSettings { max_body_bytes: 1024, ..IngestSettings::default() });
        let big = with_payload(order("evt-1"), "note", json!("x".repeat(2000)));
        assert_eq!(h.submit(&big).await, Err(IngestError::TooLarge { limit: 1024 }));
        assert!(matches!(submit_event(&h.deps, &Tenant::default_tenant(), b"{not json").await, Err(IngestError::Malformed(_))));
        let Err(IngestError::Invalid(errors)) = h.submit(&json!({"event_type": "order.completed"})).await else { panic!() };
        assert!(errors.iter().any(|e| e.path == "/event_id"));
        let Err(IngestError::UnknownEventType(errors)) = h.submit(&json!({"event_id": "e", "event_type": "no.such", "user_id": "u"})).await else {
            panic!()
        };
        assert_eq!(errors[0].path, "/event_type");
        let Err(IngestError::SchemaViolation(errors)) = h.submit(&with_payload(order("evt-1"), "currency", json!("euro"))).await else {
            panic!()
        };
        assert_eq!(errors[0].path, "/payload/currency");
        assert_eq!((h.store.calls(Op::PutEvent), h.sends()), (0, 0));
    }

    #[tokio::test]
    async fn a_route_job_over_the_sqs_limit_is_too_large_and_releases_the_claim() {
        // A body limit above SQS's, so the job's own check is what refuses.
        let h = harness_with(IngestSettings { max_body_bytes: 2 * MAX_MESSAGE_BYTES, ..IngestSettings::default() });
        let huge = with_payload(order("evt-1"), "note", json!("x".repeat(MAX_MESSAGE_BYTES)));
        assert_eq!(h.submit(&huge).await, Err(IngestError::TooLarge { limit: 2 * MAX_MESSAGE_BYTES }));
        assert_eq!((h.store.calls(Op::PutEvent), h.sends()), (0, 0));
        assert_eq!(h.submit(&order("evt-1")).await.unwrap().status, 202);
    }

    #[tokio::test]
    async fn a_key_over_its_rate_is_told_to_wait_for_the_next_second_and_others_are_not() {
        let h = harness_with(IngestSettings { rate_per_key: Some(2), ..IngestSettings::default() });
        assert_eq!(check_rate(&h.deps, "key-a").await, None);
        assert_eq!(check_rate(&h.deps, "key-a").await, None);
        let (wait, rate) = check_rate(&h.deps, "key-a").await.expect("the third in one second waits");
        assert_eq!(rate, 2);
        assert!(wait <= Duration::from_secs(1) && !wait.is_zero(), "{wait:?}");
        assert_eq!(check_rate(&h.deps, "key-b").await, None, "each key has its own budget");
        {
            let mut now = h.clock.0.lock().unwrap();
            *now = now.checked_add(Duration::from_secs(1)).unwrap();
        }
        assert_eq!(check_rate(&h.deps, "key-a").await, None, "the next second has a new budget");
        let unlimited = harness();
        for _ in 0..10 {
            assert_eq!(check_rate(&unlimited.deps, "key-a").await, None);
        }
    }
}