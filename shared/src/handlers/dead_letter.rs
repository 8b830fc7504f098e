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
//! - after that fails the notification as `retries_exhausted` (owing its fallback) and records
//!   the job as a dead letter (`handlers::dead_letters`), for an operator to list and replay;
//! - treats a job whose notification does not exist as one queued at once and never claimed
//!   (its job carries the record: the router leaves the write to the sender's claim): redriven,
//!   then failed by one conditional write that creates it `failed` (owing its fallback);
//! - records a job it cannot read, or one without its record whose notification does not exist
//!   (queued before routers left the write to the sender), as a dead letter, body and all, and
//!   only then lets go of it: the record holds it from there on;
//! - backs off on the store and queue like every other handler, so nothing here is lost to a
//!   hiccup: the dead-letter queue itself has no redrive.

use std::sync::Arc;
use std::time::Duration;

use super::dead_letters::{dead_letter_of, park_or_record, record_dead_letter};
use super::fallback::{self, FallbackDeps};
use super::router::outgoing_message;
use super::send::{Written, write_or_create};
use super::sqs_batch::{ParkReason, Record, RecordOutcome, RetryPolicy};
use crate::domain::notification::reason;
use crate::domain::{Guard, Notification};
use crate::jobs::{SendJob, decode};
use crate::metrics;
use crate::ports::{Clock, DeadLetterReason, DeadLetterStore, NotificationStore, OutgoingMessage, QueueSender};

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
    /// Where final statuses are announced to the producer.
    pub callbacks: super::callbacks::StatusCallbacks,
    /// Where the jobs given up on are recorded.
    pub dead_letters: Arc<dyn DeadLetterStore>,
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
            return park_or_record(deps.dead_letters.as_ref(), deps.clock.as_ref(), &deps.retry, &record, ParkReason::Unreadable, None).await;
        }
    };
    let current = match deps.notifications.get(&job.notification_id).await {
        Ok(Some(n)) => Some(n),
        // Queued at once and never claimed: its job carries its record.
        Ok(None) if job.record().is_some() => None,
        Ok(None) => {
            tracing::error!(notification_id = %job.notification_id, "dead letter for an unknown notification kept for an operator");
            return park_or_record(deps.dead_letters.as_ref(), deps.clock.as_ref(), &deps.retry, &record, ParkReason::UnknownNotification, Some(&job))
                .await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "store unavailable");
            return backoff();
        }
    };
    if let Some(current) = current.as_ref().filter(|n| n.status.is_final()) {
        return given_up(deps, &record, &job, current).await;
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
    let Some(failing) = current.clone().or_else(|| job.record()) else {
        return backoff(); // not reached: one of the two exists
    };
    let last_error = current.and_then(|n| n.last_error).unwrap_or_else(|| format!("dead-lettered {} times", job.redrives + 1));
    let change = fallback::fail(&deps.fallback.catalog, &failing, now, reason::RETRIES_EXHAUSTED).last_error(last_error);
    // One conditional write, creating the notification failed if its sender never claimed it.
    match write_or_create(deps.notifications.as_ref(), &job, &Guard::Claimable { now }, &change).await {
        Ok(Written::Created(n)) => {
            // Its first write: counted routed too, as its claim would have.
            metrics::notification_routed(n.channel, n.priority.lane());
            failed_after_redrives(deps, &record, &job, &n).await
        }
        Ok(Written::Applied(n)) => failed_after_redrives(deps, &record, &job, &n).await,
        Ok(Written::Rejected(n)) if n.status.is_final() => given_up(deps, &record, &job, &n).await,
        // A sender holds a live claim: see how it ends.
        Ok(Written::Rejected(n)) => {
            let wait = n.lease_until.and_then(|u| Duration::try_from(u.duration_since(now)).ok()).unwrap_or_default();
            RecordOutcome::Retry(wait.max(Duration::from_secs(1)))
        }
        Ok(Written::Unknown) => {
            park_or_record(deps.dead_letters.as_ref(), deps.clock.as_ref(), &deps.retry, &record, ParkReason::UnknownNotification, Some(&job)).await
        }
        Err(e) => {
            tracing::warn!(error = %e, "store unavailable");
            backoff()
        }
    }
}

