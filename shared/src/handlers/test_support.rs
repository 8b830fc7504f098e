//! Doubles and fixtures for the handlers' unit tests: a stepping clock, a store and a queue over
//! the in-process adapters that can be told to fail, a scripted provider, and a harness that
//! builds every function's dependencies through `crate::wiring`, as the binaries do.

use async_trait::async_trait;
use futures::future::BoxFuture;
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::adapters::memory::queue::MemoryQueue;
use crate::adapters::memory::store::MemoryStore;
use crate::catalog::{Catalog, RenderContext};
use crate::domain::profile::PushToken;
use crate::domain::{Channel, Event, EventId, Guard, Notification, NotificationId, Preferences, Priority, Profile, Status, Transition, UserId};
use crate::handlers::dead_letter::DeadLetterDeps;
use crate::handlers::deferred::DeferredDeps;
use crate::handlers::fallback::FallbackDeps;
use crate::handlers::router::RouterDeps;
use crate::handlers::send::SendDeps;
use crate::handlers::sqs_batch::{Record, RetryPolicy};
use crate::jobs::{RouteJob, SendJob};
use crate::ports::{ProviderReceipt, 
    ChannelSender, Claim, Clock, Connection, ConnectionStore, Delivery, EventRecord, EventStore, IdempotencyStore, NotificationStore,
    OutgoingMessage, Page, ProfileStore, QueueError, QueueReceiver, QueueSender, ReceivedMessage, SendError, StoreError, StoredResponse,
    TransitionOutcome, UpsertOutcome, VisibilityControl,
};
use crate::ports::{DeadLetter, DeadLetterStore, Pace, RateLimiter, Suppression, SuppressionStore};
use crate::routing::address_for;
use crate::topology::all_queues;
use crate::wiring::{self, Ports, Settings};

// ---------------------------------------------------------------------------------------------
// Time.

/// Every test starts at this instant.
pub(crate) const T0: &str = "2026-11-22T10:00:00Z";

pub(crate) fn t0() -> Timestamp {
    T0.parse().expect("T0 is a timestamp")
}

/// A clock that stands still until stepped.
pub(crate) struct StepClock(Mutex<Timestamp>);

impl StepClock {
    pub(crate) fn at(t: Timestamp) -> Self {
        Self(Mutex::new(t))
    }

    pub(crate) fn advance(&self, d: Duration) {
        let mut t = self.0.lock().unwrap();
        *t = t.checked_add(d).expect("clock stays in range");
    }
}

impl Clock for StepClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Failure plans shared by the store and the queue.

/// How an armed operation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Fails without touching anything.
    Fail,
    /// Applies the call, then reports a failure (the answer was lost on its way back).
    ApplyThenFail,
}

struct Rule {
    op: &'static str,
    /// Calls of `op` that pass before this rule starts failing them.
    skip: u32,
    remaining: u32,
    mode: Failure,
}

#[derive(Default)]
struct Plan {
    rules: Mutex<Vec<Rule>>,
    calls: Mutex<HashMap<&'static str, u32>>,
}

impl Plan {
    fn arm(&self, known: &[&str], op: &'static str, skip: u32, n: u32, mode: Failure) {
        assert!(known.contains(&op), "no operation named {op:?}; known: {known:?}");
        self.rules.lock().unwrap().push(Rule { op, skip, remaining: n, mode });
    }

    /// Counts a call of `op` and says whether (and how) it fails.
    fn call(&self, op: &'static str) -> Option<Failure> {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
        let mut rules = self.rules.lock().unwrap();
        let rule = rules.iter_mut().find(|r| r.op == op && r.remaining > 0)?;
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        rule.remaining -= 1;
        Some(rule.mode)
    }

