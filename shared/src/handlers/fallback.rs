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
use super::callbacks::StatusCallbacks;

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

/// What a handler owes a notification it finds (or makes) final before it is done with its job:
/// the producer's status callback, then the fallback it may owe. Either may fail (queue or store
/// down): the job is then retried and this runs again — a repeated callback is dropped by the
/// queue or the receiver, a fallback already queued is not queued again.
pub async fn settle_final(callbacks: &StatusCallbacks, deps: &FallbackDeps, n: &Notification) -> Result<(), FallbackError> {
    callbacks.emit(n).await?;
    request_fallback(deps, n).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::notification::reason;
    use crate::domain::EventId;
    use crate::handlers::test_support::*;

    const EVENTS_FAST: &str = "events-fast.fifo";

    /// A push notification of `order.completed` failed for good, owing its SMS fallback.
    async fn failed_push(h: &Harness) -> Notification {
        let job = h.seed("order.completed", "evt-order-A-17", Channel::Push).await;
        let n = h.create(&job).await;
        h.force(&job.notification_id, fail(&h.catalog, &n, t0(), reason::PROVIDER_REJECTED)).await
    }

    fn owed() -> Option<FallbackProgress> {
        Some(FallbackProgress { channel: Channel::Sms, queued: false })
    }

    #[tokio::test(start_paused = true)]
    async fn failing_records_the_fallback_the_event_type_names() {
        let h = Harness::new().await;
        let n = failed_push(&h).await;
        assert_eq!((n.status, n.fallback, n.owes_fallback()), (Status::Failed, owed(), Some(Channel::Sms)));
        let email = h.seed("order.completed", "evt-2", Channel::Email).await;
        assert_eq!(owed_fallback(&h.catalog, "order.completed", email.channel), None);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_owed_does_nothing() {
        let h = Harness::new().await;
        let job = h.seed("order.completed", "evt-order-A-17", Channel::Email).await;
        let n = h.create(&job).await;
        let failed = h.force(&job.notification_id, fail(&h.catalog, &n, t0(), reason::PROVIDER_REJECTED)).await;
        assert_eq!(failed.fallback, None, "email of order.completed has no fallback");

        request_fallback(&h.fallback(), &failed).await.unwrap();

        assert_eq!((h.queue.send_calls(), h.store.calls("get_event"), h.store.calls("transition")), (0, 0, 0));
        assert_eq!(h.notification(&job.notification_id).await, failed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fallback_already_queued_is_not_requested_again() {
        let h = Harness::new().await;
        let n = failed_push(&h).await;
        request_fallback(&h.fallback(), &n).await.unwrap();
        let queued = h.notification(&n.notification_id).await;

        request_fallback(&h.fallback(), &queued).await.unwrap();

        assert_eq!(h.queue.send_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_event_record_is_an_error_and_nothing_is_marked() {
        let h = Harness::new().await;
        let mut n = failed_push(&h).await;
        n.event_id = EventId::parse("evt-gone").unwrap();
        assert!(h.store.inner.get_event(&n.event_id).await.unwrap().is_none());

        let err = request_fallback(&h.fallback(), &n).await.unwrap_err();

        assert!(matches!(&err, FallbackError::EventMissing(id) if id == "evt-gone"), "{err}");
        assert_eq!(h.queue.send_calls(), 0);
        assert_eq!(h.notification(&n.notification_id).await.fallback, owed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_outage_reading_the_event_is_an_error() {
        let h = Harness::new().await;
        let n = failed_push(&h).await;
        h.store.fail_next("get_event", 1);

        assert!(matches!(request_fallback(&h.fallback(), &n).await, Err(FallbackError::Store(_))));
        assert_eq!(h.queue.send_calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_failure_is_an_error_and_nothing_is_marked() {
        let h = Harness::new().await;
        let n = failed_push(&h).await;
        h.queue.fail_next_sends(1);

        assert!(matches!(request_fallback(&h.fallback(), &n).await, Err(FallbackError::Queue(_))));

        assert_eq!(h.depth(EVENTS_FAST).await, 0);
        assert_eq!(h.notification(&n.notification_id).await.fallback, owed());
        assert_eq!(h.store.calls("transition"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn success_queues_the_route_job_and_marks_it_queued() {
        let h = Harness::new().await;
        let n = failed_push(&h).await;
        assert_eq!(h.depth(EVENTS_FAST).await, 0);

        request_fallback(&h.fallback(), &n).await.unwrap();

        let sent = h.queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1.dedup_id, Some(format!("{}:fallback", NotificationId::derive(&n.event_id, Channel::Sms))));
        assert_eq!(sent[0].1.group_id.as_deref(), Some("default#u-42"));
        let jobs: Vec<RouteJob> = h.take(EVENTS_FAST).await;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].fallback, Some(FallbackRequest { channel: Channel::Sms, replaces: Channel::Push }));
        assert_eq!((jobs[0].priority, jobs[0].accepted_at), (Priority::High, t0()));
        assert_eq!(jobs[0].event.event_id, n.event_id);
        let marked = h.notification(&n.notification_id).await;
        assert_eq!(marked.fallback, Some(FallbackProgress { channel: Channel::Sms, queued: true }));
        assert_eq!((marked.status, marked.reason.as_deref()), (Status::Failed, Some(reason::PROVIDER_REJECTED)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_repeated_after_a_lost_answer_queues_one_route_job() {
        let h = Harness::new().await;
        let n = failed_push(&h).await;
        h.queue.apply_then_fail_next_sends(1);
        assert!(request_fallback(&h.fallback(), &n).await.is_err());
        assert_eq!(h.notification(&n.notification_id).await.fallback, owed());

        request_fallback(&h.fallback(), &n).await.unwrap();

        assert_eq!(h.depth(EVENTS_FAST).await, 1, "the queue drops the repeat");
        assert_eq!(h.notification(&n.notification_id).await.fallback.map(|f| f.queued), Some(true));
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_outage_marking_it_is_an_error_and_a_repeat_finishes_it() {
        let h = Harness::new().await;
        let n = failed_push(&h).await;
        h.store.fail_next("transition", 1);
        assert!(matches!(request_fallback(&h.fallback(), &n).await, Err(FallbackError::Store(_))));
        assert_eq!(h.notification(&n.notification_id).await.fallback, owed());

        request_fallback(&h.fallback(), &n).await.unwrap();

        assert_eq!(h.depth(EVENTS_FAST).await, 1);
        assert_eq!(h.notification(&n.notification_id).await.fallback.map(|f| f.queued), Some(true));
    }
}
