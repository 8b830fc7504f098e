//! Amazon SQS: `SqsQueue` implements the queue ports. Logical queue names map to queue URLs
//! through a [`QueueDirectory`] (from the environment on Lambda; from `CreateQueue` in tests).

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageSystemAttributeName, SendMessageBatchRequestEntry};
use std::collections::HashMap;
use std::time::Duration;

use crate::ports::queue::{MAX_BATCH, MAX_DELAY, MAX_MESSAGE_BYTES, MAX_VISIBILITY};
use crate::ports::{OutgoingMessage, QueueError, QueueReceiver, QueueSender, ReceivedMessage, VisibilityControl};

/// Logical queue name → queue URL.
#[derive(Clone, Debug, Default)]
pub struct QueueDirectory {
    urls: HashMap<String, String>,
}

impl QueueDirectory {
    pub fn new(urls: HashMap<String, String>) -> Self {
        Self { urls }
    }

    /// Every queue of the platform's topology at `prefix` + logical name, the way
    /// `template.yaml` names them (`NOTIFY_QUEUE_URL_PREFIX`).
    pub fn from_prefix(prefix: &str) -> Self {
        let settings = crate::topology::TopologySettings::default();
        let urls = crate::topology::all_queues(&settings).into_iter().map(|q| (q.name.clone(), format!("{prefix}{}", q.name))).collect();
        Self { urls }
    }

    pub fn insert(&mut self, name: impl Into<String>, url: impl Into<String>) {
        self.urls.insert(name.into(), url.into());
    }

    /// The URL of `queue`, which may be a logical name or the physical name found in an
    /// event source ARN (the stack may prefix names: `notify-prod-send-email-fast.fifo`).
    pub fn url(&self, queue: &str) -> Result<&str, QueueError> {
        if let Some(url) = self.urls.get(queue) {
            return Ok(url);
        }
        self.urls
            .values()
            .find(|url| url.rsplit('/').next() == Some(queue))
            .map(String::as_str)
            .ok_or_else(|| QueueError::UnknownQueue(queue.to_owned()))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.urls.keys().map(String::as_str)
    }
}

#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    directory: QueueDirectory,
}

impl SqsQueue {
    pub fn new(client: Client, directory: QueueDirectory) -> Self {
        Self { client, directory }
    }
}

fn service_error<E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static>(e: aws_sdk_sqs::error::SdkError<E>) -> QueueError {
    use aws_sdk_sqs::error::ProvideErrorMetadata;
    let code = e.code().unwrap_or("").to_owned();
    let message = e.message().unwrap_or("").to_owned();
    match code.as_str() {
        "AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist" => QueueError::UnknownQueue(message),
        "ReceiptHandleIsInvalid" | "InvalidParameterValue" if message.contains("receipt handle") || code == "ReceiptHandleIsInvalid" => {
            QueueError::StaleReceipt
        }
        "MessageNotInflight" => QueueError::StaleReceipt,
        "InvalidParameterValue" | "MissingParameter" | "InvalidMessageContents" | "BatchRequestTooLong" | "AWS.SimpleQueueService.BatchRequestTooLong" => {
            QueueError::Invalid(format!("{code}: {message}"))
        }
        "" => QueueError::Unavailable(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()),
        _ => QueueError::Unavailable(format!("{code}: {message}")),
    }
}

fn whole_seconds_up(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.min(i32::MAX as u64) as i32
}

