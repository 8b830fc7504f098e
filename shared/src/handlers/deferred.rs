//! The scheduler: holds a send job on the `deferred` queue (SQS delays are 15 minutes at most, so
//! longer waits hop several times) and releases it to its channel's queue when its time comes.
//! The scheduler also consumes `deferred-dlq` with this same handler: a job that got there (its
//! queue's redrive, after hours of store or queue trouble) is released or re-deferred like any
//! other, so that queue is never a dead end.

use std::sync::Arc;
use std::time::Duration;

use super::dead_letters::park_or_record;
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
    /// Where a record of `deferred-dlq` that cannot be released is recorded.
    pub dead_letters: Arc<dyn crate::ports::DeadLetterStore>,
}

pub async fn handle_deferred_record(deps: &DeferredDeps, record: Record<'_>) -> RecordOutcome {
    let retry = || RecordOutcome::Retry(deps.retry.backoff(record.receive_count));
    let deferred: DeferredJob = match decode(record.body, "deferred job") {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(error = %e, "unreadable deferred job");
            return park_or_record(deps.dead_letters.as_ref(), deps.clock.as_ref(), &deps.retry, &record, ParkReason::Unreadable, None).await;
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
        Ok(TransitionOutcome::NotFound) => {
            let job = Some(&deferred.job);
            return park_or_record(deps.dead_letters.as_ref(), deps.clock.as_ref(), &deps.retry, &record, ParkReason::UnknownNotification, job).await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, NotificationId};
    use crate::handlers::test_support::*;
    use crate::jobs::SendJob;

    const SEND_EMAIL_FAST: &str = "send-email-fast.fifo";

    /// An email notification held until `deliver_after`, and its deferred job.
    async fn scheduled(h: &Harness, deliver_after: jiff::Timestamp) -> DeferredJob {
        let job = h.seed("order.completed", "evt-later", Channel::Email).await;
        h.create(&job).await;
        h.force(&job.notification_id, Transition::to(Status::Scheduled, t0())).await;
        DeferredJob { queue: SEND_EMAIL_FAST.into(), deliver_after, job }
    }

    async fn handle(h: &Harness, deferred: &DeferredJob, receive_count: u32) -> RecordOutcome {
        let body = encode(deferred);
        handle_deferred_record(&h.scheduler(), record(DEFERRED_QUEUE, &body, receive_count)).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_not_yet_due_is_deferred_again_for_at_most_fifteen_minutes() {
        let h = Harness::new().await;
        let deferred = scheduled(&h, t0() + Duration::from_secs(3 * 3600)).await;

        assert_eq!(handle(&h, &deferred, 1).await, RecordOutcome::Done);

        let sent = h.queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].0.as_str(), sent[0].1.delay), (DEFERRED_QUEUE, MAX_DELAY));
        assert_eq!(decode::<DeferredJob>(&sent[0].1.body, "deferred job").unwrap(), deferred);
        assert_eq!(h.notification(&deferred.job.notification_id).await.status, Status::Scheduled);
        assert_eq!(h.depth(SEND_EMAIL_FAST).await, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_due_within_fifteen_minutes_waits_exactly_that_long() {
        let h = Harness::new().await;
        let deferred = scheduled(&h, t0() + Duration::from_secs(10 * 60)).await;
        h.clock.advance(Duration::from_secs(4 * 60));

        assert_eq!(handle(&h, &deferred, 1).await, RecordOutcome::Done);

        let sent = h.queue.sent();
        assert_eq!(sent.iter().map(|(q, m)| (q.as_str(), m.delay)).collect::<Vec<_>>(), [(DEFERRED_QUEUE, Duration::from_secs(6 * 60))]);
        // The in-process queue holds it out of sight until then.
        tokio::time::advance(Duration::from_secs(6 * 60 - 1)).await;
        assert_eq!(h.depth(DEFERRED_QUEUE).await, 0);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(h.depth(DEFERRED_QUEUE).await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_job_releases_the_notification_to_its_send_queue() {
        let h = Harness::new().await;
        let deferred = scheduled(&h, t0() + Duration::from_secs(60)).await;
        h.clock.advance(Duration::from_secs(60));

        assert_eq!(handle(&h, &deferred, 1).await, RecordOutcome::Done);

        let n = h.notification(&deferred.job.notification_id).await;
        assert_eq!((n.status, n.updated_at), (Status::Pending, t0() + Duration::from_secs(60)));
        let released: Vec<SendJob> = h.take(SEND_EMAIL_FAST).await;
        assert_eq!(released, vec![deferred.job.clone()]);
        assert!(h.queue.sent().iter().all(|(q, _)| q == SEND_EMAIL_FAST));
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_released_before_is_queued_again() {
        let h = Harness::new().await;
        let deferred = scheduled(&h, t0()).await;
        h.force(&deferred.job.notification_id, Transition::to(Status::Pending, t0())).await;
        assert_eq!(h.depth(SEND_EMAIL_FAST).await, 0);

        assert_eq!(handle(&h, &deferred, 2).await, RecordOutcome::Done);

        assert_eq!(h.depth(SEND_EMAIL_FAST).await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_of_a_final_notification_is_done_with_nothing_queued() {
        let h = Harness::new().await;
        let deferred = scheduled(&h, t0()).await;
        let sent = h.force(&deferred.job.notification_id, Transition::to(Status::Sent, t0())).await;

        assert_eq!(handle(&h, &deferred, 1).await, RecordOutcome::Done);

        assert!(h.queue.sent().is_empty());
        assert_eq!(h.notification(&deferred.job.notification_id).await, sent);
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_of_an_unknown_notification_is_parked() {
        let h = Harness::new().await;
        let mut deferred = scheduled(&h, t0()).await;
        deferred.job.notification_id = NotificationId::from_stored("ntf_unknown".into());

        assert_eq!(handle(&h, &deferred, 1).await, RecordOutcome::Park(ParkReason::UnknownNotification));
        assert!(h.queue.sent().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_of_an_unknown_notification_on_the_dead_letter_queue_is_recorded_for_an_operator() {
        use crate::ports::{DeadLetterReason, DeadLetterStore};
        let h = Harness::new().await;
        let mut deferred = scheduled(&h, t0()).await;
        deferred.job.notification_id = NotificationId::from_stored("ntf_unknown".into());
        let body = encode(&deferred);

        assert_eq!(handle_deferred_record(&h.scheduler(), record("deferred-dlq", &body, 1)).await, RecordOutcome::Done);

        assert!(h.queue.sent().is_empty());
        let letters = h.store.inner.list_dead_letters(None, 10, None).await.unwrap().items;
        assert_eq!(letters.len(), 1);
        assert_eq!((letters[0].queue.as_str(), letters[0].reason), ("deferred-dlq", DeadLetterReason::UnknownNotification));
        assert_eq!(letters[0].notification_id.as_deref(), Some("ntf_unknown"));
        assert_eq!(letters[0].body, body);
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_outage_retries_with_backoff() {
        let h = Harness::new().await;
        let deferred = scheduled(&h, t0()).await;
        h.store.fail_next("transition", 1);

        let RecordOutcome::Retry(after) = handle(&h, &deferred, 4).await else { panic!("retried") };

        assert_backoff(after, &HICCUP, 4);
        assert_eq!(h.notification(&deferred.job.notification_id).await.status, Status::Scheduled);
        assert!(h.queue.sent().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_outage_at_the_release_retries_and_the_redelivery_queues_it() {
        let h = Harness::new().await;
        let deferred = scheduled(&h, t0()).await;
        h.queue.fail_next_sends(1);

        let RecordOutcome::Retry(after) = handle(&h, &deferred, 1).await else { panic!("retried") };
        assert_backoff(after, &HICCUP, 1);
        assert_eq!(h.notification(&deferred.job.notification_id).await.status, Status::Pending);
        assert_eq!(h.depth(SEND_EMAIL_FAST).await, 0);

        assert_eq!(handle(&h, &deferred, 2).await, RecordOutcome::Done);
        assert_eq!(h.depth(SEND_EMAIL_FAST).await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_outage_at_the_re_deferral_retries() {
        let h = Harness::new().await;
        let deferred = scheduled(&h, t0() + Duration::from_secs(3600)).await;
        h.queue.fail_next_sends(1);

        let RecordOutcome::Retry(after) = handle(&h, &deferred, 1).await else { panic!("retried") };
        assert_backoff(after, &HICCUP, 1);
        assert!(h.queue.sent().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_deferred_job_is_parked() {
        let h = Harness::new().await;
        let outcome = handle_deferred_record(&h.scheduler(), record(DEFERRED_QUEUE, "[]", 1)).await;
        assert_eq!(outcome, RecordOutcome::Park(ParkReason::Unreadable));
    }
}
