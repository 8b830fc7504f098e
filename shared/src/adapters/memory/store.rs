//! Every store port over in-process tables, with DynamoDB's conditional-write semantics.
//!
//! Each write checks its condition and applies itself under one lock, atomically, as a DynamoDB
//! `ConditionExpression` does. Items are kept as they would be on DynamoDB: serialized on write
//! and deserialized on read, so a type that does not round-trip through serde fails here as well,
//! with [`StoreError::Corrupt`].
//!
//! The lock is a `std::sync::Mutex` held only for the length of one operation, never across an
//! `.await`; a poisoned lock is recovered (every operation leaves the tables consistent before it
//! can panic).

mod dead_letters;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use crate::domain::{Channel, EventId, Guard, Notification, NotificationId, Preferences, Profile, Transition, UserId};
use crate::ports::pacing::{Pace, RateLimiter, until_next_second};
use crate::ports::suppression::{Suppression, SuppressionStore, suppression_key};
use crate::ports::store::{
    Claim, Connection, ConnectionStore, EventRecord, EventStore, IdempotencyRecord, IdempotencyState, IdempotencyStore,
    NotificationStore, Page, ProfileStore, StoreError, StoredResponse, TransitionOutcome, UpsertOutcome, channel_rank,
};

/// The most items one `list_for_user` page holds, whatever the caller asks for.
pub const MAX_PAGE: usize = 100;

/// The sort key of the by-user index: newest first means iterating it in reverse.
type UserSortKey = (Timestamp, String);

/// The sort key of the suppressions list, as DynamoDB's `created_key`: millis, then key.
type SuppressionSortKey = (i64, String);

#[derive(Default)]
struct Tables {
    /// Idempotency records by key.
    idempotency: HashMap<String, Item>,
    /// Event records by event id.
    events: HashMap<String, Item>,
    /// Notifications by notification id.
    notifications: HashMap<String, Item>,
    /// Index: user id -> (created_at, notification id).
    notifications_by_user: HashMap<String, BTreeSet<UserSortKey>>,
    /// Index: event id -> notification ids.
    notifications_by_event: HashMap<String, BTreeSet<String>>,
    profiles: HashMap<String, Item>,
    preferences: HashMap<String, Item>,
    /// Connections by connection id.
    connections: HashMap<String, Item>,
    /// Index: user id -> connection ids (a push reads one user's connections, not all of them).
    connections_by_user: HashMap<String, BTreeSet<String>>,
    /// Suppressions by `suppression_key`.
    suppressions: HashMap<String, Item>,
    /// Index: (created_at in millis, suppression key), newest last.
    suppressions_by_time: BTreeSet<SuppressionSortKey>,
    /// Sends counted per (rate key, epoch second).
    rate_limits: HashMap<(String, i64), u32>,
    /// API keys by hex hash.
    api_keys: HashMap<String, Item>,
    /// Tenant settings by tenant.
    tenants: HashMap<String, Item>,
    /// Dead letters by id.
    dead_letters: HashMap<String, Item>,
    /// Index: (first failure in millis, id), newest last.
    dead_letters_by_time: BTreeSet<dead_letters::DeadLetterSortKey>,
    /// What bounds the events and notifications kept; `None`: everything is kept.
    retention: Option<Retained>,
}

/// The local stack's memory bound: on AWS, DynamoDB's TTL forgets events and notifications (after
/// 90 days); in process, the newest `events` events are kept, and the newest
/// `NOTIFICATIONS_PER_EVENT` × `events` notifications that are final. A notification still on
/// its way (pending, scheduled, sending) is never forgotten.
struct Retained {
    events: usize,
    event_order: VecDeque<String>,
    notification_order: VecDeque<String>,
}

/// Notifications kept per event kept (an event makes one per channel, up to six; three is usual).
const NOTIFICATIONS_PER_EVENT: usize = 4;
/// The most notifications one write looks at to forget old ones (amortised: one per write).
const EVICTION_CHECKS: usize = 8;

impl Tables {
    fn index_notification(&mut self, n: &Notification) {
        self.notifications_by_user
            .entry(n.user_id.as_str().to_owned())
            .or_default()
            .insert((n.created_at, n.notification_id.as_str().to_owned()));
        self.notifications_by_event
            .entry(n.event_id.as_str().to_owned())
            .or_default()
            .insert(n.notification_id.as_str().to_owned());
    }

