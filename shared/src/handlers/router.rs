//! The router: for each accepted event, decide its channels, render each message, record one
//! notification per channel and queue the send jobs (or hold them until their time).

use jiff::Timestamp;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::fallback::{fallback_message, mark_fallback_queued, owed_fallback};
use super::sqs_batch::{ParkReason, Record, RecordOutcome, RetryPolicy};
use crate::catalog::{Catalog, RenderContext};
use crate::domain::ids::message_group_for;
use crate::domain::notification::reason;
use crate::domain::schedule::deliver_after;
use crate::domain::{Channel, Notification, NotificationId, Preferences, Status};
use crate::jobs::{DeferredJob, RouteJob, SendJob, decode, encode};
use crate::metrics;
use crate::ports::queue::{MAX_DELAY, MAX_MESSAGE_BYTES};
use crate::ports::{Clock, NotificationStore, OutgoingMessage, ProfileStore, QueueSender};
use crate::routing::{Decision, decide, requested_channels, wanted_locales};
use crate::topology::{DEFERRED_QUEUE, send_queue};

pub struct RouterDeps {
    pub catalog: Arc<Catalog>,
    pub profiles: Arc<dyn ProfileStore>,
    pub notifications: Arc<dyn NotificationStore>,
    pub queue: Arc<dyn QueueSender>,
    pub clock: Arc<dyn Clock>,
    /// Backoff after a transient error (store or queue down), by the record's receive count.
    pub retry: RetryPolicy,
}

/// What routing did with one channel, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub channel: Channel,
    pub notification_id: NotificationId,
    pub status: Status,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("transient: {0}")]
    Transient(String),
}

/// One record of `events-<lane>.fifo`, or of its dead-letter queue (`events-<lane>-dlq.fifo`),
/// which the router consumes too: an accepted event that got there (its queue's redrive, after
/// hours of store or queue trouble) is routed like any other, so that queue is never a dead end.
pub async fn handle_route_record(deps: &RouterDeps, record: Record<'_>) -> RecordOutcome {
    let job: RouteJob = match decode(record.body, "route job") {
        Ok(job) => job,
        Err(e) => {
            // Not from our ingest: keep it on the dead-letter queue, where an operator can see it.
            tracing::error!(error = %e, "unreadable route job");
            return RecordOutcome::Park(ParkReason::Unreadable);
        }
    };
    match route_event(deps, &job).await {
        Ok(_) => RecordOutcome::Done,
        Err(e) => {
            tracing::warn!(error = %e, event_id = %job.event.event_id, "routing failed, will retry");
            RecordOutcome::Retry(deps.retry.backoff(record.receive_count))
        }
    }
}

fn transient(e: impl std::fmt::Display) -> RouteError {
    RouteError::Transient(e.to_string())
}

