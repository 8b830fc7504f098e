//! Queue message bodies: what one function hands the next.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::domain::{Channel, Event, EventId, Notification, NotificationId, Priority, UserId};
use crate::ports::{Address, RenderedMessage};

/// On `events-<lane>.fifo`: route an accepted event to its channels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteJob {
    pub event: Event,
    pub priority: Priority,
    pub accepted_at: Timestamp,
    /// Set when this job asks for a fallback channel only, after `replaces` failed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackRequest>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FallbackRequest {
    pub channel: Channel,
    pub replaces: Channel,
}

/// On `send-<channel>-<lane>.fifo`: deliver one rendered notification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SendJob {
    pub notification_id: NotificationId,
    pub event_id: EventId,
    pub event_type: String,
    pub user_id: UserId,
    pub channel: Channel,
    pub priority: Priority,
    pub address: Address,
    pub message: RenderedMessage,
    /// When ingest accepted the event: the start of the ingest-to-sent latency.
    pub accepted_at: Timestamp,
    /// How often the dead-letter handler has put this job back on its queue (see
    /// `handlers::dead_letter`): bounded, so a job cannot cycle between queue and DLQ forever.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redrives: u32,
    /// When the router routed it: the notification's `created_at`. With it the job carries its
    /// notification's record ([`SendJob::record`]), which the router does not write for a job
    /// it queues at once: the sender's claim creates it. Absent only on jobs queued before
    /// routers did so, whose notification the router wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// The channel this one stands in for, when it was routed as a fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_for: Option<Channel>,
}

impl SendJob {
    /// The notification as routed, `pending`, never attempted (what the router used to create
    /// before queueing the job): its title (subject or title) and, for the WebSocket channel,
    /// its in-app body, from the rendered message. `None` for a job without `created_at`.
    pub fn record(&self) -> Option<Notification> {
        let created_at = self.created_at?;
        let part = |name: &str| self.message.parts.get(name).cloned();
        Some(Notification {
            notification_id: self.notification_id.clone(),
            fallback_for: self.fallback_for,
            title: part("subject").or_else(|| part("title")),
            body: if self.channel == Channel::Websocket { part("body") } else { None },
            ..Notification::pending(&self.event_id, &self.event_type, &self.user_id, self.channel, self.priority, created_at)
        })
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// On the `deferred` queue: a send job held until `deliver_after`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeferredJob {
    /// The send queue the job goes to when its time comes.
    pub queue: String,
    pub deliver_after: Timestamp,
    pub job: SendJob,
}

#[derive(Debug, thiserror::Error)]
// serde's message can quote a field's value: redacted.
#[error("message body is not a {what}: {}", crate::redact::redact(&.source.to_string()))]
pub struct BadMessage {
    pub what: &'static str,
    #[source]
    pub source: serde_json::Error,
}

pub fn decode<T: serde::de::DeserializeOwned>(body: &str, what: &'static str) -> Result<T, BadMessage> {
    serde_json::from_str(body).map_err(|source| BadMessage { what, source })
}

pub fn encode<T: Serialize>(job: &T) -> String {
    // Serializing these plain structs cannot fail: no maps with non-string keys, no custom Serialize.
    serde_json::to_string(job).unwrap_or_default()
}
