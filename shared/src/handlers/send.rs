//! A channel's sender: claim the notification, hand the message to the provider, record the
//! outcome. Transient failures are retried with backoff (then the queue's redrive policy moves the
//! job to the dead-letter queue); permanent ones fail the notification and try the fallback channel.

use std::sync::Arc;
use std::time::Duration;

use super::fallback::{FallbackDeps, request_fallback};
use super::sqs_batch::{Record, RecordOutcome, RetryPolicy};
use crate::domain::notification::reason;
use crate::domain::{Guard, Status, Transition};
use crate::jobs::{SendJob, decode};
use crate::metrics;
use crate::ports::{ChannelSender, Clock, Delivery, NotificationStore, SendError, TransitionOutcome};

pub struct SendDeps {
    pub notifications: Arc<dyn NotificationStore>,
    pub sender: Arc<dyn ChannelSender>,
    pub fallback: FallbackDeps,
    pub clock: Arc<dyn Clock>,
    pub retry: RetryPolicy,
    /// How long a claim (`sending`) holds before another sender may take over: longer than one
    /// provider call can take, shorter than the queue's visibility timeout.
    pub lease: Duration,
}

pub async fn handle_send_record(deps: &SendDeps, record: Record<'_>) -> RecordOutcome {
    match decode::<SendJob>(record.body, "send job") {
        Ok(job) => deliver(deps, &job).await,
        Err(e) => {
            tracing::error!(error = %e, "unreadable send job");
            RecordOutcome::Retry(deps.retry.backoff(record.receive_count))
        }
    }
}

pub async fn deliver(deps: &SendDeps, job: &SendJob) -> RecordOutcome {
    let now = deps.clock.now();
    let lease_until = now.checked_add(deps.lease).unwrap_or(now);
    let claim = Transition::to(Status::Sending, now).count_attempt().lease_until(Some(lease_until));
    let claimed = match deps.notifications.transition(&job.notification_id, &Guard::Claimable { now }, &claim).await {
        Ok(TransitionOutcome::Applied(n)) => n,
        Ok(TransitionOutcome::Rejected(current)) => {
            if current.status.is_final() {
                tracing::info!(notification_id = %job.notification_id, status = %current.status, "already handled; duplicate job dropped");
                return RecordOutcome::Done;
            }
            // Another sender holds a live claim: look again once it has had time to finish.
            let wait = current.lease_until.and_then(|u| Duration::try_from(u.duration_since(now)).ok()).unwrap_or(deps.lease);
            return RecordOutcome::Retry(wait.max(Duration::from_secs(1)));
        }
        Ok(TransitionOutcome::NotFound) => {
            tracing::error!(notification_id = %job.notification_id, "send job for an unknown notification dropped");
            return RecordOutcome::Done;
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not claim the notification");
            return RecordOutcome::Retry(deps.retry.backoff(1));
        }
    };

    let delivery = Delivery {
        notification_id: &job.notification_id,
        event_id: &job.event_id,
        event_type: &job.event_type,
        user_id: &job.user_id,
        priority: job.priority,
        address: &job.address,
        message: &job.message,
    };
    let started = std::time::Instant::now();
    let result = deps.sender.send(delivery).await;
    let provider_time = started.elapsed();
    metrics::provider_latency(job.channel, provider_time);
    let provider_ms = provider_time.as_millis() as u64;
    let done = deps.clock.now();
    let sending = Guard::StatusIn(vec![Status::Sending]);
    let (change, outcome) = match &result {
        Ok(provider_id) => (
            Transition::to(Status::Sent, done).sent_at(done).provider_message_id(provider_id.clone()).lease_until(None),
            RecordOutcome::Done,
        ),
        Err(SendError::Unreachable(why)) => (Transition::to(Status::Skipped, done).reason(why.clone()).lease_until(None), RecordOutcome::Done),
        Err(SendError::Permanent(why)) => (
            Transition::to(Status::Failed, done).reason(reason::PROVIDER_REJECTED).last_error(why.clone()).lease_until(None),
            RecordOutcome::Done,
        ),
        Err(SendError::Transient(why)) => (
            Transition::to(Status::Pending, done).last_error(why.clone()).lease_until(None),
            RecordOutcome::Retry(deps.retry.backoff(claimed.attempts)),
        ),
    };
    // From ingest's acceptance; another function's clock may run a little ahead of this one's.
    let latency = Duration::try_from(done.duration_since(job.accepted_at)).unwrap_or_default();
    let latency_ms = latency.as_millis();
    match &result {
        Ok(_) => tracing::info!(notification_id = %job.notification_id, channel = job.channel.as_str(), provider_ms, latency_ms, "sent"),
        Err(e) => tracing::warn!(notification_id = %job.notification_id, channel = job.channel.as_str(), attempt = claimed.attempts, error = %e, "not sent"),
    }
    match deps.notifications.transition(&job.notification_id, &sending, &change).await {
        Ok(TransitionOutcome::Applied(n)) => {
            // Counted when the outcome is recorded, so each notification counts once in its
            // final status however often its job was delivered.
            let (channel, lane) = (job.channel, job.priority.lane());
            match n.status {
                Status::Sent => {
                    metrics::notification_sent(channel, lane);
                    metrics::ingest_to_sent_latency(channel, lane, latency);
                }
                Status::Failed => metrics::notification_failed(channel, lane),
                Status::Skipped => metrics::notification_skipped(channel, lane),
                _ => {} // transient: back to pending, counted as a retry by the batch
            }
            if n.status == Status::Failed
                && let Err(e) = request_fallback(&deps.fallback, &n).await {
                    tracing::warn!(error = %e, "fallback could not be requested");
                }
            outcome
        }
        Ok(other) => {
            tracing::warn!(notification_id = %job.notification_id, outcome = ?std::mem::discriminant(&other), "claim lost before the outcome was recorded");
            RecordOutcome::Done
        }
        Err(e) => {
            // The provider has the message; the claim lapses and a retry may send it again:
            // at-least-once is the price of a store outage here.
            tracing::error!(error = %e, notification_id = %job.notification_id, "could not record the send outcome");
            RecordOutcome::Retry(deps.retry.backoff(claimed.attempts))
        }
    }
}
