//! Fault injection, so anyone can watch the delivery guarantees hold under trouble.
//!
//! `NOTIFY_LOCAL_FAULTS` is a comma-separated list of `target:kind=rate` (rate 0.0–1.0):
//!
//! - a channel (`email`, `sms`, `push`, `whatsapp`, `telegram`, `websocket`) with `transient`
//!   (the provider answers like a 5xx or a timeout) or `permanent` (it rejects the message);
//! - `store` with `transient`: a store call fails like a throttled DynamoDB request. Half of the
//!   failing writes fail *after* being applied (the answer was lost), as a timeout can on AWS;
//! - `queue` with `transient`: `SendMessage`, `ChangeMessageVisibility` or `DeleteMessage` fails;
//!   half of the failing sends fail after the message was accepted.
//!
//! Faults apply to every handler's calls, on either backend. `NOTIFY_LOCAL_FAULTS_SEED` seeds the
//! random draws (one generator per target), so a run draws the same sequence of faults; which
//! call meets which draw still depends on how concurrent handlers interleave.
//! `NOTIFY_LOCAL_FAIL_CHANNELS=push` is the older switch: every call of that channel fails.

use async_trait::async_trait;
use jiff::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shared::domain::{Channel, EventId, Guard, Notification, NotificationId, Preferences, Profile, Transition, UserId};
use shared::ports::queue::{OutgoingMessage, QueueError, QueueReceiver, QueueSender, ReceivedMessage, VisibilityControl};
use shared::ports::{
    ChannelSender, Claim, Connection, ConnectionStore, Delivery, ProviderReceipt, EventRecord, EventStore, IdempotencyStore, NotificationStore, Page,
    ProfileStore, SendError, StoreError, StoredResponse, TransitionOutcome, UpsertOutcome,
};
use shared::ports::{DeadLetter, DeadLetterStore, Pace, RateLimiter, Suppression, SuppressionStore};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultTarget {
    Channel(Channel),
    Store,
    Queue,
}

impl FaultTarget {
    pub fn name(self) -> &'static str {
        match self {
            FaultTarget::Channel(c) => c.as_str(),
            FaultTarget::Store => "store",
            FaultTarget::Queue => "queue",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    Transient,
    Permanent,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Transient => "transient",
            FaultKind::Permanent => "permanent",
        }
    }
}

/// One `target:kind=rate` of `NOTIFY_LOCAL_FAULTS`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultSpec {
    pub target: FaultTarget,
    pub kind: FaultKind,
    pub rate: f64,
}

/// Parses `NOTIFY_LOCAL_FAULTS`; the error names the item that is wrong and why.
pub fn parse_faults(text: &str) -> Result<Vec<FaultSpec>, String> {
    let mut specs: Vec<FaultSpec> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let bad = |why: &str| format!("NOTIFY_LOCAL_FAULTS item {item:?}: {why} (expected target:kind=rate, e.g. email:transient=0.2)");
        let (target_kind, rate) = item.split_once('=').ok_or_else(|| bad("no `=rate`"))?;
        let (target, kind) = target_kind.split_once(':').ok_or_else(|| bad("no `:kind`"))?;
        let target = match target.trim() {
            "store" => FaultTarget::Store,
            "queue" => FaultTarget::Queue,
            other => FaultTarget::Channel(other.parse().map_err(|_| bad("the target is a channel name, `store` or `queue`"))?),
        };
        let kind = match kind.trim() {
            "transient" => FaultKind::Transient,
            "permanent" => FaultKind::Permanent,
            _ => return Err(bad("the kind is `transient` or `permanent`")),
        };
        if kind == FaultKind::Permanent && !matches!(target, FaultTarget::Channel(_)) {
            return Err(bad("`store` and `queue` take `transient` faults only"));
        }
        let rate: f64 = rate.trim().parse().map_err(|_| bad("the rate is a number"))?;
        if !(0.0..=1.0).contains(&rate) {
            return Err(bad("the rate is between 0.0 and 1.0"));
        }
        if specs.iter().any(|s| s.target == target && s.kind == kind) {
            return Err(bad("given twice"));
        }
        specs.push(FaultSpec { target, kind, rate });
    }
    Ok(specs)
}