    fn calls(&self, op: &str) -> u32 {
        self.calls.lock().unwrap().get(op).copied().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------------
// The store.

const STORE_OPS: &[&str] = &[
    "claim",
    "complete",
    "release",
    "put_event",
    "get_event",
    "create",
    "get",
    "transition",
    "upsert",
    "list_for_event",
    "list_for_user",
    "get_profile",
    "put_profile",
    "get_preferences",
    "put_preferences",
    "get_recipient",
    "put_connection",
    "delete_connection",
    "connections_of",
    "active_connections",
    "suppress",
    "is_suppressed",
    "list_suppressions",
    "remove_suppression",
    "acquire",
    "lease",
    "record_dead_letter",
    "get_dead_letter",
    "list_dead_letters",
    "remove_dead_letter",
    "scrub_event_payload",
    "scrub_content",
    "delete_recipient",
];

/// Every store port over one [`MemoryStore`]; any named operation can be told to fail its next
/// calls with [`StoreError::Unavailable`].
#[derive(Default)]
pub(crate) struct FlakyStore {
    pub(crate) inner: MemoryStore,
    plan: Plan,
}

impl FlakyStore {
    /// The next `n` calls of `op` fail.
    pub(crate) fn fail_next(&self, op: &'static str, n: u32) {
        self.plan.arm(STORE_OPS, op, 0, n, Failure::Fail);
    }

    /// After `skip` more calls of `op` succeed, the next `n` fail.
    pub(crate) fn fail_after(&self, op: &'static str, skip: u32, n: u32) {
        self.plan.arm(STORE_OPS, op, skip, n, Failure::Fail);
    }

    /// After `skip` more calls of `op` succeed, the next `n` are applied and then reported failed.
    pub(crate) fn apply_then_fail_after(&self, op: &'static str, skip: u32, n: u32) {
        self.plan.arm(STORE_OPS, op, skip, n, Failure::ApplyThenFail);
    }

    /// How often `op` was called (failed calls included).
    pub(crate) fn calls(&self, op: &str) -> u32 {
        self.plan.calls(op)
    }

    async fn run<T>(&self, op: &'static str, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        match self.plan.call(op) {
            None => call.await,
            Some(Failure::Fail) => Err(StoreError::Unavailable(format!("{op} failed (test)"))),
            Some(Failure::ApplyThenFail) => {
                call.await?;
                Err(StoreError::Unavailable(format!("{op} applied, answer lost (test)")))
            }
        }
    }
}

#[async_trait]
impl IdempotencyStore for FlakyStore {
    async fn claim(&self, key: &str, hash: &str, now: Timestamp, until: Timestamp, expires_at: Timestamp) -> Result<Claim, StoreError> {
        self.run("claim", self.inner.claim(key, hash, now, until, expires_at)).await
    }

    async fn complete(&self, key: &str, hash: &str, response: StoredResponse, expires_at: Timestamp) -> Result<(), StoreError> {
        self.run("complete", self.inner.complete(key, hash, response, expires_at)).await
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.run("release", self.inner.release(key)).await
    }
}

#[async_trait]
impl EventStore for FlakyStore {
    async fn put_event(&self, record: &EventRecord) -> Result<bool, StoreError> {
        self.run("put_event", self.inner.put_event(record)).await
    }

    async fn get_event(&self, event_id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        self.run("get_event", self.inner.get_event(event_id)).await
    }

    async fn scrub_event_payload(&self, event_id: &EventId) -> Result<bool, StoreError> {
        self.run("scrub_event_payload", self.inner.scrub_event_payload(event_id)).await
    }
}

#[async_trait]
impl NotificationStore for FlakyStore {
    async fn create(&self, notification: &Notification) -> Result<bool, StoreError> {
        self.run("create", self.inner.create(notification)).await
    }

    async fn get(&self, id: &NotificationId) -> Result<Option<Notification>, StoreError> {
        self.run("get", self.inner.get(id)).await
    }

    async fn transition(&self, id: &NotificationId, guard: &Guard, change: &Transition) -> Result<TransitionOutcome, StoreError> {
        self.run("transition", self.inner.transition(id, guard, change)).await
    }

    async fn upsert(&self, record: &Notification, guard: &Guard, change: &Transition) -> Result<UpsertOutcome, StoreError> {
        self.run("upsert", self.inner.upsert(record, guard, change)).await
    }

    async fn list_for_event(&self, event_id: &EventId) -> Result<Vec<Notification>, StoreError> {
        self.run("list_for_event", self.inner.list_for_event(event_id)).await
    }

    async fn mark(&self, id: &NotificationId, owner: &UserId, mark: crate::domain::InboxMark, at: Timestamp) -> Result<Option<Notification>, StoreError> {
        self.run("mark", self.inner.mark(id, owner, mark, at)).await
    }

    async fn list_for_user(&self, user_id: &UserId, limit: usize, cursor: Option<&str>) -> Result<Page<Notification>, StoreError> {
        self.run("list_for_user", self.inner.list_for_user(user_id, limit, cursor)).await
    }

