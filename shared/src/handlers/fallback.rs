//! When a notification fails for good, try the channel its event type names as the fallback
//! (e.g. push → SMS) by asking the router for that one channel.
//!
//! The fallback is part of the notification's state machine: the write that fails it also
//! records the fallback it owes (`fallback: {channel, queued: false}`), and only once the route
//! job is on its queue is it marked `queued: true`. Whoever handles the notification next (its
//! send job delivered again, or the dead-letter handler) finds a fallback still owed and queues
//! it, so a request that fails, or a handler that dies in between, delays the fallback but never
//! loses it.

use jiff::Timestamp;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::domain::ids::message_group_for;
use crate::domain::{Channel, Event, FallbackProgress, Guard, Notification, NotificationId, Priority, Status, Transition};
use crate::jobs::{FallbackRequest, RouteJob, encode};
use crate::ports::{Clock, EventStore, NotificationStore, OutgoingMessage, QueueError, QueueSender, StoreError};
use crate::topology::events_queue;

pub struct FallbackDeps {
    pub catalog: Arc<Catalog>,
    pub events: Arc<dyn EventStore>,
    pub notifications: Arc<dyn NotificationStore>,
    pub queue: Arc<dyn QueueSender>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    /// The event record is gone: nothing to route the fallback from.
    #[error("event {0} not found for its fallback")]
    EventMissing(String),
}

/// The fallback the event type names for `channel`, owed but not yet queued.
pub fn owed_fallback(catalog: &Catalog, event_type: &str, channel: Channel) -> Option<FallbackProgress> {
    let next = catalog.event_type(event_type)?.fallback.get(&channel).copied()?;
    Some(FallbackProgress { channel: next, queued: false })
}

/// The transition that fails `n` for good with `reason`, owing its fallback if it has one.
pub fn fail(catalog: &Catalog, n: &Notification, at: Timestamp, reason: &str) -> Transition {
    Transition::to(Status::Failed, at).reason(reason).lease_until(None).fallback(owed_fallback(catalog, &n.event_type, n.channel))
}

/// The route job asking for `next` in place of `failed`, on its lane's events queue.
pub fn fallback_message(event: &Event, priority: Priority, accepted_at: Timestamp, failed: &Notification, next: Channel) -> (String, OutgoingMessage) {
    let job = RouteJob {
        event: event.clone(),
        priority,
        accepted_at,
        fallback: Some(FallbackRequest { channel: next, replaces: failed.channel }),
    };
    // SQS dedup ids are at most 128 characters; event ids may be 128 already.
    let dedup = format!("{}:fallback", NotificationId::derive(&failed.event_id, next));
    let message = OutgoingMessage::fifo(encode(&job), message_group_for(&failed.user_id), dedup);
    (events_queue(priority.lane()), message)
}

/// Records that `failed`'s fallback is on its queue.
pub async fn mark_fallback_queued(notifications: &dyn NotificationStore, failed: &Notification, next: Channel, at: Timestamp) -> Result<(), StoreError> {
    let change = Transition::to(Status::Failed, at).fallback(Some(FallbackProgress { channel: next, queued: true }));
    // Rejected or not found: nothing of this notification to mark any more.
    notifications.transition(&failed.notification_id, &Guard::StatusIn(vec![Status::Failed]), &change).await?;
    Ok(())
}

/// Queues the fallback `failed` owes, then records that it did. Does nothing if it owes none.
/// Idempotent: the fallback notification's id is derived like any other, and the route job is
/// deduplicated by the queue, so a request repeated after a failure creates nothing twice.
pub async fn request_fallback(deps: &FallbackDeps, failed: &Notification) -> Result<(), FallbackError> {
    let Some(next) = failed.owes_fallback() else {
        return Ok(());
    };
    let Some(record) = deps.events.get_event(&failed.event_id).await? else {
        return Err(FallbackError::EventMissing(failed.event_id.to_string()));
    };
    let (queue, message) = fallback_message(&record.event, record.priority, record.accepted_at, failed, next);
    deps.queue.send_batch(&queue, vec![message]).await?;
    mark_fallback_queued(deps.notifications.as_ref(), failed, next, deps.clock.now()).await?;
    tracing::info!(notification_id = %failed.notification_id, from = failed.channel.as_str(), to = next.as_str(), "fallback requested");
    Ok(())
}
