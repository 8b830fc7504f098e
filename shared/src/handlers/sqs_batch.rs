//! One SQS batch as a Lambda event source mapping delivers it: each record handled on its own
//! tracing span, failures reported per record (`ReportBatchItemFailures`), and on FIFO queues
//! every later record of a group that failed reported failed too, so order within the group holds.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;
use tracing::Instrument;

use crate::ports::queue::MAX_VISIBILITY;
use crate::ports::{BatchQueue, OutgoingMessage};
use crate::topology::{dead_letter_queue_of, is_dead_letter_queue};

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Done (delivered, recorded as failed or skipped, or a duplicate): delete it.
    Done,
    /// Try again after this long (the message's visibility is set to it).
    Retry(Duration),
    /// No handler can ever process it: keep it on the dead-letter queue for an operator, out of
    /// the way of its group's later records. Never deleted, never retried in a loop.
    Park(ParkReason),
}

/// Why a record was parked on its dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkReason {
    /// The body is not the job its queue carries.
    Unreadable,
    /// The job names a notification that does not exist.
    UnknownNotification,
}

impl ParkReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ParkReason::Unreadable => "unreadable",
            ParkReason::UnknownNotification => "unknown_notification",
        }
    }
}

/// How long a parked record stays out of sight before its dead-letter queue's consumer sees it
/// again (and keeps it again): SQS's longest visibility timeout.
pub const PARKED_RECHECK: Duration = MAX_VISIBILITY;
/// How soon a record whose parking failed (the queue was down) is tried again.
const PARK_RETRY: Duration = Duration::from_secs(5);

/// The parts of an SQS record a handler needs.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub message_id: &'a str,
    pub body: &'a str,
    pub receive_count: u32,
    pub group_id: Option<&'a str>,
    /// The queue's name, from the record's `eventSourceARN`.
    pub queue: &'a str,
}

pub fn queue_name_from_arn(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

fn record_of(m: &SqsMessage) -> Record<'_> {
    Record {
        message_id: m.message_id.as_deref().unwrap_or_default(),
        body: m.body.as_deref().unwrap_or_default(),
        receive_count: m.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1),
        group_id: m.attributes.get("MessageGroupId").map(String::as_str),
        queue: queue_name_from_arn(m.event_source_arn.as_deref().unwrap_or_default()),
    }
}

/// Moves a record to its queue's dead-letter queue: a copy is sent there and the record is done
/// with. A record already on a dead-letter queue stays where it is, out of sight for
/// [`PARKED_RECHECK`].
async fn park(queue: &dyn BatchQueue, record: &Record<'_>, why: ParkReason) -> RecordOutcome {
    tracing::error!(queue = record.queue, message_id = record.message_id, reason = why.as_str(), "record parked on the dead-letter queue");
    if is_dead_letter_queue(record.queue) {
        return RecordOutcome::Retry(PARKED_RECHECK);
    }
    let target = dead_letter_queue_of(record.queue);
    let message = if target.ends_with(".fifo") {
        // The copy's dedup id is the original's message id: parking it twice leaves one copy.
        let group = record.group_id.unwrap_or("parked").to_owned();
        OutgoingMessage::fifo(record.body.to_owned(), group, format!("parked:{}", record.message_id))
    } else {
        OutgoingMessage::delayed(record.body.to_owned(), Duration::ZERO)
    };
    match queue.send_batch(&target, vec![message]).await {
        Ok(()) => {
            crate::metrics::dead_letter_arrival(&target);
            RecordOutcome::Done
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not park the record; it is tried again");
            RecordOutcome::Retry(PARK_RETRY)
        }
    }
}

