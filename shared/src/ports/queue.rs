//! Message queues (SQS on AWS). Queues are named logically (`send-email-fast.fifo`); each adapter
//! maps a name to its own address.

use async_trait::async_trait;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    /// Required on FIFO queues: messages of one group are delivered in order, one batch at a time.
    pub group_id: Option<String>,
    /// FIFO queues drop a second message with the same id sent within five minutes.
    pub dedup_id: Option<String>,
    /// Standard queues only (SQS rejects per-message delay on FIFO queues); at most 15 minutes.
    pub delay: Duration,
}

impl OutgoingMessage {
    pub fn fifo(body: String, group_id: String, dedup_id: String) -> Self {
        Self { body, group_id: Some(group_id), dedup_id: Some(dedup_id), delay: Duration::ZERO }
    }

    pub fn delayed(body: String, delay: Duration) -> Self {
        Self { body, group_id: None, dedup_id: None, delay }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    /// Names this receipt of the message; deleting or changing visibility needs it.
    pub receipt_handle: String,
    pub body: String,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    /// How many times the message has been received, this receipt included.
    pub receive_count: u32,
    /// When the queue first accepted the message, in milliseconds since the Unix epoch.
    pub sent_at_millis: i64,
}

/// The longest per-message delay and the longest visibility timeout SQS accepts.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// SQS's cap on one message, and on one `SendMessageBatch`.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
pub const MAX_BATCH: usize = 10;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum QueueError {
    #[error("queue {0} does not exist")]
    UnknownQueue(String),
    /// The request breaks a rule of the queue (no group id on a FIFO queue, delay on a FIFO
    /// queue, oversized message …): retrying it cannot help.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The receipt handle is unknown or no longer current (the message was received again).
    #[error("receipt handle is not current")]
    StaleReceipt,
    #[error("queue service unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait QueueSender: Send + Sync {
    /// Sends up to [`MAX_BATCH`] messages; adapters split larger batches. Either every message
    /// is accepted or an error is returned (callers may resend: FIFO dedup ids make that safe).
    async fn send_batch(&self, queue: &str, messages: Vec<OutgoingMessage>) -> Result<(), QueueError>;
}

/// What a batch of records needs from its queue: push a record back for later (retry backoff),
/// and park one that can never be processed on the queue's dead-letter queue.
pub trait BatchQueue: QueueSender + VisibilityControl {}

impl<T: QueueSender + VisibilityControl + ?Sized> BatchQueue for T {}

/// What a handler may do to a message it was given: push it back for later (retry backoff).
#[async_trait]
pub trait VisibilityControl: Send + Sync {
    async fn change_visibility(
        &self,
        queue: &str,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), QueueError>;
}

/// What an event source mapping does: long-poll a batch, delete what was processed.
#[async_trait]
pub trait QueueReceiver: Send + Sync {
    /// Up to `max` messages (at most 10), waiting up to `wait` for the first one. Messages
    /// received more than the queue's `max_receive_count` times move to its dead-letter queue
    /// instead of being returned.
    async fn receive(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError>;

    async fn delete(&self, queue: &str, receipt_handle: &str) -> Result<(), QueueError>;

    /// Deletes up to [`MAX_BATCH`] received messages in one request where the adapter can (SQS
    /// `DeleteMessageBatch`, as Lambda's event source mappings do); one by one otherwise.
    async fn delete_batch(&self, queue: &str, receipt_handles: &[String]) -> Result<(), QueueError> {
        let mut failed = None;
        for handle in receipt_handles {
            if let Err(e) = self.delete(queue, handle).await {
                failed = Some(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Visible messages (ApproximateNumberOfMessages), for tests and the dashboard.
    async fn depth(&self, queue: &str) -> Result<usize, QueueError>;
}
