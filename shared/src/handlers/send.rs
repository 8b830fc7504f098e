//! A channel's sender: claim the notification, hand the message to the provider, record the
//! outcome.
//!
//! - Transient provider errors are retried with backoff (the message's visibility) until the
//!   channel's [`RetryPolicy`] runs out of attempts; then the notification fails as
//!   `retries_exhausted`. A provider's "slow down" ([`SendError::Throttled`]) waits as long as the
//!   provider asks and does not count as an attempt.
//! - Permanent errors fail the notification at once (`provider_rejected`).
//! - A failure owes the event type's fallback channel; the fallback is requested after the
//!   failure is recorded, and requested again by whoever meets the notification next if that
//!   request did not get through (see [`super::fallback`]).
//! - Store and queue hiccups back off on `hiccup_retry`; the outcome of a provider call that
//!   succeeded is written with a few quick in-process retries, since a retry of the whole job
//!   after the claim's lease ran out would send the message again.

use std::sync::Arc;
use std::time::Duration;

use super::fallback::{self, FallbackDeps, request_fallback};
use super::sqs_batch::{ParkReason, Record, RecordOutcome, RetryPolicy};
use crate::domain::notification::reason;
use crate::domain::{Guard, Notification, NotificationId, Status, Transition};
use crate::jobs::{SendJob, decode};
use crate::metrics;
use crate::ports::queue::MAX_VISIBILITY;
use crate::ports::{ChannelSender, Clock, Delivery, NotificationStore, SendError, StoreError, TransitionOutcome};

pub struct SendDeps {
    pub notifications: Arc<dyn NotificationStore>,
    pub sender: Arc<dyn ChannelSender>,
    pub fallback: FallbackDeps,
    pub clock: Arc<dyn Clock>,
    /// The channel's provider budget: backoff between attempts and how many there are.
    pub retry: RetryPolicy,
    /// Backoff after a store or queue failure (nothing was sent; no attempt is spent).
    pub hiccup_retry: RetryPolicy,
    /// How long a claim (`sending`) holds before another sender may take over: longer than one
    /// provider call can take, shorter than the queue's visibility timeout.
    pub lease: Duration,
}

/// Tries to write a provider call's outcome this many times before leaving it to a later
/// delivery of the job.
const OUTCOME_WRITE_TRIES: u32 = 5;
/// The first pause between those tries; it doubles.
const OUTCOME_WRITE_PAUSE: Duration = Duration::from_millis(20);

pub async fn handle_send_record(deps: &SendDeps, record: Record<'_>) -> RecordOutcome {
    match decode::<SendJob>(record.body, "send job") {
        Ok(job) => deliver(deps, &job, record.receive_count).await,
        Err(e) => {
            tracing::error!(error = %e, "unreadable send job");
            RecordOutcome::Park(ParkReason::Unreadable)
        }
    }
}

fn until(from: jiff::Timestamp, to: Option<jiff::Timestamp>) -> Option<Duration> {
    to.and_then(|t| Duration::try_from(t.duration_since(from)).ok())
}