/// Runs `handle` over the batch in order and reports the failures.
pub async fn process_batch<'e, F, Fut>(event: &'e SqsEvent, queue: &dyn BatchQueue, mut handle: F) -> SqsBatchResponse
where
    F: FnMut(Record<'e>) -> Fut,
    Fut: Future<Output = RecordOutcome>,
{
    let mut failures = Vec::new();
    let mut blocked_groups: HashSet<&str> = HashSet::new();
    let mut group_backoff: std::collections::HashMap<&str, Duration> = Default::default();
    for message in &event.records {
        let record = record_of(message);
        let span = tracing::info_span!("record", message_id = record.message_id, queue = record.queue, receive_count = record.receive_count);
        let outcome = match record.group_id {
            Some(group) if blocked_groups.contains(group) => {
                tracing::debug!(parent: &span, "held back: an earlier record of its group failed");
                RecordOutcome::Retry(group_backoff.get(group).copied().unwrap_or_default())
            }
            _ => match handle(record.clone()).instrument(span.clone()).await {
                RecordOutcome::Park(why) => park(queue, &record, why).instrument(span.clone()).await,
                outcome => outcome,
            },
        };
        if let RecordOutcome::Retry(after) = outcome {
            crate::metrics::retry(record.queue);
            if let Some(group) = record.group_id {
                blocked_groups.insert(group);
                group_backoff.entry(group).or_insert(after);
            }
            if let Some(receipt) = message.receipt_handle.as_deref()
                && let Err(e) = queue.change_visibility(record.queue, receipt, after).await {
                    // The message comes back after the queue's visibility timeout instead.
                    tracing::warn!(parent: &span, error = %e, "could not set retry backoff");
                }
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = record.message_id.to_owned();
            failures.push(failure);
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

/// How a handler retries: exponential backoff from `base`, doubling per attempt up to `max`, with
/// jitter in `[¾·d, d]` (enough spread to break up a herd, never so much that the schedule's total
/// shrinks by more than a quarter), and how many provider attempts a notification gets before it
/// fails as `retries_exhausted`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
    /// Provider calls before giving up (senders only; the pipeline's handlers never give up on
    /// an accepted event: their queues' redrive policy is the only limit).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::DELIVERY
    }
}

impl RetryPolicy {
    /// A channel's provider: 10 attempts, the first retry after 30 s, doubling to 10 min: the
    /// last attempt comes 42 to 56 minutes after the first, so a 30-minute provider outage costs
    /// no notification.
    pub const DELIVERY: RetryPolicy = RetryPolicy { base: Duration::from_secs(30), max: Duration::from_secs(600), max_attempts: 10 };
    /// Live WebSocket frames: a frame that is minutes late is worth little (the notification stays
    /// in the user's inbox), so 5 attempts over about half a minute.
    pub const LIVE: RetryPolicy = RetryPolicy { base: Duration::from_secs(1), max: Duration::from_secs(15), max_attempts: 5 };
    /// Store and queue hiccups in the router, scheduler and dead-letter handler: from 1 s to 5 min.
    /// With the main queues' redrive after 50 receives, an accepted event stays on its queue
    /// through two and a half hours of trouble or more.
    pub const PIPELINE: RetryPolicy = RetryPolicy { base: Duration::from_secs(1), max: Duration::from_secs(300), max_attempts: u32::MAX };

    /// The default policy of a channel's sender.
    pub fn for_channel(channel: crate::domain::Channel) -> RetryPolicy {
        match channel {
            crate::domain::Channel::Websocket => Self::LIVE,
            _ => Self::DELIVERY,
        }
    }

    /// The delay before attempt `attempt + 1`, after `attempt` (≥ 1) failed.
    pub fn backoff(&self, attempt: u32) -> Duration {
        use rand::Rng;
        let ceiling = self.ceiling(attempt);
        let floor = ceiling * 3 / 4;
        let spread = (ceiling - floor).as_millis() as u64;
        floor + Duration::from_millis(rand::rng().random_range(0..=spread))
    }

    /// The longest delay after `attempt` failed: `base · 2^(attempt-1)`, at most `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.base.saturating_mul(exp).min(self.max)
    }

    /// The shortest time from the first attempt to the last (each delay at its floor).
    pub fn shortest_window(&self) -> Duration {
        (1..self.max_attempts.min(64)).map(|a| self.ceiling(a) * 3 / 4).sum()
    }

    /// Whether a notification that has had `attempts` provider calls may have another.
    pub fn may_retry(&self, attempts: u32) -> bool {
        attempts < self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{QueueError, QueueSender, VisibilityControl};
    use std::sync::Mutex;

    #[derive(Default)]
    struct RecordingVisibility(Mutex<Vec<(String, Duration)>>, Mutex<Vec<(String, OutgoingMessage)>>);

    #[async_trait::async_trait]
    impl QueueSender for RecordingVisibility {
        async fn send_batch(&self, queue: &str, messages: Vec<OutgoingMessage>) -> Result<(), QueueError> {
            self.1.lock().unwrap().extend(messages.into_iter().map(|m| (queue.to_owned(), m)));
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl VisibilityControl for RecordingVisibility {
        async fn change_visibility(&self, _queue: &str, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
            self.0.lock().unwrap().push((receipt.to_owned(), timeout));
            Ok(())
        }
    }

    fn message(id: &str, group: Option<&str>) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.receipt_handle = Some(format!("rh-{id}"));
        m.body = Some(id.into());
        m.event_source_arn = Some("arn:aws:sqs:eu-west-1:123456789012:send-email-fast.fifo".into());
        if let Some(g) = group {
            m.attributes.insert("MessageGroupId".into(), g.into());
        }
        m
    }

    #[tokio::test]
    async fn a_failure_holds_back_the_rest_of_its_group_only() {
        let mut event = SqsEvent::default();
        event.records = vec![message("a1", Some("A")), message("a2", Some("A")), message("b1", Some("B")), message("a3", Some("A"))];
        let visibility = RecordingVisibility::default();
        let seen = Mutex::new(Vec::new());
        let response = process_batch(&event, &visibility, |r| {
            seen.lock().unwrap().push(r.body.to_owned());
            assert_eq!(r.queue, "send-email-fast.fifo");
            let outcome = if r.body == "a2" { RecordOutcome::Retry(Duration::from_secs(4)) } else { RecordOutcome::Done };
            async move { outcome }
        })
        .await;
        let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(failed, ["a2", "a3"]);
        assert_eq!(*seen.lock().unwrap(), ["a1", "a2", "b1"]);
        assert_eq!(
            *visibility.0.lock().unwrap(),
            [("rh-a2".to_owned(), Duration::from_secs(4)), ("rh-a3".to_owned(), Duration::from_secs(4))]
        );
    }

    #[tokio::test]
    async fn a_parked_record_moves_to_the_dead_letter_queue_and_its_group_goes_on() {
        let mut event = SqsEvent::default();
        event.records = vec![message("a1", Some("A")), message("a2", Some("A"))];
        let queue = RecordingVisibility::default();
        let response = process_batch(&event, &queue, |r| {
            let outcome = if r.body == "a1" { RecordOutcome::Park(ParkReason::Unreadable) } else { RecordOutcome::Done };
            async move { outcome }
        })
        .await;
        assert!(response.batch_item_failures.is_empty(), "parked and done: both deleted from the main queue");
        let sent = queue.1.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "send-email-fast-dlq.fifo");
        assert_eq!(sent[0].1.body, "a1");
        assert_eq!(sent[0].1.group_id.as_deref(), Some("A"));
        assert_eq!(sent[0].1.dedup_id.as_deref(), Some("parked:a1"));
    }

    #[tokio::test]
    async fn a_record_parked_on_a_dead_letter_queue_stays_there_out_of_sight() {
        let mut event = SqsEvent::default();
        let mut m = message("d1", Some("A"));
        m.event_source_arn = Some("arn:aws:sqs:eu-west-1:123456789012:send-email-fast-dlq.fifo".into());
        event.records = vec![m];
        let queue = RecordingVisibility::default();
        let response = process_batch(&event, &queue, |_| async { RecordOutcome::Park(ParkReason::UnknownNotification) }).await;
        assert_eq!(response.batch_item_failures.len(), 1, "not deleted");
        assert!(queue.1.lock().unwrap().is_empty(), "not copied anywhere");
        assert_eq!(*queue.0.lock().unwrap(), [("rh-d1".to_owned(), PARKED_RECHECK)]);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy { base: Duration::from_secs(2), max: Duration::from_secs(10), max_attempts: 5 };
        for _ in 0..50 {
            let first = p.backoff(1);
            assert!(first >= Duration::from_millis(1500) && first <= Duration::from_secs(2), "{first:?}");
            let third = p.backoff(3);
            assert!(third >= Duration::from_secs(6) && third <= Duration::from_secs(8), "{third:?}");
            assert!(p.backoff(30) <= Duration::from_secs(10));
        }
    }

    #[test]
    fn the_default_delivery_budget_outlasts_a_thirty_minute_outage() {
        let window = RetryPolicy::DELIVERY.shortest_window();
        assert!(window > Duration::from_secs(40 * 60), "{window:?}");
        assert!(RetryPolicy::DELIVERY.may_retry(9));
        assert!(!RetryPolicy::DELIVERY.may_retry(10));
        assert_eq!(RetryPolicy::for_channel(crate::domain::Channel::Websocket), RetryPolicy::LIVE);
        // The pipeline's queues redrive after DEFAULT_MAX_RECEIVE_COUNT receives: that many
        // backoffs take well over an hour of continuous trouble.
        let receives = crate::topology::DEFAULT_MAX_RECEIVE_COUNT;
        let redrive_after = RetryPolicy { max_attempts: receives, ..RetryPolicy::PIPELINE }.shortest_window();
        assert!(redrive_after >= Duration::from_secs(150 * 60), "{redrive_after:?}");
        assert_eq!(RetryPolicy::for_channel(crate::domain::Channel::Email), RetryPolicy::DELIVERY);
    }
}
