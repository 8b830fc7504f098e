//! Durable state (DynamoDB on AWS). Every claim and state change is a conditional write: the
//! adapter applies it only if its condition holds at the moment of writing, atomically.

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::domain::{Channel, Event, EventId, Guard, Lane, Notification, NotificationId, Preferences, Priority, Profile, Transition, UserId};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    // Both redacted: an SDK's or serde's message can quote an item's values.
    #[error("store unavailable: {}", crate::redact::redact(.0))]
    Unavailable(String),
    #[error("stored item cannot be read: {}", crate::redact::redact(.0))]
    Corrupt(String),
}

// ---------------------------------------------------------------------------------------------
// Idempotency records, on the design of Powertools' idempotency utility.

/// The answer given to the first request, replayed to every repeat of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IdempotencyState {
    /// A request holds the key; if it dies, the claim lapses at `until`.
    InProgress { until: Timestamp },
    Completed { response: StoredResponse },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub key: String,
    /// SHA-256 of the canonical request body: the same key with another body is a conflict.
    pub payload_hash: String,
    pub state: IdempotencyState,
    /// After this the record no longer counts (checked in code: TTL deletion lags).
    pub expires_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours: nobody held it, or the previous holder's claim lapsed.
    Acquired,
    /// Somebody holds or completed it: here is their record (read consistently).
    Existing(IdempotencyRecord),
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Writes an in-progress record unless a live one exists (not expired and, when in progress,
    /// not lapsed at `now`).
    async fn claim(
        &self,
        key: &str,
        payload_hash: &str,
        now: Timestamp,
        in_progress_until: Timestamp,
        expires_at: Timestamp,
    ) -> Result<Claim, StoreError>;

    /// Stores the answer, turning our in-progress record into a completed one.
    async fn complete(&self, key: &str, payload_hash: &str, response: StoredResponse, expires_at: Timestamp) -> Result<(), StoreError>;

    /// Drops our in-progress record after a failure, so the caller may retry.
    async fn release(&self, key: &str) -> Result<(), StoreError>;
}

// ---------------------------------------------------------------------------------------------
// Events and notifications.

/// An accepted event, as `GET /v1/events/{event_id}` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventRecord {
    pub event: Event,
    /// The priority in force: the event's own, else its type's default.
    pub priority: Priority,
    pub lane: Lane,
    #[schema(value_type = String, format = DateTime)]
    pub accepted_at: Timestamp,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Writes the event unless one with its id exists; returns whether it wrote.
    async fn put_event(&self, record: &EventRecord) -> Result<bool, StoreError>;
    async fn get_event(&self, event_id: &EventId) -> Result<Option<EventRecord>, StoreError>;

    /// Erasure: replaces the event's payload with `null`, keeping the rest of the record (id,
    /// type, user, priority, lane, times), so its status stays answerable. Answers whether it
    /// removed a payload (`false`: no such event, or erased before).
    async fn scrub_event_payload(&self, _event_id: &EventId) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("this store cannot erase event payloads".into()))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum TransitionOutcome {
    Applied(Notification),
    /// The guard did not hold: the notification as it is now.
    Rejected(Notification),
    NotFound,
}

/// What [`NotificationStore::upsert`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum UpsertOutcome {
    /// No notification had the id: the record was created, with the change applied.
    Created(Notification),
    /// The guard held: the change was applied.
    Applied(Notification),
    /// The guard did not hold: the notification as it is now.
    Rejected(Notification),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back to get the next page; `None` on the last one.
    pub next: Option<String>,
}