/// The faults in force, shared by every wrapper of one stack.
#[derive(Clone)]
pub struct Faults {
    inner: Arc<Inner>,
}

struct Inner {
    failing: Mutex<HashSet<Channel>>,
    specs: Vec<FaultSpec>,
    /// One generator per target, seeded from the run's seed and the target.
    rngs: Mutex<BTreeMap<FaultTarget, StdRng>>,
    seed: u64,
    injected: Mutex<BTreeMap<(FaultTarget, FaultKind), u64>>,
    /// Faulty writes that were applied before they reported failure.
    applied_then_failed: AtomicU64,
}

impl Default for Faults {
    fn default() -> Self {
        Self::new(Vec::new(), 0)
    }
}

/// What a wrapped call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Draw {
    Pass,
    /// Fail without doing anything.
    FailBefore(FaultKind),
    /// Do it, then report failure (only writes).
    FailAfter,
}

impl Faults {
    pub fn new(specs: Vec<FaultSpec>, seed: u64) -> Self {
        Faults {
            inner: Arc::new(Inner {
                failing: Mutex::new(HashSet::new()),
                specs,
                rngs: Mutex::new(BTreeMap::new()),
                seed,
                injected: Mutex::new(BTreeMap::new()),
                applied_then_failed: AtomicU64::new(0),
            }),
        }
    }

    pub fn specs(&self) -> &[FaultSpec] {
        &self.inner.specs
    }

    /// Switches a channel's provider to fail every call (transiently), or back.
    pub fn set_failing(&self, channel: Channel, failing: bool) {
        let mut set = self.inner.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing {
            set.insert(channel);
        } else {
            set.remove(&channel);
        }
    }

    pub fn is_failing(&self, channel: Channel) -> bool {
        self.inner.failing.lock().unwrap_or_else(|e| e.into_inner()).contains(&channel)
    }