    fn unindex_notification(&mut self, n: &Notification) {
        if let Some(keys) = self.notifications_by_user.get_mut(n.user_id.as_str()) {
            keys.remove(&(n.created_at, n.notification_id.as_str().to_owned()));
            if keys.is_empty() {
                self.notifications_by_user.remove(n.user_id.as_str());
            }
        }
        if let Some(ids) = self.notifications_by_event.get_mut(n.event_id.as_str()) {
            ids.remove(n.notification_id.as_str());
            if ids.is_empty() {
                self.notifications_by_event.remove(n.event_id.as_str());
            }
        }
    }

    /// A new event was written: forget the oldest beyond the retention.
    fn retain_event(&mut self, event_id: &str) {
        let Some(r) = self.retention.as_mut() else { return };
        r.event_order.push_back(event_id.to_owned());
        while r.event_order.len() > r.events {
            if let Some(old) = r.event_order.pop_front() {
                self.events.remove(&old);
            }
        }
    }

    /// A new notification was written: forget the oldest final ones beyond the retention.
    fn retain_notification(&mut self, notification_id: &str) {
        let Some(mut r) = self.retention.take() else { return };
        r.notification_order.push_back(notification_id.to_owned());
        let cap = r.events.saturating_mul(NOTIFICATIONS_PER_EVENT);
        let mut checks = 0;
        while self.notifications.len() > cap && checks < EVICTION_CHECKS {
            checks += 1;
            let Some(old) = r.notification_order.pop_front() else { break };
            match self.notification(&old) {
                Ok(Some(n)) if n.status.is_final() => {
                    self.notifications.remove(&old);
                    self.unindex_notification(&n);
                }
                // Still on its way: kept, and looked at again later.
                Ok(Some(_)) => r.notification_order.push_back(old),
                // Gone already, or unreadable (kept: nothing forgets what it cannot read).
                Ok(None) | Err(_) => {}
            }
        }
        self.retention = Some(r);
    }

    fn unindex_connection(&mut self, c: &Connection) {
        if let Some(ids) = self.connections_by_user.get_mut(c.user_id.as_str()) {
            ids.remove(&c.connection_id);
            if ids.is_empty() {
                self.connections_by_user.remove(c.user_id.as_str());
            }
        }
    }

    fn notification(&self, id: &str) -> Result<Option<Notification>, StoreError> {
        self.notifications.get(id).map(|v| decode(v, "notification")).transpose()
    }
}

/// All five store ports over one set of in-process tables; share it behind an `Arc`.
#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that keeps the newest `events` events (0: all) and the notifications that go with
    /// them (see [`Retained`]): the local stack's memory stays bounded under sustained load.
    pub fn with_retention(events: usize) -> Self {
        let store = Self::default();
        if events > 0 {
            store.tables().retention = Some(Retained { events, event_order: VecDeque::new(), notification_order: VecDeque::new() });
        }
        store
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.tables();
        f.debug_struct("MemoryStore")
            .field("idempotency", &t.idempotency.len())
            .field("events", &t.events.len())
            .field("notifications", &t.notifications.len())
            .field("profiles", &t.profiles.len())
            .field("preferences", &t.preferences.len())
            .field("connections", &t.connections.len())
            .field("suppressions", &t.suppressions.len())
            .finish()
    }
}

/// An item as stored: its compact JSON (a third of a `serde_json::Value`'s memory, and read
/// back as fast).
type Item = Box<str>;

fn encode<T: Serialize>(item: &T, what: &str) -> Result<Item, StoreError> {
    serde_json::to_string(item).map(String::into_boxed_str).map_err(|e| StoreError::Corrupt(format!("{what} cannot be stored: {e}")))
}

