//! When a notification fails for good, try the channel its event type names as the fallback
//! (e.g. push → SMS) by asking the router for that one channel.

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::domain::Notification;
use crate::domain::ids::message_group_for;
use crate::jobs::{FallbackRequest, RouteJob, encode};
use crate::ports::{EventStore, OutgoingMessage, QueueSender};
use crate::topology::events_queue;

pub struct FallbackDeps {
    pub catalog: Arc<Catalog>,
    pub events: Arc<dyn EventStore>,
    pub queue: Arc<dyn QueueSender>,
}

/// Queues routing of the fallback channel, if the event type has one for `failed.channel`.
/// Idempotent: the fallback notification's id is derived like any other, and the route job is
/// deduplicated by the queue.
pub async fn request_fallback(deps: &FallbackDeps, failed: &Notification) -> Result<(), String> {
    let Some(next) = deps.catalog.event_type(&failed.event_type).and_then(|t| t.fallback.get(&failed.channel).copied()) else {
        return Ok(());
    };
    let Some(record) = deps.events.get_event(&failed.event_id).await.map_err(|e| e.to_string())? else {
        return Err(format!("event {} not found for fallback", failed.event_id));
    };
    let job = RouteJob {
        event: record.event,
        priority: record.priority,
        accepted_at: record.accepted_at,
        fallback: Some(FallbackRequest { channel: next, replaces: failed.channel }),
    };
    // SQS dedup ids are at most 128 characters; event ids may be 128 already.
    let dedup = format!("{}:fallback", crate::domain::NotificationId::derive(&failed.event_id, next));
    let message = OutgoingMessage::fifo(encode(&job), message_group_for(&failed.user_id), dedup);
    deps.queue.send_batch(&events_queue(record.lane), vec![message]).await.map_err(|e| e.to_string())?;
    tracing::info!(notification_id = %failed.notification_id, from = failed.channel.as_str(), to = next.as_str(), "fallback requested");
    Ok(())
}
