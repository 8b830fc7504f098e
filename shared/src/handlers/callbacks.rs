//! Status callbacks: every time a notification reaches a final status (`sent`, `failed`,
//! `skipped`), the producer's callback URL gets a signed POST (Standard Webhooks) with the
//! notification's status — the way a sender learns "did it arrive?" without polling.
//!
//! Whoever records a final status emits a [`CallbackJob`] on `status-callbacks.fifo` (an emission
//! that fails makes that handler retry, like an owed fallback; a repeat is dropped by the queue's
//! deduplication within five minutes, and carries the same `webhook-id` after that, so a receiver
//! drops it too). The `status-callbacks` function POSTs each job with the same backoff and budget
//! as any channel; its dead-letter queue is consumed by the same handler.

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

use super::sqs_batch::{ParkReason, Record, RecordOutcome, RetryPolicy};
use crate::domain::ids::message_group_for;
use crate::domain::Notification;
use crate::jobs::{decode, encode};
use crate::ports::{OutgoingMessage, QueueError, QueueSender, SendError};
use crate::topology::CALLBACKS_QUEUE;

/// Where status changes go, if anywhere (`NOTIFY_STATUS_CALLBACK_URL`).
#[derive(Clone)]
pub struct StatusCallbacks {
    pub url: Option<String>,
    pub queue: Arc<dyn QueueSender>,
}

/// On `status-callbacks.fifo`: one status change to POST.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallbackJob {
    pub url: String,
    /// The `webhook-id`: the notification and its status, so a repeat is recognisable.
    pub id: String,
    pub notification: Notification,
}

impl StatusCallbacks {
    /// None configured: nothing is emitted.
    pub fn off(queue: Arc<dyn QueueSender>) -> Self {
        Self { url: None, queue }
    }

    /// Queues the callback of `n`'s final status; nothing for a status that is not final or when
    /// no URL is registered.
    pub async fn emit(&self, n: &Notification) -> Result<(), QueueError> {
        let Some(url) = &self.url else { return Ok(()) };
        if !n.status.is_final() {
            return Ok(());
        }
        let id = format!("{}:{}", n.notification_id, n.status);
        let job = CallbackJob { url: url.clone(), id: id.clone(), notification: n.clone() };
        let message = OutgoingMessage::fifo(encode(&job), message_group_for(&n.user_id), id);
        self.queue.send_batch(CALLBACKS_QUEUE, vec![message]).await
    }
}

/// What the callback POSTs: the notification's status, without its content or address; its
/// tenant, and its ids as the producer sent them.
pub fn callback_body(n: &Notification) -> serde_json::Value {
    let mut body = json!({
        "type": format!("notification.{}", n.status),
        "timestamp": n.updated_at,
        "data": {
            "notification_id": n.notification_id,
            "event_id": n.event_id,
            "event_type": n.event_type,
            "user_id": n.user_id,
            "channel": n.channel,
            "status": n.status,
            "reason": n.reason,
            "attempts": n.attempts,
            "provider": n.provider,
            "fallback_for": n.fallback_for,
            "sent_at": n.sent_at,
            "tenant": crate::domain::Tenant::of(n.user_id.as_str()),
        }
    });
    crate::domain::Tenant::unscope_json(&mut body);
    body
}

/// Posts a callback body (the webhook sender, signed).
#[async_trait::async_trait]
pub trait CallbackPoster: Send + Sync {
    async fn post_callback(&self, url: &str, id: &str, body: &serde_json::Value) -> Result<(), SendError>;
}

#[async_trait::async_trait]
impl CallbackPoster for crate::adapters::http::webhook::WebhookSender {
    async fn post_callback(&self, url: &str, id: &str, body: &serde_json::Value) -> Result<(), SendError> {
        self.post(url, id, body).await.map(|_| ())
    }
}

pub struct CallbackDeps {
    pub poster: Arc<dyn CallbackPoster>,
    /// The same budget as a channel's: backoff by receive count, then given up.
    pub retry: RetryPolicy,
}

/// One record of `status-callbacks.fifo` (or its dead-letter queue).
pub async fn handle_callback_record(deps: &CallbackDeps, record: Record<'_>) -> RecordOutcome {
    let job: CallbackJob = match decode(record.body, "status callback") {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(error = %e, "unreadable status callback");
            return RecordOutcome::Park(ParkReason::Unreadable);
        }
    };
    match deps.poster.post_callback(&job.url, &job.id, &callback_body(&job.notification)).await {
        Ok(()) => RecordOutcome::Done,
        Err(SendError::Throttled { retry_after }) => {
            RecordOutcome::Retry(retry_after.unwrap_or_else(|| deps.retry.backoff(record.receive_count)).max(std::time::Duration::from_secs(1)))
        }
        Err(SendError::Transient(why)) if deps.retry.may_retry(record.receive_count) => {
            tracing::warn!(callback = %job.id, error = %why, "status callback failed; retrying");
            RecordOutcome::Retry(deps.retry.backoff(record.receive_count))
        }
        Err(e) => {
            // Refused for good (a bad URL, 4xx) or out of attempts: the status itself stays
            // queryable at GET /v1/events/{event_id}.
            tracing::error!(callback = %job.id, error = %e, "status callback given up");
            RecordOutcome::Done
        }
    }
}