    /// How many faults were injected, by target and kind.
    pub fn injected(&self) -> BTreeMap<(FaultTarget, FaultKind), u64> {
        self.inner.injected.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many of the injected store and queue faults hit a write that was applied anyway.
    pub fn applied_then_failed(&self) -> u64 {
        self.inner.applied_then_failed.load(Ordering::Relaxed)
    }

    fn count(&self, target: FaultTarget, kind: FaultKind) {
        *self.inner.injected.lock().unwrap_or_else(|e| e.into_inner()).entry((target, kind)).or_default() += 1;
    }

    /// One draw for a call on `target`; `write` calls may fail after being applied.
    fn draw(&self, target: FaultTarget, write: bool) -> Draw {
        if let FaultTarget::Channel(c) = target
            && self.is_failing(c)
        {
            self.count(target, FaultKind::Transient);
            return Draw::FailBefore(FaultKind::Transient);
        }
        let specs: Vec<FaultSpec> = self.inner.specs.iter().filter(|s| s.target == target && s.rate > 0.0).copied().collect();
        if specs.is_empty() {
            return Draw::Pass;
        }
        let (roll, after) = {
            let mut rngs = self.inner.rngs.lock().unwrap_or_else(|e| e.into_inner());
            let rng = rngs.entry(target).or_insert_with(|| StdRng::seed_from_u64(self.inner.seed ^ seed_of(target)));
            (rng.random::<f64>(), rng.random::<bool>())
        };
        let mut threshold = 0.0;
        for spec in specs {
            threshold += spec.rate;
            if roll < threshold {
                self.count(target, spec.kind);
                if write && after && spec.kind == FaultKind::Transient && !matches!(target, FaultTarget::Channel(_)) {
                    self.inner.applied_then_failed.fetch_add(1, Ordering::Relaxed);
                    return Draw::FailAfter;
                }
                return Draw::FailBefore(spec.kind);
            }
        }
        Draw::Pass
    }

    pub fn wrap(&self, channel: Channel, inner: Arc<dyn ChannelSender>) -> Arc<dyn ChannelSender> {
        Arc::new(FaultySender { channel, inner, faults: self.clone() })
    }

    /// Whether any store or queue fault is configured (the stores and queues need wrapping).
    pub fn touches(&self, target: FaultTarget) -> bool {
        self.inner.specs.iter().any(|s| s.target == target && s.rate > 0.0)
    }
}

fn seed_of(target: FaultTarget) -> u64 {
    // A fixed mixing of the target's name: the same on every run and machine.
    target.name().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The recipient as a provider's error message would quote it.
fn recipient_of(address: &shared::ports::Address) -> String {
    use shared::ports::Address;
    match address {
        Address::Email { to } => to.clone(),
        Address::Phone { number } | Address::Whatsapp { number } => number.clone(),
        Address::Telegram { chat_id } => chat_id.clone(),
        Address::Webhook { url } => url.clone(),
        Address::Push { tokens } => tokens.iter().map(|t| t.token.clone()).collect::<Vec<_>>().join(", "),
        Address::Connections => "the user's connections".into(),
    }
}

struct FaultySender {
    channel: Channel,
    inner: Arc<dyn ChannelSender>,
    faults: Faults,
}

#[async_trait]
impl ChannelSender for FaultySender {
    async fn send(&self, delivery: Delivery<'_>) -> Result<ProviderReceipt, SendError> {
        // Like real providers (SES `MessageRejected`, Twilio, chat APIs), an injected error quotes
        // the recipient: what reaches logs and stored errors must be redacted.
        let recipient = recipient_of(delivery.address);
        match self.faults.draw(FaultTarget::Channel(self.channel), false) {
            Draw::FailBefore(FaultKind::Transient) => {
                Err(SendError::Transient(format!("local {} provider is set to fail for {recipient} (injected fault)", self.channel)))
            }
            Draw::FailBefore(FaultKind::Permanent) => {
                Err(SendError::Permanent(format!("local {} provider rejected the message to {recipient} (injected fault)", self.channel)))
            }
            Draw::Pass | Draw::FailAfter => self.inner.send(delivery).await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The store: every port, each call drawing from the `store` target.

/// Every store port of `S`, failing as `NOTIFY_LOCAL_FAULTS` says.
pub struct FaultyStore<S> {
    inner: Arc<S>,
    faults: Faults,
}

impl<S> FaultyStore<S> {
    pub fn new(inner: Arc<S>, faults: Faults) -> Self {
        Self { inner, faults }
    }
}

fn store_fault() -> StoreError {
    StoreError::Unavailable("ProvisionedThroughputExceededException (injected fault)".into())
}

macro_rules! faulty_read {
    ($self:ident, $call:expr) => {{
        match $self.faults.draw(FaultTarget::Store, false) {
            Draw::Pass | Draw::FailAfter => $call.await,
            Draw::FailBefore(_) => Err(store_fault()),
        }
    }};
}

macro_rules! faulty_write {
    ($self:ident, $call:expr) => {{
        match $self.faults.draw(FaultTarget::Store, true) {
            Draw::Pass => $call.await,
            Draw::FailBefore(_) => Err(store_fault()),
            Draw::FailAfter => {
                let _ = $call.await;
                Err(store_fault())
            }
        }
    }};
}

#[async_trait]
impl<S: IdempotencyStore> IdempotencyStore for FaultyStore<S> {
    async fn claim(&self, key: &str, hash: &str, now: Timestamp, until: Timestamp, expires: Timestamp) -> Result<Claim, StoreError> {
        faulty_write!(self, self.inner.claim(key, hash, now, until, expires))
    }
    async fn complete(&self, key: &str, hash: &str, response: StoredResponse, expires: Timestamp) -> Result<(), StoreError> {
        faulty_write!(self, self.inner.complete(key, hash, response, expires))
    }
    async fn release(&self, key: &str) -> Result<(), StoreError> {
        faulty_write!(self, self.inner.release(key))
    }
}

#[async_trait]
impl<S: EventStore> EventStore for FaultyStore<S> {
    async fn put_event(&self, record: &EventRecord) -> Result<bool, StoreError> {
        faulty_write!(self, self.inner.put_event(record))
    }
    async fn get_event(&self, event_id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        faulty_read!(self, self.inner.get_event(event_id))
    }
    async fn scrub_event_payload(&self, event_id: &EventId) -> Result<bool, StoreError> {
        faulty_write!(self, self.inner.scrub_event_payload(event_id))
    }
}

#[async_trait]
impl<S: NotificationStore> NotificationStore for FaultyStore<S> {
    async fn create(&self, n: &Notification) -> Result<bool, StoreError> {
        faulty_write!(self, self.inner.create(n))
    }
    async fn get(&self, id: &NotificationId) -> Result<Option<Notification>, StoreError> {
        faulty_read!(self, self.inner.get(id))
    }
    async fn transition(&self, id: &NotificationId, guard: &Guard, change: &Transition) -> Result<TransitionOutcome, StoreError> {
        faulty_write!(self, self.inner.transition(id, guard, change))
    }
    async fn upsert(&self, record: &Notification, guard: &Guard, change: &Transition) -> Result<UpsertOutcome, StoreError> {
        faulty_write!(self, self.inner.upsert(record, guard, change))
    }
    async fn list_for_event(&self, event_id: &EventId) -> Result<Vec<Notification>, StoreError> {
        faulty_read!(self, self.inner.list_for_event(event_id))
    }
    async fn mark(&self, id: &NotificationId, owner: &UserId, mark: shared::domain::InboxMark, at: Timestamp) -> Result<Option<Notification>, StoreError> {
        faulty_write!(self, self.inner.mark(id, owner, mark, at))
    }
    async fn list_for_user(&self, user_id: &UserId, limit: usize, cursor: Option<&str>) -> Result<Page<Notification>, StoreError> {
        faulty_read!(self, self.inner.list_for_user(user_id, limit, cursor))
    }
    async fn scrub_content(&self, id: &NotificationId) -> Result<bool, StoreError> {
        faulty_write!(self, self.inner.scrub_content(id))
    }
}

#[async_trait]
impl<S: ProfileStore> ProfileStore for FaultyStore<S> {
    async fn get_profile(&self, user_id: &UserId) -> Result<Option<Profile>, StoreError> {
        faulty_read!(self, self.inner.get_profile(user_id))
    }
    async fn put_profile(&self, user_id: &UserId, profile: &Profile) -> Result<(), StoreError> {
        faulty_write!(self, self.inner.put_profile(user_id, profile))
    }
    async fn get_preferences(&self, user_id: &UserId) -> Result<Option<Preferences>, StoreError> {
        faulty_read!(self, self.inner.get_preferences(user_id))
    }
    async fn put_preferences(&self, user_id: &UserId, preferences: &Preferences) -> Result<(), StoreError> {
        faulty_write!(self, self.inner.put_preferences(user_id, preferences))
    }
    async fn get_recipient(&self, user_id: &UserId) -> Result<(Option<Profile>, Option<Preferences>), StoreError> {
        faulty_read!(self, self.inner.get_recipient(user_id))
    }
    async fn delete_recipient(&self, user_id: &UserId) -> Result<bool, StoreError> {
        faulty_write!(self, self.inner.delete_recipient(user_id))
    }
}

#[async_trait]
impl<S: ConnectionStore> ConnectionStore for FaultyStore<S> {
    async fn put_connection(&self, connection: &Connection) -> Result<Option<i64>, StoreError> {
        faulty_write!(self, self.inner.put_connection(connection))
    }
    async fn delete_connection(&self, connection_id: &str) -> Result<Option<i64>, StoreError> {
        faulty_write!(self, self.inner.delete_connection(connection_id))
    }
    async fn connections_of(&self, user_id: &UserId, now: Timestamp) -> Result<Vec<Connection>, StoreError> {
        faulty_read!(self, self.inner.connections_of(user_id, now))
    }
    async fn active_connections(&self) -> Result<i64, StoreError> {
        faulty_read!(self, self.inner.active_connections())
    }
}

#[async_trait]
impl<S: SuppressionStore> SuppressionStore for FaultyStore<S> {
    async fn suppress(&self, suppression: &Suppression) -> Result<(), StoreError> {
        faulty_write!(self, self.inner.suppress(suppression))
    }
    async fn is_suppressed(&self, tenant: &shared::domain::Tenant, channel: Channel, address: &str) -> Result<bool, StoreError> {
        faulty_read!(self, self.inner.is_suppressed(tenant, channel, address))
    }
    async fn list_suppressions(&self, tenant: &shared::domain::Tenant, limit: usize, cursor: Option<&str>) -> Result<Page<Suppression>, StoreError> {
        faulty_read!(self, self.inner.list_suppressions(tenant, limit, cursor))
    }
    async fn remove_suppression(&self, tenant: &shared::domain::Tenant, channel: Channel, address: &str) -> Result<bool, StoreError> {
        faulty_write!(self, self.inner.remove_suppression(tenant, channel, address))
    }
}

#[async_trait]
impl<S: shared::ports::KeyDirectory> shared::ports::KeyDirectory for FaultyStore<S> {
    async fn find_key(&self, key_hash: &str) -> Result<Option<shared::ports::StoredKey>, StoreError> {
        faulty_read!(self, self.inner.find_key(key_hash))
    }
    async fn put_key(&self, key: &shared::ports::StoredKey) -> Result<(), StoreError> {
        faulty_write!(self, self.inner.put_key(key))
    }
    async fn list_keys(&self, tenant: Option<&shared::domain::Tenant>) -> Result<Vec<shared::ports::StoredKey>, StoreError> {
        faulty_read!(self, self.inner.list_keys(tenant))
    }
    async fn revoke_key(&self, key_id: &str, at: Timestamp) -> Result<Option<shared::ports::StoredKey>, StoreError> {
        faulty_write!(self, self.inner.revoke_key(key_id, at))
    }
    async fn tenant_settings(&self, tenant: &shared::domain::Tenant) -> Result<Option<shared::ports::TenantSettings>, StoreError> {
        faulty_read!(self, self.inner.tenant_settings(tenant))
    }
    async fn put_tenant_settings(&self, tenant: &shared::domain::Tenant, settings: &shared::ports::TenantSettings) -> Result<(), StoreError> {
        faulty_write!(self, self.inner.put_tenant_settings(tenant, settings))
    }
}

#[async_trait]
impl<S: DeadLetterStore> DeadLetterStore for FaultyStore<S> {
    async fn record_dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        faulty_write!(self, self.inner.record_dead_letter(letter))
    }
    async fn get_dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        faulty_read!(self, self.inner.get_dead_letter(id))
    }
    async fn list_dead_letters(&self, queue: Option<&str>, limit: usize, cursor: Option<&str>) -> Result<Page<DeadLetter>, StoreError> {
        faulty_read!(self, self.inner.list_dead_letters(queue, limit, cursor))
    }
    async fn remove_dead_letter(&self, id: &str, last_failure_at: Timestamp) -> Result<bool, StoreError> {
        faulty_write!(self, self.inner.remove_dead_letter(id, last_failure_at))
    }
}

#[async_trait]
impl<S: RateLimiter> RateLimiter for FaultyStore<S> {
    async fn acquire(&self, key: &str, per_second: u32, now: Timestamp) -> Result<Pace, StoreError> {
        faulty_write!(self, self.inner.acquire(key, per_second, now))
    }
    async fn lease(&self, key: &str, per_second: u32, wanted: u32, now: Timestamp) -> Result<u32, StoreError> {
        faulty_write!(self, self.inner.lease(key, per_second, wanted, now))
    }
}

// ---------------------------------------------------------------------------------------------
// The queue: what handlers and the event source mappings call, drawing from the `queue` target.

/// A queue of `Q` whose sends, visibility changes and deletes fail as `NOTIFY_LOCAL_FAULTS` says.
/// Receives do not fail: Lambda's event source mapping retries its own polls unseen.
pub struct FaultyQueue<Q> {
    inner: Arc<Q>,
    faults: Faults,
}

impl<Q> FaultyQueue<Q> {
    pub fn new(inner: Arc<Q>, faults: Faults) -> Self {
        Self { inner, faults }
    }
}

fn queue_fault() -> QueueError {
    QueueError::Unavailable("AWS.SimpleQueueService.RequestThrottled (injected fault)".into())
}

#[async_trait]
impl<Q: QueueSender> QueueSender for FaultyQueue<Q> {
    async fn send_batch(&self, queue: &str, messages: Vec<OutgoingMessage>) -> Result<(), QueueError> {
        match self.faults.draw(FaultTarget::Queue, true) {
            Draw::Pass => self.inner.send_batch(queue, messages).await,
            Draw::FailBefore(_) => Err(queue_fault()),
            Draw::FailAfter => {
                let _ = self.inner.send_batch(queue, messages).await;
                Err(queue_fault())
            }
        }
    }
}

#[async_trait]
impl<Q: VisibilityControl> VisibilityControl for FaultyQueue<Q> {
    async fn change_visibility(&self, queue: &str, receipt_handle: &str, timeout: Duration) -> Result<(), QueueError> {
        match self.faults.draw(FaultTarget::Queue, false) {
            Draw::Pass | Draw::FailAfter => self.inner.change_visibility(queue, receipt_handle, timeout).await,
            Draw::FailBefore(_) => Err(queue_fault()),
        }
    }
}

#[async_trait]
impl<Q: QueueReceiver> QueueReceiver for FaultyQueue<Q> {
    async fn receive(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(queue, max, wait).await
    }
    async fn delete(&self, queue: &str, receipt_handle: &str) -> Result<(), QueueError> {
        match self.faults.draw(FaultTarget::Queue, false) {
            Draw::Pass | Draw::FailAfter => self.inner.delete(queue, receipt_handle).await,
            Draw::FailBefore(_) => Err(queue_fault()),
        }
    }
    async fn depth(&self, queue: &str) -> Result<usize, QueueError> {
        self.inner.depth(queue).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_list_parses_and_names_what_is_wrong() {
        let specs = parse_faults("email:transient=0.2, push:permanent=0.01,store:transient=0.02,queue:transient=0.02").unwrap();
        assert_eq!(specs.len(), 4);
        assert_eq!(specs[0], FaultSpec { target: FaultTarget::Channel(Channel::Email), kind: FaultKind::Transient, rate: 0.2 });
        assert_eq!(specs[2].target, FaultTarget::Store);
        assert!(parse_faults("").unwrap().is_empty());
        for (bad, says) in [
            ("email=0.2", "no `:kind`"),
            ("email:transient", "no `=rate`"),
            ("fax:transient=0.1", "channel name"),
            ("store:permanent=0.1", "transient` faults only"),
            ("email:sometimes=0.1", "`transient` or `permanent`"),
            ("email:transient=1.5", "between 0.0 and 1.0"),
            ("email:transient=x", "is a number"),
            ("sms:transient=0.1,sms:transient=0.2", "given twice"),
        ] {
            let e = parse_faults(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn draws_follow_the_rate_and_the_seed() {
        let specs = parse_faults("store:transient=0.25").unwrap();
        let run = |seed| {
            let faults = Faults::new(specs.clone(), seed);
            (0..4000).map(|_| faults.draw(FaultTarget::Store, true)).collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7), "the same seed draws the same faults");
        assert_ne!(a, run(8));
        let failed = a.iter().filter(|d| **d != Draw::Pass).count();
        assert!((800..1200).contains(&failed), "about a quarter fail: {failed}");
        let after = a.iter().filter(|d| **d == Draw::FailAfter).count();
        assert!(after > failed / 3 && after < failed * 2 / 3, "about half the failing writes are applied first: {after} of {failed}");
        let faults = Faults::new(specs, 7);
        assert_eq!(faults.draw(FaultTarget::Queue, true), Draw::Pass, "other targets untouched");
        assert_eq!(faults.draw(FaultTarget::Channel(Channel::Email), false), Draw::Pass);
    }

    #[test]
    fn a_switched_channel_fails_every_call() {
        let faults = Faults::default();
        faults.set_failing(Channel::Sms, true);
        assert_eq!(faults.draw(FaultTarget::Channel(Channel::Sms), false), Draw::FailBefore(FaultKind::Transient));
        faults.set_failing(Channel::Sms, false);
        assert_eq!(faults.draw(FaultTarget::Channel(Channel::Sms), false), Draw::Pass);
    }
}