#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Creates the notification unless one with its id exists; returns whether it did.
    async fn create(&self, notification: &Notification) -> Result<bool, StoreError>;
    async fn get(&self, id: &NotificationId) -> Result<Option<Notification>, StoreError>;
    async fn transition(&self, id: &NotificationId, guard: &Guard, change: &Transition) -> Result<TransitionOutcome, StoreError>;
    /// A transition whose notification may not exist yet, in one conditional write: creates
    /// `record` with `change` applied when no notification has its id, else applies `change`
    /// if `guard` holds (see [`Transition::apply_or_create`]). The sender's claim of a
    /// notification the router queued without writing it, and the dead-letter handler's failure
    /// of one never claimed, are this.
    async fn upsert(&self, record: &Notification, guard: &Guard, change: &Transition) -> Result<UpsertOutcome, StoreError>;
    /// Every notification of one event, in channel order.
    async fn list_for_event(&self, event_id: &EventId) -> Result<Vec<Notification>, StoreError>;
    /// One user's notifications, newest first.
    async fn list_for_user(&self, user_id: &UserId, limit: usize, cursor: Option<&str>) -> Result<Page<Notification>, StoreError>;
    /// Applies an inbox mark to a notification of `owner` (see [`InboxMark::apply`]); `None`
    /// when there is no such notification of theirs.
    async fn mark(&self, id: &NotificationId, owner: &UserId, mark: crate::domain::InboxMark, at: Timestamp) -> Result<Option<Notification>, StoreError>;

    /// Erasure: removes what the notification says of its recipient (the rendered title or
    /// subject, the in-app body, the provider's last error), keeping its ids, status, reason, attempts and times.
    /// Answers whether it removed anything (`false`: no such notification, or nothing left).
    async fn scrub_content(&self, _id: &NotificationId) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("this store cannot erase notification content".into()))
    }
}

// ---------------------------------------------------------------------------------------------
// Recipients.

#[async_trait]
pub trait ProfileStore: Send + Sync {
    async fn get_profile(&self, user_id: &UserId) -> Result<Option<Profile>, StoreError>;
    async fn put_profile(&self, user_id: &UserId, profile: &Profile) -> Result<(), StoreError>;
    async fn get_preferences(&self, user_id: &UserId) -> Result<Option<Preferences>, StoreError>;
    async fn put_preferences(&self, user_id: &UserId, preferences: &Preferences) -> Result<(), StoreError>;

    /// Erasure: deletes the user's profile and preferences. Answers whether either existed.
    async fn delete_recipient(&self, _user_id: &UserId) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("this store cannot delete recipients".into()))
    }

    /// Profile and preferences together (one read where the adapter stores them together).
    async fn get_recipient(&self, user_id: &UserId) -> Result<(Option<Profile>, Option<Preferences>), StoreError> {
        Ok((self.get_profile(user_id).await?, self.get_preferences(user_id).await?))
    }
}

// ---------------------------------------------------------------------------------------------
// Live WebSocket connections.

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub connection_id: String,
    pub user_id: UserId,
    pub connected_at: Timestamp,
    /// API Gateway closes a WebSocket after two hours at most; the record goes stale then.
    pub expires_at: Timestamp,
}

/// The store also counts live connections, for the `ActiveWebSocketConnections` gauge: on Lambda
/// no process lives as long as a connection, so the count is kept next to the connections, up
/// one for every connection recorded that was not there, down one for every connection really
/// forgotten (a second `$disconnect` of the same id changes nothing). A connection whose record
/// expires (TTL) without a `$disconnect` or a `GoneException` still counts.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Records the connection, replacing one with the same id. Returns the live count after
    /// recording a new connection; `None` when it replaced one (the count is unchanged).
    async fn put_connection(&self, connection: &Connection) -> Result<Option<i64>, StoreError>;
    /// Forgets the connection. Returns the live count after forgetting a recorded connection;
    /// `None` when there was none to forget (the count is unchanged).
    async fn delete_connection(&self, connection_id: &str) -> Result<Option<i64>, StoreError>;
    /// The user's connections not yet expired at `now`.
    async fn connections_of(&self, user_id: &UserId, now: Timestamp) -> Result<Vec<Connection>, StoreError>;
    /// The live count: connections recorded and not yet forgotten.
    async fn active_connections(&self) -> Result<i64, StoreError>;
}

/// Channel order used when listing an event's notifications.
pub fn channel_rank(c: Channel) -> usize {
    Channel::ALL.iter().position(|x| *x == c).unwrap_or(usize::MAX)
}