/// Consecutive runs of at most [`MAX_BATCH`] messages and [`MAX_MESSAGE_BYTES`] of bodies: one
/// `SendMessageBatch` each (SQS refuses a larger batch as a whole).
fn batches(messages: &[OutgoingMessage]) -> Vec<&[OutgoingMessage]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, m) in messages.iter().enumerate() {
        if i - start == MAX_BATCH || (i > start && bytes + m.body.len() > MAX_MESSAGE_BYTES) {
            out.push(&messages[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += m.body.len();
    }
    if start < messages.len() {
        out.push(&messages[start..]);
    }
    out
}

#[async_trait]
impl QueueSender for SqsQueue {
    async fn send_batch(&self, queue: &str, messages: Vec<OutgoingMessage>) -> Result<(), QueueError> {
        let url = self.directory.url(queue)?;
        let fifo = url.ends_with(".fifo");
        // What SQS would refuse is refused before anything is sent. The size is checked here
        // because SQS itself enforces only the queue's MaximumMessageSize (1 MiB by default).
        for m in &messages {
            if m.body.len() > MAX_MESSAGE_BYTES {
                return Err(QueueError::Invalid(format!("a message body is at most {MAX_MESSAGE_BYTES} bytes, not {}", m.body.len())));
            }
            if m.delay > MAX_DELAY {
                return Err(QueueError::Invalid("delay is at most 15 minutes".into()));
            }
            if fifo && !m.delay.is_zero() {
                return Err(QueueError::Invalid("FIFO queues take no per-message delay".into()));
            }
        }
        for chunk in batches(&messages) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, m) in chunk.iter().enumerate() {
                let mut entry = SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(&m.body);
                if fifo {
                    entry = entry.set_message_group_id(m.group_id.clone()).set_message_deduplication_id(m.dedup_id.clone());
                } else if !m.delay.is_zero() {
                    entry = entry.delay_seconds(whole_seconds_up(m.delay));
                }
                entries.push(entry.build().map_err(|e| QueueError::Invalid(e.to_string()))?);
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(service_error)?;
            if let Some(failed) = out.failed().first() {
                let detail = format!("{}: {}", failed.code(), failed.message().unwrap_or_default());
                return Err(if failed.sender_fault() { QueueError::Invalid(detail) } else { QueueError::Unavailable(detail) });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl VisibilityControl for SqsQueue {
    async fn change_visibility(&self, queue: &str, receipt_handle: &str, timeout: Duration) -> Result<(), QueueError> {
        if timeout > MAX_VISIBILITY {
            return Err(QueueError::Invalid("visibility timeout is at most 12 hours".into()));
        }
        self.client
            .change_message_visibility()
            .queue_url(self.directory.url(queue)?)
            .receipt_handle(receipt_handle)
            .visibility_timeout(whole_seconds_up(timeout))
            .send()
            .await
            .map_err(service_error)?;
        Ok(())
    }
}

#[async_trait]
impl QueueReceiver for SqsQueue {
    async fn receive(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(self.directory.url(queue)?)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(service_error)?;
        Ok(out
            .messages()
            .iter()
            .map(|m| {
                let attr = |name: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&name)).cloned();
                ReceivedMessage {
                    message_id: m.message_id().unwrap_or_default().to_owned(),
                    receipt_handle: m.receipt_handle().unwrap_or_default().to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    group_id: attr(MessageSystemAttributeName::MessageGroupId),
                    dedup_id: attr(MessageSystemAttributeName::MessageDeduplicationId),
                    receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount).and_then(|c| c.parse().ok()).unwrap_or(1),
                    sent_at_millis: attr(MessageSystemAttributeName::SentTimestamp).and_then(|c| c.parse().ok()).unwrap_or_default(),
                }
            })
            .collect())
    }

    async fn delete(&self, queue: &str, receipt_handle: &str) -> Result<(), QueueError> {
        match self.client.delete_message().queue_url(self.directory.url(queue)?).receipt_handle(receipt_handle).send().await {
            Ok(_) => Ok(()),
            Err(e) => match service_error(e) {
                // SQS answers a stale receipt of a deleted message like this; nothing is left to do.
                QueueError::StaleReceipt => Ok(()),
                other => Err(other),
            },
        }
    }

    /// One `DeleteMessageBatch` per ten handles, as Lambda's event source mappings delete.
    async fn delete_batch(&self, queue: &str, receipt_handles: &[String]) -> Result<(), QueueError> {
        let url = self.directory.url(queue)?;
        for chunk in receipt_handles.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                        .map_err(|e| QueueError::Invalid(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self.client.delete_message_batch().queue_url(url).set_entries(Some(entries)).send().await.map_err(service_error)?;
            // A stale receipt (the message was deleted or received again) leaves nothing to do.
            if let Some(failed) = out.failed().iter().find(|f| f.code() != "ReceiptHandleIsInvalid") {
                return Err(QueueError::Unavailable(format!("{}: {}", failed.code(), failed.message().unwrap_or_default())));
            }
        }
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<usize, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(self.directory.url(queue)?)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(service_error)?;
        Ok(out
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(messages: &[OutgoingMessage]) -> Vec<Vec<usize>> {
        batches(messages).iter().map(|b| b.iter().map(|m| m.body.len()).collect()).collect()
    }

    fn of(len: usize) -> OutgoingMessage {
        OutgoingMessage::delayed("x".repeat(len), Duration::ZERO)
    }

    #[test]
    fn batches_hold_ten_messages_and_max_message_bytes_at_most() {
        assert!(batches(&[]).is_empty());
        assert_eq!(sizes(&vec![of(1); 25]), [vec![1; 10], vec![1; 10], vec![1; 5]]);
        let big = MAX_MESSAGE_BYTES / 2;
        assert_eq!(sizes(&[of(big), of(big), of(1), of(MAX_MESSAGE_BYTES), of(1)]), [
            vec![big, big],
            vec![1],
            vec![MAX_MESSAGE_BYTES],
            vec![1]
        ]);
    }
}