/// Delivers one send job; `receive_count` is how often its message has been received.
pub async fn deliver(deps: &SendDeps, job: &SendJob, receive_count: u32) -> RecordOutcome {
    let now = deps.clock.now();
    let lease_until = now.checked_add(deps.lease).unwrap_or(now);
    let claim = Transition::to(Status::Sending, now).count_attempt().lease_until(Some(lease_until));
    let claimed = match deps.notifications.transition(&job.notification_id, &Guard::Claimable { now }, &claim).await {
        Ok(TransitionOutcome::Applied(n)) => n,
        Ok(TransitionOutcome::Rejected(current)) => {
            if current.status.is_final() {
                tracing::info!(notification_id = %job.notification_id, status = %current.status, "already handled; duplicate job dropped");
                return settle_fallback(deps, &current, receive_count).await;
            }
            // Another sender holds a live claim: look again once it has had time to finish.
            let wait = until(now, current.lease_until).unwrap_or(deps.lease);
            return RecordOutcome::Retry(wait.max(Duration::from_secs(1)));
        }
        Ok(TransitionOutcome::NotFound) => {
            tracing::error!(notification_id = %job.notification_id, "send job for an unknown notification");
            return RecordOutcome::Park(ParkReason::UnknownNotification);
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not claim the notification");
            return RecordOutcome::Retry(deps.hiccup_retry.backoff(receive_count));
        }
    };
    // Claims that never recorded an outcome (a sender that died mid-call) count too: once they
    // used up the budget, stop calling the provider.
    if claimed.attempts > deps.retry.max_attempts {
        let change = fallback::fail(&deps.fallback.catalog, &claimed, now, reason::RETRIES_EXHAUSTED);
        return record_outcome(deps, job, &claimed, change, RecordOutcome::Done, Duration::ZERO, receive_count).await;
    }

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
    let catalog = &deps.fallback.catalog;
    let (change, outcome) = match &result {
        Ok(provider_id) => (
            Transition::to(Status::Sent, done).sent_at(done).provider_message_id(provider_id.clone()).lease_until(None),
            RecordOutcome::Done,
        ),
        Err(SendError::Unreachable(why)) => (Transition::to(Status::Skipped, done).reason(why.clone()).lease_until(None), RecordOutcome::Done),
        Err(SendError::Permanent(why)) => {
            (fallback::fail(catalog, &claimed, done, reason::PROVIDER_REJECTED).last_error(why.clone()), RecordOutcome::Done)
        }
        Err(SendError::Transient(why)) if deps.retry.may_retry(claimed.attempts) => (
            Transition::to(Status::Pending, done).last_error(why.clone()).lease_until(None),
            RecordOutcome::Retry(deps.retry.backoff(claimed.attempts)),
        ),
        Err(SendError::Transient(why)) => {
            (fallback::fail(catalog, &claimed, done, reason::RETRIES_EXHAUSTED).last_error(why.clone()), RecordOutcome::Done)
        }
        Err(SendError::Throttled { retry_after }) => {
            // "Slow down" is not a failed attempt: take the claim's count back and wait as asked.
            let wait = retry_after.unwrap_or_else(|| deps.retry.backoff(claimed.attempts.max(1)));
            (
                Transition::to(Status::Pending, done).refund_attempt().last_error("throttled by the provider").lease_until(None),
                RecordOutcome::Retry(wait.clamp(Duration::from_secs(1), MAX_VISIBILITY)),
            )
        }
    };
    // From ingest's acceptance; another function's clock may run a little ahead of this one's.
    let latency = Duration::try_from(done.duration_since(job.accepted_at)).unwrap_or_default();
    match &result {
        Ok(_) => tracing::info!(notification_id = %job.notification_id, channel = job.channel.as_str(), provider_ms, latency_ms = latency.as_millis() as u64, "sent"),
        Err(e) => tracing::warn!(notification_id = %job.notification_id, channel = job.channel.as_str(), attempt = claimed.attempts, error = %e, "not sent"),
    }
    record_outcome(deps, job, &claimed, change, outcome, latency, receive_count).await
}

/// Writes the outcome under the claim (`sending`), counts it, and requests an owed fallback.
async fn record_outcome(
    deps: &SendDeps,
    job: &SendJob,
    claimed: &Notification,
    change: Transition,
    outcome: RecordOutcome,
    latency: Duration,
    receive_count: u32,
) -> RecordOutcome {
    let written = match write_outcome(deps.notifications.as_ref(), &job.notification_id, &change).await {
        Ok(written) => written,
        Err(e) => {
            // The provider may have the message; once the claim lapses a later delivery of this
            // job sends it again. The one window for a duplicate (README, "Guarantees").
            tracing::error!(error = %e, notification_id = %job.notification_id, "could not record the send outcome");
            return RecordOutcome::Retry(deps.hiccup_retry.backoff(receive_count).max(deps.lease));
        }
    };
    match written {
        TransitionOutcome::Applied(n) => {
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
                _ => {} // back to pending: counted as a retry by the batch
            }
            match settle_fallback(deps, &n, receive_count).await {
                RecordOutcome::Done => outcome,
                retry => retry,
            }
        }
        // An earlier try of this write got through before its answer was lost.
        TransitionOutcome::Rejected(n) if n.status == change.to && n.status.is_final() => settle_fallback(deps, &n, receive_count).await,
        TransitionOutcome::Rejected(n) if n.status == change.to => outcome,
        TransitionOutcome::Rejected(_) | TransitionOutcome::NotFound => {
            tracing::warn!(notification_id = %claimed.notification_id, "claim lost before the outcome was recorded");
            RecordOutcome::Done
        }
    }
}

/// The transition under the `sending` guard, tried a few times in process.
async fn write_outcome(store: &dyn NotificationStore, id: &NotificationId, change: &Transition) -> Result<TransitionOutcome, StoreError> {
    let sending = Guard::StatusIn(vec![Status::Sending]);
    let mut pause = OUTCOME_WRITE_PAUSE;
    let mut tries = 1;
    loop {
        match store.transition(id, &sending, change).await {
            Err(e) if tries < OUTCOME_WRITE_TRIES => {
                tracing::warn!(error = %e, tries, "outcome write failed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// Done with a notification in a final status, once the fallback it may owe is on its queue.
async fn settle_fallback(deps: &SendDeps, n: &Notification, receive_count: u32) -> RecordOutcome {
    match request_fallback(&deps.fallback, n).await {
        Ok(()) => RecordOutcome::Done,
        Err(e) => {
            tracing::warn!(error = %e, notification_id = %n.notification_id, "fallback not requested yet; the job comes back for it");
            RecordOutcome::Retry(deps.hiccup_retry.backoff(receive_count))
        }
    }
}