    async fn scrub_content(&self, id: &NotificationId) -> Result<bool, StoreError> {
        self.run("scrub_content", self.inner.scrub_content(id)).await
    }
}

#[async_trait]
impl ProfileStore for FlakyStore {
    async fn get_profile(&self, user_id: &UserId) -> Result<Option<Profile>, StoreError> {
        self.run("get_profile", self.inner.get_profile(user_id)).await
    }

    async fn put_profile(&self, user_id: &UserId, profile: &Profile) -> Result<(), StoreError> {
        self.run("put_profile", self.inner.put_profile(user_id, profile)).await
    }

    async fn get_preferences(&self, user_id: &UserId) -> Result<Option<Preferences>, StoreError> {
        self.run("get_preferences", self.inner.get_preferences(user_id)).await
    }

    async fn put_preferences(&self, user_id: &UserId, preferences: &Preferences) -> Result<(), StoreError> {
        self.run("put_preferences", self.inner.put_preferences(user_id, preferences)).await
    }

    async fn get_recipient(&self, user_id: &UserId) -> Result<(Option<Profile>, Option<Preferences>), StoreError> {
        self.run("get_recipient", self.inner.get_recipient(user_id)).await
    }

    async fn delete_recipient(&self, user_id: &UserId) -> Result<bool, StoreError> {
        self.run("delete_recipient", self.inner.delete_recipient(user_id)).await
    }
}

#[async_trait]
impl ConnectionStore for FlakyStore {
    async fn put_connection(&self, connection: &Connection) -> Result<Option<i64>, StoreError> {
        self.run("put_connection", self.inner.put_connection(connection)).await
    }

    async fn delete_connection(&self, connection_id: &str) -> Result<Option<i64>, StoreError> {
        self.run("delete_connection", self.inner.delete_connection(connection_id)).await
    }

    async fn connections_of(&self, user_id: &UserId, now: Timestamp) -> Result<Vec<Connection>, StoreError> {
        self.run("connections_of", self.inner.connections_of(user_id, now)).await
    }

    async fn active_connections(&self) -> Result<i64, StoreError> {
        self.run("active_connections", self.inner.active_connections()).await
    }
}

#[async_trait]
impl SuppressionStore for FlakyStore {
    async fn suppress(&self, suppression: &Suppression) -> Result<(), StoreError> {
        self.run("suppress", self.inner.suppress(suppression)).await
    }

    async fn is_suppressed(&self, tenant: &crate::domain::Tenant, channel: Channel, address: &str) -> Result<bool, StoreError> {
        self.run("is_suppressed", self.inner.is_suppressed(tenant, channel, address)).await
    }

    async fn list_suppressions(&self, tenant: &crate::domain::Tenant, limit: usize, cursor: Option<&str>) -> Result<Page<Suppression>, StoreError> {
        self.run("list_suppressions", self.inner.list_suppressions(tenant, limit, cursor)).await
    }

    async fn remove_suppression(&self, tenant: &crate::domain::Tenant, channel: Channel, address: &str) -> Result<bool, StoreError> {
        self.run("remove_suppression", self.inner.remove_suppression(tenant, channel, address)).await
    }
}

#[async_trait]
impl crate::ports::KeyDirectory for FlakyStore {
    async fn find_key(&self, key_hash: &str) -> Result<Option<crate::ports::StoredKey>, StoreError> {
        self.run("find_key", self.inner.find_key(key_hash)).await
    }

    async fn put_key(&self, key: &crate::ports::StoredKey) -> Result<(), StoreError> {
        self.run("put_key", self.inner.put_key(key)).await
    }

    async fn list_keys(&self, tenant: Option<&crate::domain::Tenant>) -> Result<Vec<crate::ports::StoredKey>, StoreError> {
        self.run("list_keys", self.inner.list_keys(tenant)).await
    }

    async fn revoke_key(&self, key_id: &str, at: Timestamp) -> Result<Option<crate::ports::StoredKey>, StoreError> {
        self.run("revoke_key", self.inner.revoke_key(key_id, at)).await
    }

    async fn tenant_settings(&self, tenant: &crate::domain::Tenant) -> Result<Option<crate::ports::TenantSettings>, StoreError> {
        self.run("tenant_settings", self.inner.tenant_settings(tenant)).await
    }

