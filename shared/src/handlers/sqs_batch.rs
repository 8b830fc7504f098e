//! One SQS batch as a Lambda event source mapping delivers it: each record handled on its own
//! tracing span, failures reported per record (`ReportBatchItemFailures`), and on FIFO queues
//! every later record of a group that failed reported failed too, so order within the group holds.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;
use tracing::Instrument;

use crate::ports::VisibilityControl;

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Done (delivered, recorded as failed or skipped, or a duplicate): delete it.
    Done,
    /// Try again after this long (the message's visibility is set to it).
    Retry(Duration),
}

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

/// Runs `handle` over the batch in order and reports the failures.
pub async fn process_batch<'e, F, Fut>(event: &'e SqsEvent, visibility: &dyn VisibilityControl, mut handle: F) -> SqsBatchResponse
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
            _ => handle(record.clone()).instrument(span.clone()).await,
        };
        if let RecordOutcome::Retry(after) = outcome {
            crate::metrics::retry(record.queue);
            if let Some(group) = record.group_id {
                blocked_groups.insert(group);
                group_backoff.entry(group).or_insert(after);
            }
            if let Some(receipt) = message.receipt_handle.as_deref()
                && let Err(e) = visibility.change_visibility(record.queue, receipt, after).await {
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

/// Exponential backoff with full jitter over `[base·2^(n-1) / 2, base·2^(n-1)]`, capped at `max`.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { base: Duration::from_secs(2), max: Duration::from_secs(300) }
    }
}

impl RetryPolicy {
    pub fn backoff(&self, attempt: u32) -> Duration {
        use rand::Rng;
        let exp = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        let ceiling = self.base.saturating_mul(exp).min(self.max);
        let floor = ceiling / 2;
        if ceiling <= floor {
            return ceiling;
        }
        let spread = (ceiling - floor).as_millis() as u64;
        floor + Duration::from_millis(rand::rng().random_range(0..=spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::QueueError;
    use std::sync::Mutex;

    #[derive(Default)]
    struct RecordingVisibility(Mutex<Vec<(String, Duration)>>);

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

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy { base: Duration::from_secs(2), max: Duration::from_secs(10) };
        for _ in 0..50 {
            let first = p.backoff(1);
            assert!(first >= Duration::from_secs(1) && first <= Duration::from_secs(2));
            let third = p.backoff(3);
            assert!(third >= Duration::from_secs(4) && third <= Duration::from_secs(8));
            assert!(p.backoff(30) <= Duration::from_secs(10));
        }
    }
}
