//! The dead-letter handler of the send queues (`send-<channel>-<lane>-dlq.fifo`).
//!
//! A send job reaches a dead-letter queue only through its queue's redrive policy, a safety net
//! set far above any retry budget (senders give up by their own count of provider attempts): it
//! was received that often because it waited behind failing jobs of its user, its claim kept
//! failing (store down), or its handler kept dying. So the handler here:
//!
//! - finishes what is owed when the notification is already final (a fallback not yet queued);
//! - otherwise puts the job back on its send queue, at most `max_redrives` times (the count
//!   travels in the job), where it goes behind the user's newer messages on that channel: the
//!   one case where per-user order can break, written down in the README;
//! - after that fails the notification as `retries_exhausted` (owing its fallback);
//! - keeps (parks) a job it cannot read or whose notification does not exist, never deletes it;
//! - backs off on the store and queue like every other handler, so nothing here is lost to a
//!   hiccup: the dead-letter queue itself has no redrive.

use std::sync::Arc;
use std::time::Duration;

use super::fallback::{self, FallbackDeps, request_fallback};
use super::router::outgoing_message;
use super::sqs_batch::{ParkReason, Record, RecordOutcome, RetryPolicy};
use crate::domain::notification::reason;
use crate::domain::{Guard, Notification};
use crate::jobs::{SendJob, decode};
use crate::metrics;
use crate::ports::{Clock, NotificationStore, OutgoingMessage, QueueSender, TransitionOutcome};

/// How often a send job may go back from its dead-letter queue to its queue.
pub const DEFAULT_MAX_REDRIVES: u32 = 3;

pub struct DeadLetterDeps {
    pub notifications: Arc<dyn NotificationStore>,
    pub queue: Arc<dyn QueueSender>,
    pub fallback: FallbackDeps,
    pub clock: Arc<dyn Clock>,
    /// Backoff after a store or queue failure.
    pub retry: RetryPolicy,
    pub max_redrives: u32,
}

pub async fn handle_dead_letter_record(deps: &DeadLetterDeps, record: Record<'_>) -> RecordOutcome {
    let queue = record.queue;
    let outcome = handle(deps, record).await;
    // Counted once the handler is done with it: a record it asks to retry comes back and is
    // counted then. (Receive counts are no help: whether a move to the dead-letter queue resets
    // them differs between SQS, emulators and the in-process queue.)
    if outcome == RecordOutcome::Done {
        metrics::dead_letter_arrival(queue);
    }
    outcome
}

async fn handle(deps: &DeadLetterDeps, record: Record<'_>) -> RecordOutcome {
    let backoff = || RecordOutcome::Retry(deps.retry.backoff(record.receive_count));
    let job: SendJob = match decode(record.body, "send job") {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(error = %e, queue = record.queue, "unreadable dead letter kept for an operator");
            return RecordOutcome::Park(ParkReason::Unreadable);
        }
    };
    let current = match deps.notifications.get(&job.notification_id).await {
        Ok(Some(n)) => n,
        Ok(None) => {
            tracing::error!(notification_id = %job.notification_id, "dead letter for an unknown notification kept for an operator");
            return RecordOutcome::Park(ParkReason::UnknownNotification);
        }
        Err(e) => {
            tracing::warn!(error = %e, "store unavailable");
            return backoff();
        }
    };
    if current.status.is_final() {
        return settle(deps, &current, record.receive_count).await;
    }
    let now = deps.clock.now();
    if job.redrives < deps.max_redrives {
        let redrives = job.redrives + 1;
        let notification_id = job.notification_id.clone();
        let (queue, message) = outgoing_message(SendJob { redrives, ..job }, None, now);
        // Deterministic, so a retry of this very step after a lost answer is dropped by the queue.
        let message = OutgoingMessage { dedup_id: Some(format!("{notification_id}:redrive:{redrives}")), ..message };
        return match deps.queue.send_batch(&queue, vec![message]).await {
            Ok(()) => {
                tracing::info!(%notification_id, redrives, "job returned to its queue");
                RecordOutcome::Done
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not requeue");
                backoff()
            }
        };
    }
    let change = fallback::fail(&deps.fallback.catalog, &current, now, reason::RETRIES_EXHAUSTED)
        .last_error(current.last_error.clone().unwrap_or_else(|| format!("dead-lettered {} times", job.redrives + 1)));
    match deps.notifications.transition(&job.notification_id, &Guard::Claimable { now }, &change).await {
        Ok(TransitionOutcome::Applied(n)) => {
            metrics::notification_failed(n.channel, n.priority.lane());
            tracing::warn!(notification_id = %n.notification_id, channel = n.channel.as_str(), attempts = n.attempts, "failed after its redrives");
            settle(deps, &n, record.receive_count).await
        }
        Ok(TransitionOutcome::Rejected(n)) if n.status.is_final() => settle(deps, &n, record.receive_count).await,
        // A sender holds a live claim: see how it ends.
        Ok(TransitionOutcome::Rejected(n)) => {
            let wait = n.lease_until.and_then(|u| Duration::try_from(u.duration_since(now)).ok()).unwrap_or_default();
            RecordOutcome::Retry(wait.max(Duration::from_secs(1)))
        }
        Ok(TransitionOutcome::NotFound) => RecordOutcome::Park(ParkReason::UnknownNotification),
        Err(e) => {
            tracing::warn!(error = %e, "store unavailable");
            backoff()
        }
    }
}

/// Done once the fallback `n` may owe is queued.
async fn settle(deps: &DeadLetterDeps, n: &Notification, receive_count: u32) -> RecordOutcome {
    match request_fallback(&deps.fallback, n).await {
        Ok(()) => RecordOutcome::Done,
        Err(e) => {
            tracing::warn!(error = %e, "fallback could not be requested yet");
            RecordOutcome::Retry(deps.retry.backoff(receive_count))
        }
    }
}