pub async fn route_event(deps: &RouterDeps, job: &RouteJob) -> Result<Vec<Routed>, RouteError> {
    let event = &job.event;
    let Some(event_type) = deps.catalog.event_type(&event.event_type) else {
        // The catalog lost a type that ingest accepted (a deploy removed it): nothing can render it.
        tracing::error!(event_id = %event.event_id, event_type = %event.event_type, "event type no longer in the catalog");
        return Ok(Vec::new());
    };
    let (profile, preferences) = deps.profiles.get_recipient(&event.user_id).await.map_err(transient)?;
    let (profile, preferences): (_, Preferences) = (profile.unwrap_or_default(), preferences.unwrap_or_default());
    let now = deps.clock.now();

    let channels: Vec<Channel> = match &job.fallback {
        Some(f) => vec![f.channel],
        None => requested_channels(event, event_type),
    };
    let deliver_at = deliver_after(now, event.send_after, job.priority, preferences.quiet_hours.as_ref(), profile.timezone.as_deref());
    let locales = wanted_locales(event, &profile);
    let user_view = json!({ "id": event.user_id, "locale": profile.locale, "timezone": profile.timezone });
    let event_view = json!({ "event_id": event.event_id, "event_type": event.event_type, "occurred_at": event.occurred_at });

    let mut routed = Vec::new();
    let mut outgoing: BTreeMap<String, Vec<OutgoingMessage>> = BTreeMap::new();
    // Notifications that failed here (template errors) and owe their fallback.
    let mut owed = Vec::new();
    for channel in channels {
        let notification_id = NotificationId::derive(&event.event_id, channel);
        let mut notification = Notification {
            notification_id: notification_id.clone(),
            event_id: event.event_id.clone(),
            event_type: event.event_type.clone(),
            user_id: event.user_id.clone(),
            channel,
            priority: job.priority,
            status: Status::Pending,
            reason: None,
            attempts: 0,
            last_error: None,
            fallback_for: job.fallback.as_ref().map(|f| f.replaces),
            fallback: None,
            deliver_after: None,
            lease_until: None,
            provider_message_id: None,
            title: None,
            created_at: now,
            updated_at: now,
            sent_at: None,
        };
        let mut send_job = None;
        match decide(channel, event_type.category.as_deref(), &profile, &preferences) {
            Decision::Skip(why) => {
                notification.status = Status::Skipped;
                notification.reason = Some(why.to_owned());
            }
            Decision::Deliver(address) => {
                let locale = deps.catalog.templates().resolve_locale(&event.event_type, channel, &locales, &event_type.fallback_locale);
                let rendered = locale.ok_or_else(|| format!("no {channel} templates for {}", event.event_type)).and_then(|locale| {
                    let ctx = RenderContext { payload: &event.payload, user: user_view.clone(), event: event_view.clone() };
                    deps.catalog.templates().render(&event.event_type, &locale, channel, &ctx).map_err(|e| e.to_string())
                });
                match rendered {
                    Err(message) => {
                        notification.status = Status::Failed;
                        notification.reason = Some(reason::TEMPLATE_ERROR.to_owned());
                        notification.last_error = Some(message);
                        notification.fallback = owed_fallback(&deps.catalog, &event.event_type, channel);
                    }
                    Ok(message) => {
                        notification.title = message.parts.get("subject").or_else(|| message.parts.get("title")).cloned();
                        if let Some(at) = deliver_at {
                            notification.status = Status::Scheduled;
                            notification.deliver_after = Some(at);
                        }
                        send_job = Some(SendJob {
                            notification_id: notification_id.clone(),
                            event_id: event.event_id.clone(),
                            event_type: event.event_type.clone(),
                            user_id: event.user_id.clone(),
                            channel,
                            priority: job.priority,
                            address,
                            message,
                            accepted_at: job.accepted_at,
                            redrives: 0,
                        });
                    }
                }
            }
        }
        if let Some(job) = &send_job
            && encode(job).len() > MAX_MESSAGE_BYTES - 1024 {
                notification.status = Status::Failed;
                notification.reason = Some(reason::TEMPLATE_ERROR.to_owned());
                notification.last_error = Some("rendered message is larger than a queue message can carry".into());
                notification.fallback = owed_fallback(&deps.catalog, &event.event_type, channel);
                send_job = None;
            }

        let created = deps.notifications.create(&notification).await.map_err(transient)?;
        let current = if created {
            // Counted once, when created: a redelivered route job finds it and counts nothing.
            let lane = job.priority.lane();
            match notification.status {
                Status::Skipped => metrics::notification_skipped(channel, lane),
                Status::Failed => metrics::notification_failed(channel, lane),
                _ => metrics::notification_routed(channel, lane),
            }
            notification
        } else {
            // Routed before (a redelivered job): queue again only what has not run yet; the
            // queue's dedup id and the sender's claim make a second copy harmless.
            deps.notifications.get(&notification_id).await.map_err(transient)?.unwrap_or(notification)
        };
        if matches!(current.status, Status::Pending | Status::Scheduled)
            && let Some(job) = send_job {
                let (queue, message) = outgoing_message(job, current.deliver_after, now);
                outgoing.entry(queue).or_default().push(message);
            }
        if let Some(next) = current.owes_fallback() {
            let (queue, message) = fallback_message(event, job.priority, job.accepted_at, &current, next);
            outgoing.entry(queue).or_default().push(message);
            owed.push((current.clone(), next));
        }
        routed.push(Routed { channel, notification_id, status: current.status });
    }

    for (queue, messages) in outgoing {
        deps.queue.send_batch(&queue, messages).await.map_err(transient)?;
    }
    for (failed, next) in owed {
        mark_fallback_queued(deps.notifications.as_ref(), &failed, next, now).await.map_err(transient)?;
    }
    tracing::info!(
        event_id = %event.event_id,
        routed = ?routed.iter().map(|r| (r.channel.as_str(), r.status.as_str())).collect::<Vec<_>>(),
        "event routed"
    );
    Ok(routed)
}

/// A send job goes straight to its channel's lane, or to the deferred queue when it must wait.
pub fn outgoing_message(job: SendJob, deliver_after: Option<Timestamp>, now: Timestamp) -> (String, OutgoingMessage) {
    let queue = send_queue(job.channel, job.priority.lane());
    match deliver_after.filter(|at| *at > now) {
        Some(at) => {
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default().min(MAX_DELAY);
            let body = encode(&DeferredJob { queue, deliver_after: at, job });
            (DEFERRED_QUEUE.to_owned(), OutgoingMessage::delayed(body, wait))
        }
        None => {
            let group = message_group_for(&job.user_id);
            let dedup = job.notification_id.as_str().to_owned();
            (queue, OutgoingMessage::fifo(encode(&job), group, dedup))
        }
    }
}