fn decode<T: DeserializeOwned>(item: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(item).map_err(|e| StoreError::Corrupt(format!("stored {what} cannot be read: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Idempotency.

/// Whether a stored record still holds its key at `now`.
fn is_live(record: &IdempotencyRecord, now: Timestamp) -> bool {
    if record.expires_at <= now {
        return false;
    }
    match &record.state {
        IdempotencyState::InProgress { until } => *until > now,
        IdempotencyState::Completed { .. } => true,
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim(
        &self,
        key: &str,
        payload_hash: &str,
        now: Timestamp,
        in_progress_until: Timestamp,
        expires_at: Timestamp,
    ) -> Result<Claim, StoreError> {
        let record = IdempotencyRecord {
            key: key.to_owned(),
            payload_hash: payload_hash.to_owned(),
            state: IdempotencyState::InProgress { until: in_progress_until },
            expires_at,
        };
        let value = encode(&record, "idempotency record")?;
        let mut t = self.tables();
        if let Some(stored) = t.idempotency.get(key) {
            let current: IdempotencyRecord = decode(stored, "idempotency record")?;
            if is_live(&current, now) {
                return Ok(Claim::Existing(current));
            }
        }
        t.idempotency.insert(key.to_owned(), value);
        Ok(Claim::Acquired)
    }

    async fn complete(&self, key: &str, payload_hash: &str, response: StoredResponse, expires_at: Timestamp) -> Result<(), StoreError> {
        let mut t = self.tables();
        // An unconditional put, as Powertools does.
        let record = IdempotencyRecord {
            key: key.to_owned(),
            payload_hash: payload_hash.to_owned(),
            state: IdempotencyState::Completed { response },
            expires_at,
        };
        let value = encode(&record, "idempotency record")?;
        t.idempotency.insert(key.to_owned(), value);
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.tables().idempotency.remove(key);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Events.

#[async_trait]
impl EventStore for MemoryStore {
    async fn put_event(&self, record: &EventRecord) -> Result<bool, StoreError> {
        let value = encode(record, "event")?;
        let mut t = self.tables();
        let key = record.event.event_id.as_str();
        if t.events.contains_key(key) {
            return Ok(false);
        }
        t.events.insert(key.to_owned(), value);
        t.retain_event(key);
        Ok(true)
    }

    async fn get_event(&self, event_id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        let t = self.tables();
        t.events.get(event_id.as_str()).map(|v| decode(v, "event")).transpose()
    }

    async fn scrub_event_payload(&self, event_id: &EventId) -> Result<bool, StoreError> {
        let mut t = self.tables();
        let Some(stored) = t.events.get(event_id.as_str()) else {
            return Ok(false);
        };
        let mut record: EventRecord = decode(stored, "event")?;
        if record.event.payload.is_null() {
            return Ok(false);
        }
        record.event.payload = Value::Null;
        let value = encode(&record, "event")?;
        t.events.insert(event_id.as_str().to_owned(), value);
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------------
// Notifications.

/// The opaque `list_for_user` cursor: the sort key of the last item returned, like DynamoDB's
/// `LastEvaluatedKey`, so a page starts strictly after it whatever was written in between.
#[derive(Serialize, Deserialize)]
struct Cursor {
    created_at: Timestamp,
    notification_id: String,
}

fn encode_cursor(key: &UserSortKey) -> String {
    let cursor = Cursor { created_at: key.0, notification_id: key.1.clone() };
    // Serializing a struct of a timestamp and a string cannot fail.
    let json = serde_json::to_vec(&cursor).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

fn decode_cursor(raw: &str) -> Option<UserSortKey> {
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).ok()?;
    let cursor: Cursor = serde_json::from_slice(&bytes).ok()?;
    Some((cursor.created_at, cursor.notification_id))
}

#[async_trait]
impl NotificationStore for MemoryStore {
    async fn create(&self, notification: &Notification) -> Result<bool, StoreError> {
        let value = encode(notification, "notification")?;
        let mut t = self.tables();
        let key = notification.notification_id.as_str();
        if t.notifications.contains_key(key) {
            return Ok(false);
        }
        t.notifications.insert(key.to_owned(), value);
        t.index_notification(notification);
        t.retain_notification(key);
        Ok(true)
    }

    async fn get(&self, id: &NotificationId) -> Result<Option<Notification>, StoreError> {
        self.tables().notification(id.as_str())
    }

    async fn transition(&self, id: &NotificationId, guard: &Guard, change: &Transition) -> Result<TransitionOutcome, StoreError> {
        let mut t = self.tables();
        let Some(current) = t.notification(id.as_str())? else {
            return Ok(TransitionOutcome::NotFound);
        };
        if !guard.holds_for(&current) {
            return Ok(TransitionOutcome::Rejected(current));
        }
        let next = change.apply(&current);
        let value = encode(&next, "notification")?;
        // Index keys never change under a transition today; keep the indexes right if they do.
        let reindex = next.user_id != current.user_id || next.created_at != current.created_at || next.event_id != current.event_id;
        if reindex {
            t.unindex_notification(&current);
        }
        t.notifications.insert(id.as_str().to_owned(), value);
        if reindex {
            t.index_notification(&next);
        }
        Ok(TransitionOutcome::Applied(next))
    }

    async fn upsert(&self, record: &Notification, guard: &Guard, change: &Transition) -> Result<UpsertOutcome, StoreError> {
        let mut t = self.tables();
        let id = record.notification_id.as_str();
        let current = t.notification(id)?;
        if let Some(current) = &current
            && !guard.holds_for(current)
        {
            return Ok(UpsertOutcome::Rejected(current.clone()));
        }
        let next = change.apply_or_create(current.as_ref(), record);
        let value = encode(&next, "notification")?;
        if let Some(current) = &current {
            t.unindex_notification(current);
        }
        t.notifications.insert(id.to_owned(), value);
        t.index_notification(&next);
        Ok(match current {
            None => {
                // A new notification, as `create` writes one: under the local stack's retention.
                t.retain_notification(id);
                UpsertOutcome::Created(next)
            }
            Some(_) => UpsertOutcome::Applied(next),
        })
    }

    async fn mark(&self, id: &NotificationId, owner: &UserId, mark: crate::domain::InboxMark, at: Timestamp) -> Result<Option<Notification>, StoreError> {
        let mut t = self.tables();
        let Some(current) = t.notification(id.as_str())?.filter(|n| n.user_id == *owner) else {
            return Ok(None);
        };
        let next = mark.apply(&current, at);
        let value = encode(&next, "notification")?;
        t.notifications.insert(id.as_str().to_owned(), value);
        Ok(Some(next))
    }

    async fn list_for_event(&self, event_id: &EventId) -> Result<Vec<Notification>, StoreError> {
        let t = self.tables();
        let mut out = Vec::new();
        if let Some(ids) = t.notifications_by_event.get(event_id.as_str()) {
            for id in ids {
                if let Some(n) = t.notification(id)? {
                    out.push(n);
                }
            }
        }
        drop(t);
        out.sort_by(|a, b| {
            channel_rank(a.channel)
                .cmp(&channel_rank(b.channel))
                .then_with(|| a.notification_id.cmp(&b.notification_id))
        });
        Ok(out)
    }

    async fn list_for_user(&self, user_id: &UserId, limit: usize, cursor: Option<&str>) -> Result<Page<Notification>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let start = match cursor {
            None => None,
            Some(raw) => match decode_cursor(raw) {
                Some(key) => Some(key),
                None => return Ok(Page { items: Vec::new(), next: None }),
            },
        };
        let t = self.tables();
        let Some(keys) = t.notifications_by_user.get(user_id.as_str()) else {
            return Ok(Page { items: Vec::new(), next: None });
        };
        // Newest first: the index in reverse, strictly below the cursor's key.
        let mut remaining: Box<dyn Iterator<Item = &UserSortKey>> = match &start {
            Some(after) => Box::new(keys.range(..after.clone()).rev()),
            None => Box::new(keys.iter().rev()),
        };
        let mut items = Vec::with_capacity(limit);
        let mut last = None;
        for key in remaining.by_ref() {
            if let Some(n) = t.notification(&key.1)? {
                items.push(n);
                last = Some(key.clone());
                if items.len() == limit {
                    break;
                }
            }
        }
        let more = remaining.next().is_some();
        let next = match (more, last) {
            (true, Some(key)) => Some(encode_cursor(&key)),
            _ => None,
        };
        Ok(Page { items, next })
    }

    async fn scrub_content(&self, id: &NotificationId) -> Result<bool, StoreError> {
        let mut t = self.tables();
        let Some(mut n) = t.notification(id.as_str())? else {
            return Ok(false);
        };
        if n.title.is_none() && n.last_error.is_none() && n.body.is_none() {
            return Ok(false);
        }
        (n.title, n.last_error, n.body) = (None, None, None);
        let value = encode(&n, "notification")?;
        t.notifications.insert(id.as_str().to_owned(), value);
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------------
// Profiles and preferences.

#[async_trait]
impl ProfileStore for MemoryStore {
    async fn get_profile(&self, user_id: &UserId) -> Result<Option<Profile>, StoreError> {
        let t = self.tables();
        t.profiles.get(user_id.as_str()).map(|v| decode(v, "profile")).transpose()
    }

    async fn put_profile(&self, user_id: &UserId, profile: &Profile) -> Result<(), StoreError> {
        let value = encode(profile, "profile")?;
        self.tables().profiles.insert(user_id.as_str().to_owned(), value);
        Ok(())
    }

    async fn get_preferences(&self, user_id: &UserId) -> Result<Option<Preferences>, StoreError> {
        let t = self.tables();
        t.preferences.get(user_id.as_str()).map(|v| decode(v, "preferences")).transpose()
    }

    async fn put_preferences(&self, user_id: &UserId, preferences: &Preferences) -> Result<(), StoreError> {
        let value = encode(preferences, "preferences")?;
        self.tables().preferences.insert(user_id.as_str().to_owned(), value);
        Ok(())
    }

    async fn delete_recipient(&self, user_id: &UserId) -> Result<bool, StoreError> {
        let mut t = self.tables();
        let profile = t.profiles.remove(user_id.as_str()).is_some();
        let preferences = t.preferences.remove(user_id.as_str()).is_some();
        Ok(profile || preferences)
    }
}

// ---------------------------------------------------------------------------------------------
// Connections.

#[async_trait]
impl ConnectionStore for MemoryStore {
    // The live count is the number of connections held: one lock covers the change and the count.
    async fn put_connection(&self, connection: &Connection) -> Result<Option<i64>, StoreError> {
        let value = encode(connection, "connection")?;
        let mut t = self.tables();
        let replaced = t.connections.insert(connection.connection_id.clone(), value);
        if let Some(old) = &replaced {
            let old: Connection = decode(old, "connection")?;
            t.unindex_connection(&old);
        }
        t.connections_by_user.entry(connection.user_id.as_str().to_owned()).or_default().insert(connection.connection_id.clone());
        Ok(replaced.is_none().then(|| t.connections.len() as i64))
    }

    async fn delete_connection(&self, connection_id: &str) -> Result<Option<i64>, StoreError> {
        let mut t = self.tables();
        let Some(removed) = t.connections.remove(connection_id) else { return Ok(None) };
        if let Ok(old) = decode::<Connection>(&removed, "connection") {
            t.unindex_connection(&old);
        }
        Ok(Some(t.connections.len() as i64))
    }

    async fn active_connections(&self) -> Result<i64, StoreError> {
        Ok(self.tables().connections.len() as i64)
    }

    async fn connections_of(&self, user_id: &UserId, now: Timestamp) -> Result<Vec<Connection>, StoreError> {
        let t = self.tables();
        let mut out = Vec::new();
        for id in t.connections_by_user.get(user_id.as_str()).into_iter().flatten() {
            let Some(value) = t.connections.get(id) else { continue };
            let c: Connection = decode(value, "connection")?;
            if c.expires_at > now {
                out.push(c);
            }
        }
        drop(t);
        out.sort_by(|a, b| a.connected_at.cmp(&b.connected_at).then_with(|| a.connection_id.cmp(&b.connection_id)));
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Suppressions.

/// The `list_suppressions` cursor: the sort key of the last item returned.
#[derive(Serialize, Deserialize)]
struct SuppressionCursor {
    created_ms: i64,
    key: String,
}

fn encode_suppression_cursor(key: &SuppressionSortKey) -> String {
    let cursor = SuppressionCursor { created_ms: key.0, key: key.1.clone() };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cursor).unwrap_or_default())
}

fn decode_suppression_cursor(raw: &str) -> Option<SuppressionSortKey> {
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).ok()?;
    let cursor: SuppressionCursor = serde_json::from_slice(&bytes).ok()?;
    Some((cursor.created_ms, cursor.key))
}

fn suppression_sort_key(s: &Suppression, key: &str) -> SuppressionSortKey {
    (s.created_at.as_millisecond().max(0), key.to_owned())
}

#[async_trait]
impl SuppressionStore for MemoryStore {
    async fn suppress(&self, suppression: &Suppression) -> Result<(), StoreError> {
        let value = encode(suppression, "suppression")?;
        let key = suppression_key(&suppression.tenant, suppression.channel, &suppression.address);
        let mut t = self.tables();
        if let Some(old) = t.suppressions.get(&key) {
            let old: Suppression = decode(old, "suppression")?;
            t.suppressions_by_time.remove(&suppression_sort_key(&old, &key));
        }
        t.suppressions_by_time.insert(suppression_sort_key(suppression, &key));
        t.suppressions.insert(key, value);
        Ok(())
    }

    async fn is_suppressed(&self, tenant: &crate::domain::Tenant, channel: Channel, address: &str) -> Result<bool, StoreError> {
        Ok(self.tables().suppressions.contains_key(&suppression_key(tenant, channel, address)))
    }

    async fn list_suppressions(&self, tenant: &crate::domain::Tenant, limit: usize, cursor: Option<&str>) -> Result<Page<Suppression>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let start = match cursor {
            None => None,
            Some(raw) => match decode_suppression_cursor(raw) {
                Some(key) => Some(key),
                None => return Ok(Page { items: Vec::new(), next: None }),
            },
        };
        let t = self.tables();
        let mut remaining: Box<dyn Iterator<Item = &SuppressionSortKey>> = match &start {
            Some(after) => Box::new(t.suppressions_by_time.range(..after.clone()).rev()),
            None => Box::new(t.suppressions_by_time.iter().rev()),
        };
        // The tenant's own, as DynamoDB's per-tenant index partition holds them.
        let mut remaining = remaining.by_ref().filter(|key| {
            t.suppressions.get(&key.1).and_then(|v| decode::<Suppression>(v, "suppression").ok()).is_some_and(|s| s.tenant == *tenant)
        });
        let mut items = Vec::with_capacity(limit);
        let mut last = None;
        for key in remaining.by_ref() {
            if let Some(value) = t.suppressions.get(&key.1) {
                items.push(decode(value, "suppression")?);
                last = Some(key.clone());
                if items.len() == limit {
                    break;
                }
            }
        }
        let more = remaining.next().is_some();
        let next = match (more, last) {
            (true, Some(key)) => Some(encode_suppression_cursor(&key)),
            _ => None,
        };
        Ok(Page { items, next })
    }

    async fn remove_suppression(&self, tenant: &crate::domain::Tenant, channel: Channel, address: &str) -> Result<bool, StoreError> {
        let key = suppression_key(tenant, channel, address);
        let mut t = self.tables();
        let Some(old) = t.suppressions.remove(&key) else {
            return Ok(false);
        };
        match decode::<Suppression>(&old, "suppression") {
            Ok(old) => {
                t.suppressions_by_time.remove(&suppression_sort_key(&old, &key));
            }
            // Unreadable: drop whatever index entry still names it.
            Err(_) => t.suppressions_by_time.retain(|(_, k)| *k != key),
        }
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------------
// Sending rates.

/// How many seconds of counts are kept (DynamoDB's items expire a minute after their second).
const RATE_WINDOWS_KEPT: i64 = 60;

/// The DynamoDB adapter's fixed one-second windows, under the lock: a count per (key, second);
/// a `per_second` of 0 is taken as 1, as there.
#[async_trait]
impl RateLimiter for MemoryStore {
    async fn acquire(&self, key: &str, per_second: u32, now: Timestamp) -> Result<Pace, StoreError> {
        let second = now.as_second();
        let mut t = self.tables();
        t.rate_limits.retain(|(_, s), _| *s > second - RATE_WINDOWS_KEPT);
        let sent = t.rate_limits.entry((key.to_owned(), second)).or_default();
        if *sent >= per_second.max(1) {
            return Ok(Pace::Wait(until_next_second(now)));
        }
        *sent += 1;
        Ok(Pace::Go)
    }

    /// As DynamoDB's `ADD sent :wanted`: the count may pass the budget, only what was under it
    /// is granted.
    async fn lease(&self, key: &str, per_second: u32, wanted: u32, now: Timestamp) -> Result<u32, StoreError> {
        if wanted == 0 {
            return Ok(0);
        }
        let second = now.as_second();
        let mut t = self.tables();
        t.rate_limits.retain(|(_, s), _| *s > second - RATE_WINDOWS_KEPT);
        let sent = t.rate_limits.entry((key.to_owned(), second)).or_default();
        let before = *sent;
        *sent = sent.saturating_add(wanted);
        Ok(crate::ports::pacing::granted(per_second, u64::from(before), wanted))
    }
}


// ---------------------------------------------------------------------------------------------
// The key directory.

#[async_trait]
impl crate::ports::KeyDirectory for MemoryStore {
    async fn find_key(&self, key_hash: &str) -> Result<Option<crate::ports::StoredKey>, StoreError> {
        self.tables().api_keys.get(key_hash).map(|v| decode(v, "API key")).transpose()
    }

    async fn put_key(&self, key: &crate::ports::StoredKey) -> Result<(), StoreError> {
        let value = encode(key, "API key")?;
        self.tables().api_keys.insert(key.key_hash.clone(), value);
        Ok(())
    }

    async fn list_keys(&self, tenant: Option<&crate::domain::Tenant>) -> Result<Vec<crate::ports::StoredKey>, StoreError> {
        let mut keys: Vec<crate::ports::StoredKey> = self.tables().api_keys.values().map(|v| decode(v, "API key")).collect::<Result<_, _>>()?;
        keys.retain(|k| tenant.is_none_or(|t| k.tenant == *t));
        keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.key_id.cmp(&b.key_id)));
        Ok(keys)
    }

    async fn revoke_key(&self, key_id: &str, at: Timestamp) -> Result<Option<crate::ports::StoredKey>, StoreError> {
        let mut tables = self.tables();
        let Some((hash, mut key)) = tables
            .api_keys
            .iter()
            .map(|(h, v)| decode::<crate::ports::StoredKey>(v, "API key").map(|k| (h.clone(), k)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .find(|(_, k)| k.key_id == key_id)
        else {
            return Ok(None);
        };
        key.revoked_at = key.revoked_at.or(Some(at));
        let value = encode(&key, "API key")?;
        tables.api_keys.insert(hash, value);
        Ok(Some(key))
    }

    async fn tenant_settings(&self, tenant: &crate::domain::Tenant) -> Result<Option<crate::ports::TenantSettings>, StoreError> {
        self.tables().tenants.get(tenant.as_str()).map(|v| decode(v, "tenant settings")).transpose()
    }

    async fn put_tenant_settings(&self, tenant: &crate::domain::Tenant, settings: &crate::ports::TenantSettings) -> Result<(), StoreError> {
        let value = encode(settings, "tenant settings")?;
        self.tables().tenants.insert(tenant.as_str().to_owned(), value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let key = (ts(1_700_000_000), "ntf_abc".to_owned());
        assert_eq!(decode_cursor(&encode_cursor(&key)), Some(key));
        for bad in ["", "!!!", "bm90IGpzb24", &URL_SAFE_NO_PAD.encode(br#"{"created_at":"nope","notification_id":"x"}"#)] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn unreadable_items_are_corrupt_not_missing() {
        let store = MemoryStore::new();
        {
            let mut t = store.tables();
            t.idempotency.insert("k".into(), r#"{"key": "k"}"#.into());
            t.events.insert("evt-1".into(), "42".into());
            t.notifications.insert("ntf_1".into(), r#"{"status": "lost"}"#.into());
            t.profiles.insert("u-1".into(), r#"{"fax": "+1"}"#.into());
        }
        let now = ts(1_700_000_000);
        assert!(matches!(store.claim("k", "h", now, now, now).await, Err(StoreError::Corrupt(_))));
        assert!(matches!(store.get_event(&EventId::parse("evt-1").unwrap()).await, Err(StoreError::Corrupt(_))));
        let id = NotificationId::from_stored("ntf_1".into());
        assert!(matches!(store.get(&id).await, Err(StoreError::Corrupt(_))));
        let change = Transition::to(crate::domain::Status::Sent, now);
        assert!(matches!(store.transition(&id, &Guard::StatusIn(vec![]), &change).await, Err(StoreError::Corrupt(_))));
        assert!(matches!(store.get_profile(&UserId::parse("u-1").unwrap()).await, Err(StoreError::Corrupt(_))));
    }

    fn event(id: &str) -> EventRecord {
        let body = serde_json::json!({"event_id": id, "event_type": "user.registered", "user_id": "u-1", "payload": {}});
        EventRecord {
            event: crate::domain::Event::parse(&body).expect("a valid event"),
            priority: crate::domain::Priority::Normal,
            lane: crate::domain::Lane::Bulk,
            accepted_at: ts(1_700_000_000),
        }
    }

    fn notification(event: &str, channel: Channel, status: crate::domain::Status) -> Notification {
        let n = Notification::pending(&EventId::parse(event).unwrap(), "user.registered", &UserId::parse("u-1").unwrap(), channel, crate::domain::Priority::Normal, ts(1_700_000_000));
        Notification { status, ..n }
    }

    #[tokio::test]
    async fn with_retention_the_newest_events_are_kept() {
        let store = MemoryStore::with_retention(2);
        for id in ["evt-1", "evt-2", "evt-3"] {
            assert!(store.put_event(&event(id)).await.unwrap());
        }
        assert_eq!(store.get_event(&EventId::parse("evt-1").unwrap()).await.unwrap(), None, "the oldest is forgotten");
        for id in ["evt-2", "evt-3"] {
            assert!(store.get_event(&EventId::parse(id).unwrap()).await.unwrap().is_some(), "{id} is kept");
        }
        let unbounded = MemoryStore::new();
        for id in ["evt-1", "evt-2", "evt-3"] {
            unbounded.put_event(&event(id)).await.unwrap();
        }
        assert!(unbounded.get_event(&EventId::parse("evt-1").unwrap()).await.unwrap().is_some(), "no retention: all kept");
    }

    #[tokio::test]
    async fn with_retention_old_final_notifications_go_and_those_on_their_way_stay() {
        use crate::domain::Status;
        // One event kept: four notifications.
        let store = MemoryStore::with_retention(1);
        let on_its_way = notification("evt-0", Channel::Email, Status::Pending);
        store.create(&on_its_way).await.unwrap();
        let mut finals = Vec::new();
        for (i, channel) in [Channel::Sms, Channel::Push, Channel::Websocket, Channel::Webhook, Channel::Telegram].into_iter().enumerate() {
            let n = notification(&format!("evt-{}", i + 1), channel, Status::Sent);
            store.create(&n).await.unwrap();
            finals.push(n);
        }
        assert!(store.get(&on_its_way.notification_id).await.unwrap().is_some(), "a pending notification is never forgotten");
        assert_eq!(store.get(&finals[0].notification_id).await.unwrap(), None, "the oldest final one is forgotten");
        assert_eq!(store.list_for_event(&finals[0].event_id).await.unwrap(), vec![], "and unindexed");
        for n in &finals[2..] {
            assert!(store.get(&n.notification_id).await.unwrap().is_some(), "the newest are kept");
        }
        assert_eq!(store.tables().notifications.len(), 4);
    }

    #[tokio::test]
    async fn with_retention_notifications_created_by_a_claim_are_forgotten_once_final() {
        use crate::domain::{Status, Transition};
        let store = MemoryStore::with_retention(1);
        let sent = Transition::to(Status::Sent, ts(1_700_000_010));
        let mut created = Vec::new();
        for (i, channel) in [Channel::Sms, Channel::Push, Channel::Websocket, Channel::Webhook, Channel::Telegram].into_iter().enumerate() {
            let n = notification(&format!("evt-{i}"), channel, Status::Pending);
            let guard = Guard::Claimable { now: ts(1_700_000_010) };
            assert!(matches!(store.upsert(&n, &guard, &sent).await.unwrap(), UpsertOutcome::Created(_)));
            created.push(n);
        }
        assert_eq!(store.get(&created[0].notification_id).await.unwrap(), None, "the oldest final one is forgotten");
        assert_eq!(store.tables().notifications.len(), 4);
    }

    #[test]
    fn a_poisoned_lock_is_recovered() {
        let store = std::sync::Arc::new(MemoryStore::new());
        let s = store.clone();
        let _ = std::thread::spawn(move || {
            let _guard = s.tables();
            panic!("poison the lock");
        })
        .join();
        assert!(store.tables.is_poisoned());
        assert_eq!(store.tables().events.len(), 0);
    }
}