async fn failed_after_redrives(deps: &DeadLetterDeps, record: &Record<'_>, job: &SendJob, n: &Notification) -> RecordOutcome {
    metrics::notification_failed(n.channel, n.priority.lane());
    tracing::warn!(notification_id = %n.notification_id, channel = n.channel.as_str(), attempts = n.attempts, "failed after its redrives");
    given_up(deps, record, job, n).await
}

/// A final notification: when this handler failed it after the job's redrives, the job is
/// recorded as a dead letter (again, harmlessly, when this is a retry); then what it owes is
/// settled.
async fn given_up(deps: &DeadLetterDeps, record: &Record<'_>, job: &SendJob, n: &Notification) -> RecordOutcome {
    let exhausted = n.status == crate::domain::Status::Failed && n.reason.as_deref() == Some(reason::RETRIES_EXHAUSTED);
    if exhausted && job.redrives >= deps.max_redrives {
        let letter = dead_letter_of(record, DeadLetterReason::RetriesExhausted, Some(job), deps.clock.now());
        let recorded = record_dead_letter(deps.dead_letters.as_ref(), &deps.retry, record, letter).await;
        if recorded != RecordOutcome::Done {
            return recorded;
        }
    }
    settle(deps, n, record.receive_count).await
}

/// Done once the fallback `n` may owe is queued.
async fn settle(deps: &DeadLetterDeps, n: &Notification, receive_count: u32) -> RecordOutcome {
    match fallback::settle_final(&deps.callbacks, &deps.fallback, n).await {
        Ok(()) => RecordOutcome::Done,
        Err(e) => {
            tracing::warn!(error = %e, "callback or fallback could not be queued yet");
            RecordOutcome::Retry(deps.retry.backoff(receive_count))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, FallbackProgress, NotificationId, Status, Transition};
    use crate::handlers::test_support::*;
    use crate::jobs::{RouteJob, encode};
    use crate::ports::{DeadLetter, DeadLetterReason, DeadLetterStore};

    const DLQ: &str = "send-push-fast-dlq.fifo";
    const SEND_PUSH_FAST: &str = "send-push-fast.fifo";
    const EVENTS_FAST: &str = "events-fast.fifo";

    async fn push(h: &Harness) -> SendJob {
        h.seed("order.completed", "evt-order-A-17", Channel::Push).await
    }

    async fn handle_job(h: &Harness, job: &SendJob, receive_count: u32) -> RecordOutcome {
        let body = encode(job);
        handle_dead_letter_record(&h.dead_letter(), record(DLQ, &body, receive_count)).await
    }

    fn owed() -> Option<FallbackProgress> {
        Some(FallbackProgress { channel: Channel::Sms, queued: false })
    }

    async fn recorded(h: &Harness) -> Vec<DeadLetter> {
        let page = h.store.inner.list_dead_letters(None, 100, None).await.unwrap();
        assert_eq!(page.next, None);
        page.items
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_dead_letter_is_recorded_with_its_body_then_let_go() {
        let h = Harness::new().await;
        let outcome = handle_dead_letter_record(&h.dead_letter(), record(DLQ, "{", 1)).await;
        assert_eq!(outcome, RecordOutcome::Done, "the record holds it now");
        let letters = recorded(&h).await;
        assert_eq!(letters.len(), 1);
        let l = &letters[0];
        assert_eq!((l.queue.as_str(), l.reason, l.body.as_str(), l.group_id.as_deref()), (DLQ, DeadLetterReason::Unreadable, "{", Some("default#u-42")));
        assert_eq!((&l.notification_id, l.attempts, l.first_failure_at), (&None, 1, t0()));
        assert!(h.queue.sent().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_letter_for_an_unknown_notification_is_recorded() {
        let h = Harness::new().await;
        // Without its record (queued before routers left the write to the sender).
        let mut job = SendJob { created_at: None, ..push(&h).await };
        job.notification_id = NotificationId::from_stored("ntf_unknown".into());
        assert_eq!(handle_job(&h, &job, 1).await, RecordOutcome::Done);
        assert!(h.queue.sent().is_empty());
        let letters = recorded(&h).await;
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].reason, DeadLetterReason::UnknownNotification);
        assert_eq!(letters[0].notification_id.as_deref(), Some("ntf_unknown"));
        assert_eq!(letters[0].user_id.as_deref(), Some(USER));
        assert_eq!(letters[0].body, encode(&job));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_letter_that_cannot_be_recorded_is_retried_not_let_go() {
        let h = Harness::new().await;
        h.store.fail_next("record_dead_letter", 1);
        let RecordOutcome::Retry(after) = handle_dead_letter_record(&h.dead_letter(), record(DLQ, "{", 3)).await else { panic!("retried") };
        assert_backoff(after, &HICCUP, 3);
        assert!(recorded(&h).await.is_empty());
        assert_eq!(handle_dead_letter_record(&h.dead_letter(), record(DLQ, "{", 4)).await, RecordOutcome::Done);
        assert_eq!(recorded(&h).await.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_redrive_records_no_dead_letter() {
        let h = Harness::new().await;
        let job = push(&h).await;
        assert_eq!(handle_job(&h, &job, 1).await, RecordOutcome::Done);
        assert!(recorded(&h).await.is_empty(), "not given up on yet");
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_notification_owing_its_fallback_gets_it_requested() {
        let h = Harness::new().await;
        let job = push(&h).await;
        h.create(&job).await;
        h.force(&job.notification_id, Transition::to(Status::Failed, t0()).reason(reason::PROVIDER_REJECTED).fallback(owed())).await;
        assert_eq!(h.depth(EVENTS_FAST).await, 0);

        assert_eq!(handle_job(&h, &job, 1).await, RecordOutcome::Done);

        let routed: Vec<RouteJob> = h.take(EVENTS_FAST).await;
        assert_eq!(routed.len(), 1);
        assert_eq!(routed[0].fallback.as_ref().map(|f| (f.channel, f.replaces)), Some((Channel::Sms, Channel::Push)));
        let n = h.notification(&job.notification_id).await;
        assert_eq!(n.fallback, Some(FallbackProgress { channel: Channel::Sms, queued: true }));
        assert_eq!((n.status, n.reason.as_deref()), (Status::Failed, Some(reason::PROVIDER_REJECTED)), "the failure itself is kept");
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_notification_owing_nothing_is_done() {
        let h = Harness::new().await;
        let job = push(&h).await;
        h.create(&job).await;
        let sent = h.force(&job.notification_id, Transition::to(Status::Sent, t0()).provider_message_id("p-1")).await;

        assert_eq!(handle_job(&h, &job, 1).await, RecordOutcome::Done);

        assert!(h.queue.sent().is_empty(), "nothing queued anywhere");
        assert_eq!(h.notification(&job.notification_id).await, sent);
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_under_its_redrive_limit_goes_back_to_its_send_queue() {
        let h = Harness::new().await;
        let job = push(&h).await;
        assert_eq!(h.depth(SEND_PUSH_FAST).await, 0);

        assert_eq!(handle_job(&h, &job, 1).await, RecordOutcome::Done);

        let sent = h.queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, SEND_PUSH_FAST);
        assert_eq!(sent[0].1.dedup_id, Some(format!("{}:redrive:1", job.notification_id)));
        let back: Vec<SendJob> = h.take(SEND_PUSH_FAST).await;
        assert_eq!(back, vec![SendJob { redrives: 1, ..job.clone() }]);
        assert_eq!(h.store.inner.get(&job.notification_id).await.unwrap(), None, "the notification is left to its sender's claim");
    }

    #[tokio::test(start_paused = true)]
    async fn the_redrive_count_travels_with_the_job() {
        let h = Harness::new().await;
        let job = SendJob { redrives: h.settings.max_redrives - 1, ..push(&h).await };

        assert_eq!(handle_job(&h, &job, 1).await, RecordOutcome::Done);

        let back: Vec<SendJob> = h.take(SEND_PUSH_FAST).await;
        assert_eq!(back.iter().map(|j| j.redrives).collect::<Vec<_>>(), [h.settings.max_redrives]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_at_its_redrive_limit_fails_the_notification_and_requests_the_fallback() {
        let h = Harness::new().await;
        let job = SendJob { redrives: h.settings.max_redrives, ..push(&h).await };

        assert_eq!(handle_job(&h, &job, 1).await, RecordOutcome::Done);

        let n = h.notification(&job.notification_id).await;
        assert_eq!((n.status, n.reason.as_deref()), (Status::Failed, Some(reason::RETRIES_EXHAUSTED)));
        assert_eq!(n.last_error.as_deref(), Some("dead-lettered 4 times"));
        assert_eq!(n.fallback, Some(FallbackProgress { channel: Channel::Sms, queued: true }));
        assert_eq!(h.depth(SEND_PUSH_FAST).await, 0, "not put back");
        let routed: Vec<RouteJob> = h.take(EVENTS_FAST).await;
        assert_eq!(routed.len(), 1);
        let letters = recorded(&h).await;
        assert_eq!(letters.len(), 1, "recorded as a dead letter");
        let l = &letters[0];
        assert_eq!((l.reason, l.attempts), (DeadLetterReason::RetriesExhausted, h.settings.max_redrives + 1));
        assert_eq!(l.id, crate::ports::dead_letter_id(DLQ, job.notification_id.as_str()));
        assert_eq!(l.notification_id.as_deref(), Some(job.notification_id.as_str()));
        assert_eq!(l.event_id.as_deref(), Some(job.event_id.as_str()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_job_given_up_on_again_is_one_dead_letter_keeping_its_first_failure() {
        let h = Harness::new().await;
        let job = SendJob { redrives: h.settings.max_redrives, ..push(&h).await };
        assert_eq!(handle_job(&h, &job, 1).await, RecordOutcome::Done);
        h.clock.advance(Duration::from_secs(60));
        assert_eq!(handle_job(&h, &job, 2).await, RecordOutcome::Done, "redelivered");
        let letters = recorded(&h).await;
        assert_eq!(letters.len(), 1);
        assert_eq!((letters[0].first_failure_at, letters[0].last_failure_at), (t0(), t0() + Duration::from_secs(60)));
        let routed: Vec<RouteJob> = h.take(EVENTS_FAST).await;
        assert_eq!(routed.len(), 1, "the fallback once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_whose_recording_failed_is_recorded_on_the_retry() {
        let h = Harness::new().await;
        let job = SendJob { redrives: h.settings.max_redrives, ..push(&h).await };
        h.store.fail_next("record_dead_letter", 1);

        assert!(matches!(handle_job(&h, &job, 1).await, RecordOutcome::Retry(_)));
        assert_eq!(h.notification(&job.notification_id).await.status, Status::Failed, "failed before the recording");
        assert!(recorded(&h).await.is_empty());

        assert_eq!(handle_job(&h, &job, 2).await, RecordOutcome::Done);
        assert_eq!(recorded(&h).await.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_at_the_redrive_limit_keeps_the_last_provider_error() {
        let h = Harness::new().await;
        let job = SendJob { redrives: h.settings.max_redrives, ..push(&h).await };
        h.create(&job).await;
        h.force(&job.notification_id, Transition::to(Status::Pending, t0()).last_error("provider timeout")).await;

        assert_eq!(handle_job(&h, &job, 1).await, RecordOutcome::Done);

        let n = h.notification(&job.notification_id).await;
        assert_eq!((n.status, n.last_error.as_deref()), (Status::Failed, Some("provider timeout")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_outage_retries_with_backoff() {
        let h = Harness::new().await;
        let job = push(&h).await;
        h.store.fail_next("get", 1);

        let RecordOutcome::Retry(after) = handle_job(&h, &job, 2).await else { panic!("retried") };

        assert_backoff(after, &HICCUP, 2);
        assert!(h.queue.sent().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_outage_at_the_failing_write_retries() {
        let h = Harness::new().await;
        let job = SendJob { redrives: h.settings.max_redrives, ..push(&h).await };
        h.store.fail_next("upsert", 1);

        let RecordOutcome::Retry(after) = handle_job(&h, &job, 1).await else { panic!("retried") };

        assert_backoff(after, &HICCUP, 1);
        assert_eq!(h.store.inner.get(&job.notification_id).await.unwrap(), None);
        assert!(h.queue.sent().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_outage_at_the_redrive_retries() {
        let h = Harness::new().await;
        let job = push(&h).await;
        h.queue.fail_next_sends(1);

        let RecordOutcome::Retry(after) = handle_job(&h, &job, 1).await else { panic!("retried") };

        assert_backoff(after, &HICCUP, 1);
        assert_eq!(h.depth(SEND_PUSH_FAST).await, 0);
        assert_eq!(handle_job(&h, &job, 2).await, RecordOutcome::Done);
        assert_eq!(h.depth(SEND_PUSH_FAST).await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_claim_of_a_sender_is_waited_for() {
        let h = Harness::new().await;
        let job = SendJob { redrives: h.settings.max_redrives, ..push(&h).await };
        h.claim(&job).await;
        h.clock.advance(Duration::from_secs(15));

        assert_eq!(handle_job(&h, &job, 1).await, RecordOutcome::Retry(h.lease() - Duration::from_secs(15)));

        let n = h.notification(&job.notification_id).await;
        assert_eq!((n.status, n.attempts), (Status::Sending, 1));
        assert!(h.queue.sent().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_claim_at_the_redrive_limit_is_failed() {
        let h = Harness::new().await;
        let job = SendJob { redrives: h.settings.max_redrives, ..push(&h).await };
        h.claim(&job).await;
        h.clock.advance(h.lease() + Duration::from_secs(1));

        assert_eq!(handle_job(&h, &job, 1).await, RecordOutcome::Done);

        let n = h.notification(&job.notification_id).await;
        assert_eq!((n.status, n.reason.as_deref(), n.lease_until), (Status::Failed, Some(reason::RETRIES_EXHAUSTED), None));
    }

    #[test]
    fn a_job_never_claimed_is_created_failed_at_its_redrive_limit_and_counted_once() {
        use crate::metrics::{NOTIFICATIONS_FAILED, NOTIFICATIONS_ROUTED};
        let ((), counters) = with_counters(async {
            let h = Harness::new().await;
            let job = SendJob { redrives: h.settings.max_redrives, ..push(&h).await };
            assert_eq!(h.store.inner.get(&job.notification_id).await.unwrap(), None, "its sender never claimed it");

            assert_eq!(handle_job(&h, &job, 1).await, RecordOutcome::Done);

            let n = h.notification(&job.notification_id).await;
            let record = job.record().unwrap();
            assert_eq!((n.status, n.reason.as_deref(), n.attempts), (Status::Failed, Some(reason::RETRIES_EXHAUSTED), 0));
            assert_eq!((&n.title, n.created_at, n.updated_at), (&record.title, t0(), t0()), "the record the job carries, failed");
            assert_eq!(n.fallback, Some(FallbackProgress { channel: Channel::Sms, queued: true }), "its fallback requested");
            assert_eq!((h.store.calls("upsert"), h.store.calls("create")), (1, 0), "one conditional write created it failed");
            assert_eq!(recorded(&h).await[0].reason, DeadLetterReason::RetriesExhausted);
            // The same dead letter again: final, nothing more.
            assert_eq!(handle_job(&h, &job, 2).await, RecordOutcome::Done);
        });
        assert_eq!((count(&counters, NOTIFICATIONS_ROUTED), count(&counters, NOTIFICATIONS_FAILED)), (1, 1), "{counters:?}");
    }
}
