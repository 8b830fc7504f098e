//! A channel's sender: claim the notification, hand the message to the provider, record the
//! outcome.
//!
//! - The claim is one conditional write that also creates the notification from the record its
//!   job carries when nobody wrote it yet (the router does not write what it queues at once):
//!   the notification's first write, counted as routed then. A claim that meets a final
//!   notification (sent, failed, skipped, or canceled before it was claimed — a cancellation
//!   writes a `canceled` record where none exists) drops the job.
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

use super::fallback::{self, FallbackDeps};
use super::sqs_batch::{ParkReason, Record, RecordOutcome, RetryPolicy};
use crate::domain::notification::reason;
use crate::domain::{Guard, Notification, NotificationId, Status, Transition};
use crate::jobs::{SendJob, decode};
use crate::metrics;
use crate::ports::queue::MAX_VISIBILITY;
use crate::ports::suppression::suppressible_address;
use crate::ports::{ChannelSender, Clock, Delivery, NotificationStore, Suppression, SuppressionReason, SuppressionStore, SendError, StoreError, TransitionOutcome, UpsertOutcome};

pub struct SendDeps {
    pub notifications: Arc<dyn NotificationStore>,
    pub sender: Arc<dyn ChannelSender>,
    /// Where final statuses are announced to the producer.
    pub callbacks: super::callbacks::StatusCallbacks,
    /// Where an unreachable recipient's address is suppressed.
    pub suppressions: Arc<dyn SuppressionStore>,
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
    let claimed = match write_or_create(deps.notifications.as_ref(), job, &Guard::Claimable { now }, &claim).await {
        Ok(Written::Created(n)) => {
            // The notification's first write: counted routed here, once (the router wrote nothing).
            metrics::notification_routed(job.channel, job.priority.lane());
            n
        }
        Ok(Written::Applied(n)) => n,
        Ok(Written::Rejected(current)) => {
            if current.status.is_final() {
                tracing::info!(notification_id = %job.notification_id, status = %current.status, "already handled; duplicate job dropped");
                return settle_fallback(deps, &current, receive_count).await;
            }
            // Another sender holds a live claim: look again once it has had time to finish.
            let wait = until(now, current.lease_until).unwrap_or(deps.lease);
            return RecordOutcome::Retry(wait.max(Duration::from_secs(1)));
        }
        Ok(Written::Unknown) => {
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
        Ok(receipt) => (
            Transition::to(Status::Sent, done)
                .sent_at(done)
                .provider_message_id(receipt.message_id.clone())
                .provider(receipt.provider.clone())
                .lease_until(None),
            RecordOutcome::Done,
        ),
        Err(SendError::Unreachable(why)) => {
            // A provider's "cannot reach" suppresses the address, so the next event skips it.
            let why = match suppress_unreachable(deps, job, why).await {
                Ok(why) => why,
                Err(retry) => return record_outcome(deps, job, &claimed, Transition::to(Status::Pending, done).refund_attempt().lease_until(None), retry, Duration::ZERO, receive_count).await,
            };
            (Transition::to(Status::Skipped, done).reason(why).lease_until(None), RecordOutcome::Done)
        }
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

/// What a guarded write of a job's notification found.
pub(super) enum Written {
    /// The notification did not exist: the write created it, from the job's record.
    Created(Notification),
    Applied(Notification),
    /// The guard did not hold: the notification as it is.
    Rejected(Notification),
    /// A job without its record (queued before routers left the write to the sender) whose
    /// notification does not exist.
    Unknown,
}

/// `change` under `guard` in one conditional write: to the job's notification, or, for a job
/// carrying its record that nobody wrote yet, creating it with the change applied (the sender's
/// claim; the dead-letter handler's failure). A job without its record only transitions.
pub(super) async fn write_or_create(store: &dyn NotificationStore, job: &SendJob, guard: &Guard, change: &Transition) -> Result<Written, StoreError> {
    Ok(match job.record() {
        Some(record) => match store.upsert(&record, guard, change).await? {
            UpsertOutcome::Created(n) => Written::Created(n),
            UpsertOutcome::Applied(n) => Written::Applied(n),
            UpsertOutcome::Rejected(n) => Written::Rejected(n),
        },
        None => match store.transition(&job.notification_id, guard, change).await? {
            TransitionOutcome::Applied(n) => Written::Applied(n),
            TransitionOutcome::Rejected(n) => Written::Rejected(n),
            TransitionOutcome::NotFound => Written::Unknown,
        },
    })
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
    let guard = match claimed.lease_until {
        Some(lease) => Guard::ClaimedUntil(lease),
        None => Guard::StatusIn(vec![Status::Sending]),
    };
    let written = match write_outcome(deps.notifications.as_ref(), &job.notification_id, &guard, &change).await {
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
            count_outcome(job, &n, latency);
            match settle_fallback(deps, &n, receive_count).await {
                RecordOutcome::Done => outcome,
                retry => retry,
            }
        }
        // An earlier try of this very write got through before its answer was lost: the stored
        // notification carries this write's timestamp.
        TransitionOutcome::Rejected(n) if n.status == change.to && n.updated_at == change.at => {
            count_outcome(job, &n, latency);
            if n.status.is_final() { settle_fallback(deps, &n, receive_count).await } else { outcome }
        }
        TransitionOutcome::Rejected(n) if n.status.is_final() => settle_fallback(deps, &n, receive_count).await,
        TransitionOutcome::Rejected(_) | TransitionOutcome::NotFound => {
            tracing::warn!(notification_id = %claimed.notification_id, "claim lost before the outcome was recorded");
            RecordOutcome::Done
        }
    }
}

/// Counted when the outcome is recorded, so each notification counts once in its final status
/// however often its job was delivered.
fn count_outcome(job: &SendJob, n: &Notification, latency: Duration) {
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
}

/// The transition under the sender's own claim, tried a few times in process.
async fn write_outcome(store: &dyn NotificationStore, id: &NotificationId, guard: &Guard, change: &Transition) -> Result<TransitionOutcome, StoreError> {
    let mut pause = OUTCOME_WRITE_PAUSE;
    let mut tries = 1;
    loop {
        match store.transition(id, guard, change).await {
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

/// The reason an unreachable recipient is skipped with, once its address is suppressed (a live
/// WebSocket that is simply not connected is not suppressed). A store failure asks for a retry.
async fn suppress_unreachable(deps: &SendDeps, job: &SendJob, why: &str) -> Result<String, RecordOutcome> {
    if why == reason::NO_LIVE_CONNECTION {
        return Ok(why.to_owned());
    }
    let reason_kind = if why == reason::OPTED_OUT { SuppressionReason::OptedOut } else { SuppressionReason::Unreachable };
    let Some(address) = suppressible_address(&job.address) else {
        return Ok(reason::UNREACHABLE.to_owned());
    };
    let suppression = Suppression {
        tenant: crate::domain::Tenant::of(job.user_id.as_str()),
        channel: job.channel,
        address: address.to_owned(),
        reason: reason_kind,
        created_at: deps.clock.now(),
        notification_id: Some(job.notification_id.clone()),
    };
    match deps.suppressions.suppress(&suppression).await {
        Ok(()) => Ok(if reason_kind == SuppressionReason::OptedOut { reason::OPTED_OUT } else { reason::UNREACHABLE }.to_owned()),
        Err(e) => {
            tracing::warn!(error = %e, "could not suppress an unreachable address");
            Err(RecordOutcome::Retry(deps.hiccup_retry.backoff(1)))
        }
    }
}

/// Done with a notification in a final status, once the fallback it may owe is on its queue.
async fn settle_fallback(deps: &SendDeps, n: &Notification, receive_count: u32) -> RecordOutcome {
    match fallback::settle_final(&deps.callbacks, &deps.fallback, n).await {
        Ok(()) => RecordOutcome::Done,
        Err(e) => {
            tracing::warn!(error = %e, notification_id = %n.notification_id, "callback or fallback not queued yet; the job comes back for it");
            RecordOutcome::Retry(deps.hiccup_retry.backoff(receive_count))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{Outbox, OutboxSender};
    use crate::domain::{Channel, FallbackProgress};
    use crate::handlers::test_support::*;
    use crate::jobs::{RouteJob, encode};
    use crate::metrics::{NOTIFICATIONS_FAILED, NOTIFICATIONS_SENT};

    const EVENTS_FAST: &str = "events-fast.fifo";

    fn outbox() -> (Outbox, Arc<OutboxSender>) {
        let outbox = Outbox::new(None);
        (outbox.clone(), Arc::new(OutboxSender::new(outbox)))
    }

    /// The push notification of `order.completed`, whose event type names SMS as its fallback.
    async fn push(h: &Harness) -> SendJob {
        h.seed("order.completed", "evt-order-A-17", Channel::Push).await
    }

    /// Asserts the fallback route job for `job`'s notification is the one message on
    /// `events-fast.fifo`, and that the notification records it as queued.
    async fn assert_fallback_queued(h: &Harness, job: &SendJob) {
        let routed: Vec<RouteJob> = h.take(EVENTS_FAST).await;
        assert_eq!(routed.len(), 1, "one fallback request");
        let fallback = routed[0].fallback.as_ref().expect("a fallback request");
        assert_eq!((fallback.channel, fallback.replaces), (Channel::Sms, Channel::Push));
        assert_eq!(routed[0].event.event_id, job.event_id);
        assert_eq!(h.notification(&job.notification_id).await.fallback, Some(FallbackProgress { channel: Channel::Sms, queued: true }));
    }

    #[tokio::test(start_paused = true)]
    async fn success_records_sent_with_the_provider_id() {
        let h = Harness::new().await;
        let (outbox, provider) = outbox();
        let deps = h.sender(provider);
        let job = h.seed("order.completed", "evt-1", Channel::Email).await;

        assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Done);

        let n = h.notification(&job.notification_id).await;
        let entries = outbox.entries(None);
        assert_eq!(entries.len(), 1);
        assert_eq!(n.status, Status::Sent);
        assert_eq!(n.provider_message_id.as_deref(), Some(entries[0].provider_message_id.as_str()));
        assert_eq!(n.attempts, 1);
        assert_eq!(n.sent_at, Some(t0()));
        assert_eq!(n.lease_until, None, "the claim is released");
        assert_eq!(entries[0].notification_id, job.notification_id.as_str());
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_error_under_budget_goes_back_to_pending_with_backoff() {
        let h = Harness::new().await;
        let provider = ScriptedSender::new([transient("timeout"), transient("503")]);
        let deps = h.sender(provider.clone());
        let job = push(&h).await;

        for attempt in 1..=2 {
            let RecordOutcome::Retry(after) = deliver(&deps, &job, attempt).await else { panic!("retried") };
            assert_backoff(after, &RETRY, attempt);
            let n = h.notification(&job.notification_id).await;
            assert_eq!((n.status, n.attempts, n.reason.as_deref()), (Status::Pending, attempt, None));
            assert_eq!(n.lease_until, None);
            assert!(n.last_error.as_deref().unwrap().contains(if attempt == 1 { "timeout" } else { "503" }), "{n:?}");
        }
        assert_eq!(provider.calls(), 2);
        assert!(h.depths().await.is_empty(), "no fallback while attempts remain");
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_error_on_the_last_attempt_fails_and_requests_the_fallback() {
        let h = Harness::new().await;
        let provider = ScriptedSender::new([transient("t1"), transient("t2"), transient("t3")]);
        let deps = h.sender(provider.clone());
        let job = push(&h).await;

        assert!(matches!(deliver(&deps, &job, 1).await, RecordOutcome::Retry(_)));
        assert!(matches!(deliver(&deps, &job, 2).await, RecordOutcome::Retry(_)));
        assert_eq!(h.depth(EVENTS_FAST).await, 0);
        assert_eq!(deliver(&deps, &job, 3).await, RecordOutcome::Done);

        let n = h.notification(&job.notification_id).await;
        assert_eq!((n.status, n.reason.as_deref(), n.attempts), (Status::Failed, Some(reason::RETRIES_EXHAUSTED), RETRY.max_attempts));
        assert!(n.last_error.as_deref().unwrap().contains("t3"));
        assert_eq!(h.depth(EVENTS_FAST).await, 1);
        assert_fallback_queued(&h, &job).await;
        assert_eq!(provider.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_fails_at_once_and_requests_the_fallback() {
        let h = Harness::new().await;
        let provider = ScriptedSender::new([permanent("invalid token")]);
        let deps = h.sender(provider.clone());
        let job = push(&h).await;

        assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Done);

        let n = h.notification(&job.notification_id).await;
        assert_eq!((n.status, n.reason.as_deref(), n.attempts), (Status::Failed, Some(reason::PROVIDER_REJECTED), 1));
        assert!(n.last_error.as_deref().unwrap().contains("invalid token"));
        assert_eq!(n.lease_until, None);
        assert_fallback_queued(&h, &job).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_recipient_is_skipped_with_the_reason() {
        let h = Harness::new().await;
        let provider = ScriptedSender::new([unreachable(reason::NO_LIVE_CONNECTION)]);
        let deps = h.sender(provider);
        let job = h.seed("order.completed", "evt-1", Channel::Websocket).await;

        assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Done);

        let n = h.notification(&job.notification_id).await;
        assert_eq!((n.status, n.reason.as_deref()), (Status::Skipped, Some(reason::NO_LIVE_CONNECTION)));
        assert_eq!((n.fallback, n.lease_until), (None, None));
        assert!(h.depths().await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_send_waits_as_asked_and_spends_no_attempt() {
        let h = Harness::new().await;
        let provider = ScriptedSender::new([throttled(Some(Duration::from_secs(7)))]);
        let deps = h.sender(provider);
        let job = push(&h).await;

        assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Retry(Duration::from_secs(7)));

        let n = h.notification(&job.notification_id).await;
        assert_eq!((n.status, n.attempts), (Status::Pending, 0), "the claim's attempt is refunded");
        assert_eq!(n.last_error.as_deref(), Some("throttled by the provider"));
        assert_eq!(n.lease_until, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_send_without_a_hint_waits_at_least_a_second() {
        let h = Harness::new().await;
        let provider = ScriptedSender::new([throttled(None)]);
        let deps = h.sender(provider);
        let job = push(&h).await;

        // The policy's own backoff (10 ms here) is raised to SQS's one-second granularity.
        assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Retry(Duration::from_secs(1)));
        assert_eq!(h.notification(&job.notification_id).await.attempts, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_claim_of_another_sender_is_waited_for_without_calling_the_provider() {
        let h = Harness::new().await;
        let provider = ScriptedSender::new([]);
        let deps = h.sender(provider.clone());
        let job = push(&h).await;
        h.claim(&job).await;
        h.clock.advance(Duration::from_secs(20));

        assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Retry(h.lease() - Duration::from_secs(20)));

        assert_eq!(provider.calls(), 0);
        let n = h.notification(&job.notification_id).await;
        assert_eq!((n.status, n.attempts), (Status::Sending, 1), "the other sender's claim is untouched");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_claim_is_taken_over_and_sent() {
        let h = Harness::new().await;
        let (outbox, provider) = outbox();
        let deps = h.sender(provider);
        let job = push(&h).await;
        h.claim(&job).await;
        h.clock.advance(h.lease() + Duration::from_secs(1));

        assert_eq!(deliver(&deps, &job, 2).await, RecordOutcome::Done);

        let n = h.notification(&job.notification_id).await;
        assert_eq!((n.status, n.attempts), (Status::Sent, 2), "the dead sender's claim counts as an attempt");
        assert_eq!(outbox.len(), 1);
    }

    #[test]
    fn a_claim_lost_before_the_outcome_is_left_to_its_new_owner() {
        let ((), counters) = with_counters(async {
            let h = Harness::new().await;
            let provider = ScriptedSender::new([Ok("provider-1".into())]);
            let deps = h.sender(provider.clone());
            let job = push(&h).await;
            // Mid-call, another writer fails the notification (as the dead-letter handler would).
            let (store, id) = (h.store.clone(), job.notification_id.clone());
            provider.during_next_call(move || async move {
                let fail = Transition::to(Status::Failed, t0()).reason(reason::RETRIES_EXHAUSTED).lease_until(None);
                let out = store.inner.transition(&id, &Guard::StatusIn(vec![Status::Sending]), &fail).await.unwrap();
                assert!(matches!(out, TransitionOutcome::Applied(_)));
            });

            assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Done);

            let n = h.notification(&job.notification_id).await;
            assert_eq!((n.status, n.reason.as_deref()), (Status::Failed, Some(reason::RETRIES_EXHAUSTED)));
            assert_eq!((n.provider_message_id, n.sent_at, n.attempts), (None, None, 1));
            assert_eq!(provider.calls(), 1);
        });
        assert_eq!(count(&counters, NOTIFICATIONS_SENT), 0, "{counters:?}");
        assert_eq!(count(&counters, NOTIFICATIONS_FAILED), 0, "counted by the writer that failed it, not here");
    }

    #[tokio::test(start_paused = true)]
    async fn a_duplicate_job_of_a_final_notification_is_dropped() {
        let h = Harness::new().await;
        let (outbox, provider) = outbox();
        let deps = h.sender(provider);
        let job = push(&h).await;
        assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Done);
        let sent = h.notification(&job.notification_id).await;

        assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Done);

        assert_eq!(outbox.len(), 1, "the provider is not called again");
        assert_eq!(h.notification(&job.notification_id).await, sent);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_notification_owing_its_fallback_requests_it_when_its_job_comes_back() {
        let h = Harness::new().await;
        let provider = ScriptedSender::new([]);
        let deps = h.sender(provider.clone());
        let job = push(&h).await;
        h.create(&job).await;
        let owed = Some(FallbackProgress { channel: Channel::Sms, queued: false });
        h.force(&job.notification_id, Transition::to(Status::Failed, t0()).reason(reason::PROVIDER_REJECTED).fallback(owed)).await;
        assert_eq!(h.depth(EVENTS_FAST).await, 0);

        assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Done);

        assert_eq!(provider.calls(), 0);
        assert_eq!(h.depth(EVENTS_FAST).await, 1);
        assert_fallback_queued(&h, &job).await;
        assert_eq!(h.notification(&job.notification_id).await.status, Status::Failed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fallback_request_that_fails_is_made_by_the_redelivered_job() {
        let h = Harness::new().await;
        let provider = ScriptedSender::new([permanent("unregistered token")]);
        let deps = h.sender(provider.clone());
        let job = push(&h).await;
        h.queue.fail_next_sends(1);

        let RecordOutcome::Retry(after) = deliver(&deps, &job, 1).await else { panic!("retried for the fallback") };
        assert_backoff(after, &HICCUP, 1);
        let n = h.notification(&job.notification_id).await;
        assert_eq!((n.status, n.reason.as_deref()), (Status::Failed, Some(reason::PROVIDER_REJECTED)));
        assert_eq!(n.fallback, Some(FallbackProgress { channel: Channel::Sms, queued: false }));
        assert_eq!(h.depth(EVENTS_FAST).await, 0);

        assert_eq!(deliver(&deps, &job, 2).await, RecordOutcome::Done);
        assert_eq!(provider.calls(), 1, "the redelivery does not send again");
        assert_fallback_queued(&h, &job).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_outage_at_the_claim_retries_without_calling_the_provider() {
        let h = Harness::new().await;
        let provider = ScriptedSender::new([]);
        let deps = h.sender(provider.clone());
        let job = push(&h).await;
        h.store.fail_next("upsert", 1);

        let RecordOutcome::Retry(after) = deliver(&deps, &job, 3).await else { panic!("retried") };

        assert_backoff(after, &HICCUP, 3);
        assert_eq!(provider.calls(), 0);
        assert_eq!(h.store.inner.get(&job.notification_id).await.unwrap(), None, "nothing written");
        h.create(&job).await;
        h.store.fail_next("upsert", 1);
        assert!(matches!(deliver(&deps, &job, 4).await, RecordOutcome::Retry(_)));
        let n = h.notification(&job.notification_id).await;
        assert_eq!((n.status, n.attempts), (Status::Pending, 0), "an existing one is left as it was");
    }

    #[tokio::test(start_paused = true)]
    async fn an_outcome_write_that_fails_once_is_retried_in_process() {
        let h = Harness::new().await;
        let (outbox, provider) = outbox();
        let deps = h.sender(provider);
        let job = push(&h).await;
        h.store.fail_next("transition", 1); // the claim (an upsert) passes, the first outcome write fails

        assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Done);

        assert_eq!(h.notification(&job.notification_id).await.status, Status::Sent);
        assert_eq!(outbox.len(), 1);
        assert_eq!((h.store.calls("upsert"), h.store.calls("transition")), (1, 2), "claim; failed write, write");
    }

    #[test]
    fn an_outcome_write_applied_but_unanswered_still_ends_sent() {
        let ((), _) = with_counters(async {
            let h = Harness::new().await;
            let (outbox, provider) = outbox();
            let deps = h.sender(provider);
            let job = push(&h).await;
            h.store.apply_then_fail_after("transition", 0, 1);

            assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Done);

            let n = h.notification(&job.notification_id).await;
            assert_eq!((n.status, n.attempts), (Status::Sent, 1));
            assert_eq!(n.provider_message_id.as_deref(), Some(outbox.entries(None)[0].provider_message_id.as_str()));
            assert_eq!(outbox.len(), 1);
        });
    }

    #[test]
    fn an_outcome_write_applied_but_unanswered_is_counted_once() {
        let ((), counters) = with_counters(async {
            let h = Harness::new().await;
            let (_outbox, provider) = outbox();
            let deps = h.sender(provider);
            let job = push(&h).await;
            h.store.apply_then_fail_after("transition", 0, 1);
            assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Done);
            assert_eq!(h.notification(&job.notification_id).await.status, Status::Sent);
        });
        assert_eq!(count(&counters, NOTIFICATIONS_SENT), 1, "each notification counts once in its final status: {counters:?}");
    }

    #[test]
    fn a_sent_notification_is_counted_once_however_often_its_job_comes() {
        let ((), counters) = with_counters(async {
            let h = Harness::new().await;
            let (_outbox, provider) = outbox();
            let deps = h.sender(provider);
            let job = push(&h).await;
            for _ in 0..3 {
                assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Done);
            }
        });
        assert_eq!(count(&counters, NOTIFICATIONS_SENT), 1, "{counters:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_outcome_write_that_keeps_failing_is_retried_after_the_lease() {
        let h = Harness::new().await;
        let (outbox, provider) = outbox();
        let deps = h.sender(provider);
        let job = push(&h).await;
        h.store.fail_next("transition", OUTCOME_WRITE_TRIES);

        let RecordOutcome::Retry(after) = deliver(&deps, &job, 1).await else { panic!("retried") };

        assert!(after >= h.lease(), "not before the claim lapses: {after:?}");
        assert_eq!(outbox.len(), 1);
        assert_eq!(h.notification(&job.notification_id).await.status, Status::Sending);
        assert_eq!(h.store.calls("transition"), OUTCOME_WRITE_TRIES);
    }

    #[tokio::test(start_paused = true)]
    async fn claims_past_the_budget_fail_without_calling_the_provider() {
        let h = Harness::new().await;
        let provider = ScriptedSender::new([]);
        let deps = h.sender(provider.clone());
        let job = push(&h).await;
        // Senders that died mid-call: each claim counted, no outcome recorded.
        for _ in 0..RETRY.max_attempts {
            h.claim(&job).await;
            h.clock.advance(h.lease() + Duration::from_secs(1));
        }

        assert_eq!(deliver(&deps, &job, 4).await, RecordOutcome::Done);

        assert_eq!(provider.calls(), 0);
        let n = h.notification(&job.notification_id).await;
        assert_eq!((n.status, n.reason.as_deref()), (Status::Failed, Some(reason::RETRIES_EXHAUSTED)));
        assert_eq!((n.attempts, n.lease_until), (RETRY.max_attempts + 1, None));
        assert_fallback_queued(&h, &job).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_send_job_is_parked() {
        let h = Harness::new().await;
        let deps = h.sender(ScriptedSender::new([]));
        let outcome = handle_send_record(&deps, record("send-push-fast.fifo", r#"{"notification_id": 7}"#, 1)).await;
        assert_eq!(outcome, RecordOutcome::Park(ParkReason::Unreadable));
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_without_its_record_for_an_unknown_notification_is_parked() {
        let h = Harness::new().await;
        let provider = ScriptedSender::new([]);
        let deps = h.sender(provider.clone());
        // Queued before routers left the notification's write to the sender: no record.
        let mut job = SendJob { created_at: None, ..push(&h).await };
        job.notification_id = NotificationId::from_stored("ntf_unknown".into());
        let body = encode(&job);

        let outcome = handle_send_record(&deps, record("send-push-fast.fifo", &body, 1)).await;

        assert_eq!(outcome, RecordOutcome::Park(ParkReason::UnknownNotification));
        assert_eq!(provider.calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_without_its_record_claims_the_notification_its_router_wrote() {
        let h = Harness::new().await;
        let (outbox, provider) = outbox();
        let deps = h.sender(provider);
        let job = push(&h).await;
        h.create(&job).await;

        assert_eq!(deliver(&deps, &SendJob { created_at: None, ..job.clone() }, 1).await, RecordOutcome::Done);

        assert_eq!((h.notification(&job.notification_id).await.status, outbox.len()), (Status::Sent, 1));
        assert_eq!(h.store.calls("upsert"), 0, "a plain transition");
    }

    #[test]
    fn the_claim_is_the_first_write_of_a_queued_notification_and_counts_it_routed_once() {
        let ((), counters) = with_counters(async {
            let h = Harness::new().await;
            let (outbox, provider) = outbox();
            let deps = h.sender(provider);
            let job = push(&h).await;
            assert_eq!(h.store.inner.get(&job.notification_id).await.unwrap(), None, "nobody wrote it");

            h.clock.advance(Duration::from_secs(2));
            assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Done);

            let n = h.notification(&job.notification_id).await;
            assert_eq!((n.status, n.attempts, n.created_at, n.sent_at), (Status::Sent, 1, t0(), Some(t0() + Duration::from_secs(2))));
            assert_eq!(n.title.as_deref(), Some(job.message.part("title")), "the record the job carries");
            assert_eq!(outbox.len(), 1);
            assert_eq!((h.store.calls("create"), h.store.calls("upsert"), h.store.calls("transition")), (0, 1, 1), "claim (creating it), outcome");
            // Its job again: a final notification, dropped.
            assert_eq!(deliver(&deps, &job, 2).await, RecordOutcome::Done);
            assert_eq!(outbox.len(), 1);
        });
        assert_eq!(count(&counters, crate::metrics::NOTIFICATIONS_ROUTED), 1, "{counters:?}");
        assert_eq!(count(&counters, NOTIFICATIONS_SENT), 1, "{counters:?}");
    }

    #[test]
    fn claiming_a_notification_written_before_counts_nothing_routed() {
        let ((), counters) = with_counters(async {
            let h = Harness::new().await;
            let (_outbox, provider) = outbox();
            let deps = h.sender(provider);
            let job = push(&h).await;
            h.create(&job).await; // scheduled and released, or back to pending after a retry
            assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Done);
        });
        assert_eq!(count(&counters, crate::metrics::NOTIFICATIONS_ROUTED), 0, "counted by whoever wrote it: {counters:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_whose_notification_was_canceled_before_its_claim_is_dropped_unsent() {
        let h = Harness::new().await;
        let provider = ScriptedSender::new([]);
        let deps = h.sender(provider.clone());
        let job = push(&h).await;
        let canceled = Transition::to(Status::Canceled, t0()).apply(&job.record().unwrap());
        assert!(h.store.inner.create(&canceled).await.unwrap());

        assert_eq!(deliver(&deps, &job, 1).await, RecordOutcome::Done);

        assert_eq!(provider.calls(), 0);
        assert_eq!(h.notification(&job.notification_id).await, canceled, "nothing written, not even its title");
    }
}
