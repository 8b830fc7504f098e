//! The scheduler: holds a send job on the `deferred` queue (SQS delays are 15 minutes at most, so
//! longer waits hop several times) and releases it to its channel's queue when its time comes.
//! The scheduler also consumes `deferred-dlq` with this same handler: a job that got there (its
//! queue's redrive, after hours of store or queue trouble) is released or re-deferred like any
//! other, so that queue is never a dead end.

use std::sync::Arc;
use std::time::Duration;

use super::router::outgoing_message;
use super::sqs_batch::{ParkReason, Record, RecordOutcome, RetryPolicy};
use crate::domain::{Guard, Status, Transition};
use crate::jobs::{DeferredJob, decode, encode};
use crate::ports::queue::MAX_DELAY;
use crate::ports::{Clock, NotificationStore, OutgoingMessage, QueueSender, TransitionOutcome};
use crate::topology::DEFERRED_QUEUE;

pub struct DeferredDeps {
    pub notifications: Arc<dyn NotificationStore>,
    pub queue: Arc<dyn QueueSender>,
    pub clock: Arc<dyn Clock>,
    /// Backoff after a store or queue failure.
    pub retry: RetryPolicy,
}

pub async fn handle_deferred_record(deps: &DeferredDeps, record: Record<'_>) -> RecordOutcome {
    let retry = || RecordOutcome::Retry(deps.retry.backoff(record.receive_count));
    let deferred: DeferredJob = match decode(record.body, "deferred job") {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(error = %e, "unreadable deferred job");
            return RecordOutcome::Park(ParkReason::Unreadable);
        }
    };
    let now = deps.clock.now();
    if deferred.deliver_after > now {
        let wait = Duration::try_from(deferred.deliver_after.duration_since(now)).unwrap_or_default().min(MAX_DELAY);
        let message = OutgoingMessage::delayed(encode(&deferred), wait);
        return match deps.queue.send_batch(DEFERRED_QUEUE, vec![message]).await {
            Ok(()) => RecordOutcome::Done,
            Err(e) => {
                tracing::warn!(error = %e, "could not re-defer");
                retry()
            }
        };
    }
    let id = deferred.job.notification_id.clone();
    let id = &id;
    let release = Transition::to(Status::Pending, now);
    match deps.notifications.transition(id, &Guard::StatusIn(vec![Status::Scheduled]), &release).await {
        Ok(TransitionOutcome::Applied(_)) => {}
        Ok(TransitionOutcome::Rejected(n)) if n.status == Status::Pending => {} // released before; queue again
        Ok(TransitionOutcome::Rejected(_)) => return RecordOutcome::Done, // sending or final already
        Ok(TransitionOutcome::NotFound) => return RecordOutcome::Park(ParkReason::UnknownNotification),
        Err(e) => {
            tracing::warn!(error = %e, "store unavailable");
            return retry();
        }
    }
    let (queue, message) = outgoing_message(deferred.job, None, now);
    debug_assert_eq!(queue, deferred.queue);
    match deps.queue.send_batch(&queue, vec![message]).await {
        Ok(()) => {
            tracing::info!(notification_id = %id, "scheduled notification released");
            RecordOutcome::Done
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not release");
            retry()
        }
    }
}