    async fn put_tenant_settings(&self, tenant: &crate::domain::Tenant, settings: &crate::ports::TenantSettings) -> Result<(), StoreError> {
        self.run("put_tenant_settings", self.inner.put_tenant_settings(tenant, settings)).await
    }
}

#[async_trait]
impl DeadLetterStore for FlakyStore {
    async fn record_dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        self.run("record_dead_letter", self.inner.record_dead_letter(letter)).await
    }

    async fn get_dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        self.run("get_dead_letter", self.inner.get_dead_letter(id)).await
    }

    async fn list_dead_letters(&self, queue: Option<&str>, limit: usize, cursor: Option<&str>) -> Result<Page<DeadLetter>, StoreError> {
        self.run("list_dead_letters", self.inner.list_dead_letters(queue, limit, cursor)).await
    }

    async fn remove_dead_letter(&self, id: &str, last_failure_at: Timestamp) -> Result<bool, StoreError> {
        self.run("remove_dead_letter", self.inner.remove_dead_letter(id, last_failure_at)).await
    }
}

#[async_trait]
impl RateLimiter for FlakyStore {
    async fn acquire(&self, key: &str, per_second: u32, now: Timestamp) -> Result<Pace, StoreError> {
        self.run("acquire", self.inner.acquire(key, per_second, now)).await
    }

    async fn lease(&self, key: &str, per_second: u32, wanted: u32, now: Timestamp) -> Result<u32, StoreError> {
        self.run("lease", self.inner.lease(key, per_second, wanted, now)).await
    }
}

// ---------------------------------------------------------------------------------------------
// The queue.

const QUEUE_OPS: &[&str] = &["send_batch"];

/// Every queue of the platform in process; `send_batch` can be told to fail, and every batch the
/// queue accepted is logged with its queue name (delays included, which `depth` cannot show).
pub(crate) struct FlakyQueue {
    pub(crate) inner: MemoryQueue,
    plan: Plan,
    sent: Mutex<Vec<(String, OutgoingMessage)>>,
}

impl Default for FlakyQueue {
    fn default() -> Self {
        Self { inner: MemoryQueue::new(&all_queues(&Default::default())), plan: Plan::default(), sent: Mutex::default() }
    }
}

impl FlakyQueue {
    /// The next `n` sends fail with [`QueueError::Unavailable`], sending nothing.
    pub(crate) fn fail_next_sends(&self, n: u32) {
        self.plan.arm(QUEUE_OPS, "send_batch", 0, n, Failure::Fail);
    }

    /// The next `n` sends are accepted, then reported failed.
    pub(crate) fn apply_then_fail_next_sends(&self, n: u32) {
        self.plan.arm(QUEUE_OPS, "send_batch", 0, n, Failure::ApplyThenFail);
    }

    pub(crate) fn send_calls(&self) -> u32 {
        self.plan.calls("send_batch")
    }

    /// Every message accepted so far, with its queue.
    pub(crate) fn sent(&self) -> Vec<(String, OutgoingMessage)> {
        self.sent.lock().unwrap().clone()
    }

    /// Forgets what was sent so far (the queues keep their messages).
    pub(crate) fn sent_clear(&self) {
        self.sent.lock().unwrap().clear();
    }
}

