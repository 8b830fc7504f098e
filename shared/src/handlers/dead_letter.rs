//! The dead-letter handler: a send job that exhausted its receives marks its notification failed
//! (with the last provider error) and tries the fallback channel. A job that never reached the
//! provider (held back behind a failing message of its FIFO group) is sent again instead.

use std::sync::Arc;

use super::fallback::{FallbackDeps, request_fallback};
use super::router::outgoing_message;
use super::sqs_batch::{Record, RecordOutcome};
use crate::domain::notification::reason;
use crate::domain::{Guard, Status, Transition};
use crate::jobs::{SendJob, decode};
use crate::metrics;
use crate::ports::{Clock, NotificationStore, OutgoingMessage, QueueSender, TransitionOutcome};

pub struct DeadLetterDeps {
    pub notifications: Arc<dyn NotificationStore>,
    pub queue: Arc<dyn QueueSender>,
    pub fallback: FallbackDeps,
    pub clock: Arc<dyn Clock>,
    pub retry_after: std::time::Duration,
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
    let job: SendJob = match decode(record.body, "send job") {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(error = %e, queue = record.queue, "unreadable dead letter dropped");
            return RecordOutcome::Done;
        }
    };
    let current = match deps.notifications.get(&job.notification_id).await {
        Ok(Some(n)) => n,
        Ok(None) => {
            tracing::error!(notification_id = %job.notification_id, "dead letter for an unknown notification dropped");
            return RecordOutcome::Done;
        }
        Err(e) => {
            tracing::warn!(error = %e, "store unavailable");
            return RecordOutcome::Retry(deps.retry_after);
        }
    };
    if current.status.is_final() {
        return RecordOutcome::Done;
    }
    let now = deps.clock.now();
    if current.attempts == 0 {
        // Never attempted: it only waited behind a failing message of its group. Send it again.
        let (queue, message) = outgoing_message(job.clone(), None, now);
        let message = OutgoingMessage { dedup_id: Some(format!("{}:redrive:{}", job.notification_id, record.message_id)), ..message };
        return match deps.queue.send_batch(&queue, vec![message]).await {
            Ok(()) => {
                tracing::info!(notification_id = %job.notification_id, "untried job returned to its queue");
                RecordOutcome::Done
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not requeue");
                RecordOutcome::Retry(deps.retry_after)
            }
        };
    }
    let change = Transition::to(Status::Failed, now).reason(reason::RETRIES_EXHAUSTED).lease_until(None);
    let guard = Guard::StatusIn(vec![Status::Pending, Status::Sending, Status::Scheduled]);
    match deps.notifications.transition(&job.notification_id, &guard, &change).await {
        Ok(TransitionOutcome::Applied(n)) => {
            metrics::notification_failed(n.channel, n.priority.lane());
            tracing::warn!(notification_id = %n.notification_id, channel = n.channel.as_str(), attempts = n.attempts, "failed after retries");
            if let Err(e) = request_fallback(&deps.fallback, &n).await {
                tracing::warn!(error = %e, "fallback could not be requested");
                return RecordOutcome::Retry(deps.retry_after);
            }
            RecordOutcome::Done
        }
        Ok(_) => RecordOutcome::Done,
        Err(e) => {
            tracing::warn!(error = %e, "store unavailable");
            RecordOutcome::Retry(deps.retry_after)
        }
    }
}