#[async_trait]
impl QueueSender for FlakyQueue {
    async fn send_batch(&self, queue: &str, messages: Vec<OutgoingMessage>) -> Result<(), QueueError> {
        let failure = self.plan.call("send_batch");
        if failure == Some(Failure::Fail) {
            return Err(QueueError::Unavailable("send_batch failed (test)".into()));
        }
        self.inner.send_batch(queue, messages.clone()).await?;
        self.sent.lock().unwrap().extend(messages.into_iter().map(|m| (queue.to_owned(), m)));
        match failure {
            Some(_) => Err(QueueError::Unavailable("send_batch applied, answer lost (test)".into())),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl VisibilityControl for FlakyQueue {
    async fn change_visibility(&self, queue: &str, receipt_handle: &str, timeout: Duration) -> Result<(), QueueError> {
        self.inner.change_visibility(queue, receipt_handle, timeout).await
    }
}

#[async_trait]
impl QueueReceiver for FlakyQueue {
    async fn receive(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(queue, max, wait).await
    }

    async fn delete(&self, queue: &str, receipt_handle: &str) -> Result<(), QueueError> {
        self.inner.delete(queue, receipt_handle).await
    }

    async fn depth(&self, queue: &str) -> Result<usize, QueueError> {
        self.inner.depth(queue).await
    }
}

// ---------------------------------------------------------------------------------------------
// The provider.

type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// A provider that answers from a script, in order, and counts its calls. A call beyond the
/// script panics: a test that expects no call says so with an empty script.
#[derive(Default)]
pub(crate) struct ScriptedSender {
    script: Mutex<VecDeque<Result<String, SendError>>>,
    calls: Mutex<Vec<NotificationId>>,
    /// Runs inside the next call, before it answers (another writer acting mid-flight).
    hook: Mutex<Option<Hook>>,
}

impl ScriptedSender {
    pub(crate) fn new(script: impl IntoIterator<Item = Result<String, SendError>>) -> Arc<Self> {
        Arc::new(Self { script: Mutex::new(script.into_iter().collect()), ..Self::default() })
    }

    pub(crate) fn during_next_call<F>(&self, hook: impl FnOnce() -> F + Send + 'static)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        *self.hook.lock().unwrap() = Some(Box::new(move || Box::pin(hook())));
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

/// The provider name the scripted sender answers with.
pub(crate) const SCRIPTED_PROVIDER: &str = "scripted";

pub(crate) fn transient(why: &str) -> Result<String, SendError> {
    Err(SendError::Transient(why.into()))
}

pub(crate) fn permanent(why: &str) -> Result<String, SendError> {
    Err(SendError::Permanent(why.into()))
}

pub(crate) fn unreachable(why: &str) -> Result<String, SendError> {
    Err(SendError::Unreachable(why.into()))
}

pub(crate) fn throttled(retry_after: Option<Duration>) -> Result<String, SendError> {
    Err(SendError::Throttled { retry_after })
}

#[async_trait]
impl ChannelSender for ScriptedSender {
    async fn send(&self, delivery: Delivery<'_>) -> Result<ProviderReceipt, SendError> {
        self.calls.lock().unwrap().push(delivery.notification_id.clone());
        let hook = self.hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook().await;
        }
        let next = self.script.lock().unwrap().pop_front();
        next.unwrap_or_else(|| panic!("provider called more often than scripted (for {})", delivery.notification_id))
            .map(|id| ProviderReceipt::new(SCRIPTED_PROVIDER, id))
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

pub(crate) const USER: &str = "u-42";
pub(crate) const EMAIL: &str = "olena@example.com";
pub(crate) const PHONE: &str = "+380501234567";

/// The provider's budget in these tests: 10 ms doubling to 100 ms, three attempts.
pub(crate) const RETRY: RetryPolicy = RetryPolicy { base: Duration::from_millis(10), max: Duration::from_millis(100), max_attempts: 3 };
/// The pipeline's (and the senders' hiccup) backoff in these tests.
pub(crate) const HICCUP: RetryPolicy = RetryPolicy { base: Duration::from_secs(1), max: Duration::from_secs(60), max_attempts: u32::MAX };

pub(crate) fn user() -> UserId {
    UserId::parse(USER).unwrap()
}

pub(crate) fn profile() -> Profile {
    Profile {
        email: Some(EMAIL.into()),
        phone: Some(PHONE.into()),
        locale: Some("en".into()),
        timezone: Some("Europe/Kyiv".into()),
        push_tokens: vec![PushToken { platform: "fcm".into(), token: "push-token-1".into() }],
        ..Profile::default()
    }
}

/// A payload each built-in event type accepts.
pub(crate) fn payload(event_type: &str) -> Value {
    match event_type {
        "order.completed" => json!({"order_id": "A-17", "total": "59.90", "currency": "EUR"}),
        "payment.failed" => json!({"payment_id": "P-9", "amount": "12.00", "currency": "EUR"}),
        "user.registered" => json!({"name": "Olena"}),
        "marketing.newsletter" => json!({"headline": "December news", "summary": "What is new this month."}),
        _ => json!({}),
    }
}

pub(crate) fn event(event_type: &str, event_id: &str) -> Event {
    Event {
        event_id: EventId::parse(event_id).unwrap(),
        event_type: event_type.into(),
        user_id: user(),
        payload: payload(event_type),
        priority: None,
        channels: None,
        locale: None,
        send_after: None,
        occurred_at: None,
    }
}

/// The priority an event of this type gets from its catalog entry.
pub(crate) fn priority_of(catalog: &Catalog, event: &Event) -> Priority {
    event.priority.or_else(|| catalog.event_type(&event.event_type).map(|t| t.priority)).unwrap_or(Priority::Normal)
}

/// The embedded catalog, loaded once.
pub(crate) fn embedded_catalog() -> Arc<Catalog> {
    static CATALOG: OnceLock<Arc<Catalog>> = OnceLock::new();
    CATALOG.get_or_init(|| Arc::new(Catalog::embedded().expect("the repository catalog loads"))).clone()
}

/// A record of `queue` as an event source mapping hands it over.
pub(crate) fn record<'a>(queue: &'a str, body: &'a str, receive_count: u32) -> Record<'a> {
    Record { message_id: "msg-1", body, receive_count, group_id: Some("default#u-42"), queue }
}

/// The ports over the doubles, and each function's dependencies built through `wiring`.
pub(crate) struct Harness {
    pub(crate) store: Arc<FlakyStore>,
    pub(crate) queue: Arc<FlakyQueue>,
    pub(crate) clock: Arc<StepClock>,
    pub(crate) ports: Ports,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) settings: Settings,
}

impl Harness {
    /// Over the embedded catalog, with the test user's profile stored.
    pub(crate) async fn new() -> Self {
        Self::with_catalog(embedded_catalog()).await
    }

    pub(crate) async fn with_catalog(catalog: Arc<Catalog>) -> Self {
        let store = Arc::new(FlakyStore::default());
        let queue = Arc::new(FlakyQueue::default());
        let clock = Arc::new(StepClock::at(t0()));
        let ports = Ports::over(queue.clone(), store.clone(), clock.clone());
        let settings = Settings { pipeline_retry: HICCUP, ..Settings::default() };
        store.inner.put_profile(&user(), &profile()).await.unwrap();
        Harness { store, queue, clock, ports, catalog, settings }
    }

    pub(crate) fn sender(&self, provider: Arc<dyn ChannelSender>) -> SendDeps {
        wiring::sender(&self.ports, self.catalog.clone(), &self.settings, provider, RETRY)
    }

    pub(crate) fn router(&self) -> RouterDeps {
        wiring::router(&self.ports, self.catalog.clone(), &self.settings)
    }

    pub(crate) fn scheduler(&self) -> DeferredDeps {
        wiring::scheduler(&self.ports, &self.settings)
    }

    pub(crate) fn dead_letter(&self) -> DeadLetterDeps {
        wiring::dead_letter(&self.ports, self.catalog.clone(), &self.settings)
    }

    pub(crate) fn fallback(&self) -> FallbackDeps {
        wiring::fallback(&self.ports, self.catalog.clone())
    }

    /// The sender's claim lease, as wired.
    pub(crate) fn lease(&self) -> Duration {
        self.settings.lease()
    }

    /// Records the event as ingest would (idempotent).
    pub(crate) async fn accept(&self, event: &Event) -> EventRecord {
        let priority = priority_of(&self.catalog, event);
        let record = EventRecord { event: event.clone(), priority, lane: priority.lane(), accepted_at: t0() };
        self.store.inner.put_event(&record).await.unwrap();
        record
    }

    /// The route job ingest queues for the event (recording the event too).
    pub(crate) async fn route_job(&self, event: &Event) -> RouteJob {
        let record = self.accept(event).await;
        RouteJob { event: record.event, priority: record.priority, accepted_at: record.accepted_at, fallback: None }
    }

    /// The send job the router queues at once for a built-in event type on `channel` (rendered
    /// from the catalog's English templates), its event recorded. As the router does, nothing
    /// writes its notification: the sender's claim creates it from the job's record.
    pub(crate) async fn seed(&self, event_type: &str, event_id: &str, channel: Channel) -> SendJob {
        let event = event(event_type, event_id);
        let record = self.accept(&event).await;
        let ctx = RenderContext {
            payload: &event.payload,
            user: json!({"id": USER, "locale": "en", "timezone": "Europe/Kyiv"}),
            event: json!({"event_id": event_id, "event_type": event_type}),
        };
        let message = self.catalog.templates().render(event_type, "en", channel, &ctx).expect("the template renders");
        SendJob {
            notification_id: NotificationId::derive(&event.event_id, channel),
            event_id: event.event_id,
            event_type: event_type.into(),
            user_id: user(),
            channel,
            priority: record.priority,
            address: address_for(channel, &profile()).expect("the test profile has every address"),
            message,
            accepted_at: record.accepted_at,
            redrives: 0,
            created_at: Some(t0()),
            fallback_for: None,
        }
    }

    /// Writes the job's notification as it is before any claim (`pending`): as a router wrote it
    /// before it left that to the sender, or as a sender leaves it after a retryable failure.
    pub(crate) async fn create(&self, job: &SendJob) -> Notification {
        let n = job.record().expect("a job carrying its record");
        assert!(self.store.inner.create(&n).await.unwrap(), "created once");
        n
    }

    /// Sets the notification's status behind the handlers' backs (as another function would).
    pub(crate) async fn force(&self, id: &NotificationId, change: Transition) -> Notification {
        match self.store.inner.transition(id, &Guard::StatusIn(ALL_STATUSES.to_vec()), &change).await.unwrap() {
            TransitionOutcome::Applied(n) => n,
            other => panic!("could not force {id}: {other:?}"),
        }
    }

    /// A sender's claim of the job's notification made now, as `send::deliver` makes it (one
    /// attempt counted, leased; creating the notification if nobody wrote it yet).
    pub(crate) async fn claim(&self, job: &SendJob) -> Notification {
        let now = self.clock.now();
        let claim = Transition::to(Status::Sending, now).count_attempt().lease_until(Some(now.checked_add(self.lease()).unwrap()));
        let record = job.record().expect("a job carrying its record");
        match self.store.inner.upsert(&record, &Guard::Claimable { now }, &claim).await.unwrap() {
            UpsertOutcome::Created(n) | UpsertOutcome::Applied(n) => n,
            other => panic!("could not claim {}: {other:?}", job.notification_id),
        }
    }

    pub(crate) async fn notification(&self, id: &NotificationId) -> Notification {
        self.store.inner.get(id).await.unwrap().unwrap_or_else(|| panic!("{id} exists"))
    }

    pub(crate) async fn depth(&self, queue: &str) -> usize {
        self.queue.inner.depth(queue).await.unwrap()
    }

    /// Receives (and deletes) everything visible on `queue`, decoded.
    pub(crate) async fn take<T: DeserializeOwned>(&self, queue: &str) -> Vec<T> {
        let mut out = Vec::new();
        loop {
            let got = self.queue.inner.receive(queue, 10, Duration::ZERO).await.unwrap();
            if got.is_empty() {
                return out;
            }
            for m in got {
                self.queue.inner.delete(queue, &m.receipt_handle).await.unwrap();
                out.push(serde_json::from_str(&m.body).unwrap_or_else(|e| panic!("{queue}: {e}: {}", m.body)));
            }
        }
    }

    /// Visible messages on every queue, by name (empty queues left out).
    pub(crate) async fn depths(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for name in self.queue.inner.queue_names() {
            let n = self.depth(&name).await;
            if n > 0 {
                out.insert(name, n);
            }
        }
        out
    }
}

pub(crate) const ALL_STATUSES: [Status; 6] = [Status::Pending, Status::Scheduled, Status::Sending, Status::Sent, Status::Failed, Status::Skipped];

/// Asserts `d` lies in the jittered window `[¾·ceiling, ceiling]` of `policy` after `attempt`.
#[track_caller]
pub(crate) fn assert_backoff(d: Duration, policy: &RetryPolicy, attempt: u32) {
    let ceiling = policy.ceiling(attempt);
    assert!(d >= ceiling * 3 / 4 && d <= ceiling, "{d:?} outside [{:?}, {ceiling:?}] after attempt {attempt}", ceiling * 3 / 4);
}

// ---------------------------------------------------------------------------------------------
// Metrics.

/// Counter totals by metric name (summed over labels).
pub(crate) type Counters = BTreeMap<String, u64>;

/// Runs `test` on its own current-thread runtime (time paused) under a local metrics recorder,
/// and returns its output with the counters it recorded. Call it from a plain `#[test]`.
pub(crate) fn with_counters<T>(test: impl Future<Output = T>) -> (T, Counters) {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let out = ::metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(test)
    });
    let mut counters = Counters::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if let DebugValue::Counter(n) = value {
            *counters.entry(key.key().name().to_owned()).or_default() += n;
        }
    }
    (out, counters)
}

pub(crate) fn count(counters: &Counters, name: &str) -> u64 {
    counters.get(name).copied().unwrap_or(0)
}
