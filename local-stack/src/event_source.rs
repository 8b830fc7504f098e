//! Plays the part of Lambda's SQS event source mappings: long-poll a queue, hand the function a
//! real `SqsEvent` batch of up to ten records, delete what succeeded and leave what failed to the
//! queue (its visibility timeout brings it back; its redrive policy moves it to the DLQ).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::BoxFuture;
use shared::ports::{QueueReceiver, ReceivedMessage};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// A function's batch handler, as its Lambda `main.rs` would register it.
pub type BatchHandler = Arc<dyn Fn(SqsEvent) -> BoxFuture<'static, SqsBatchResponse> + Send + Sync>;

pub const LOCAL_REGION: &str = "local";
pub const LOCAL_ACCOUNT: &str = "000000000000";

pub fn queue_arn(queue: &str) -> String {
    format!("arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{queue}")
}

/// The record Lambda would build from a received message.
pub fn sqs_record(queue: &str, m: &ReceivedMessage) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = Some(m.message_id.clone());
    record.receipt_handle = Some(m.receipt_handle.clone());
    record.body = Some(m.body.clone());
    record.event_source = Some("aws:sqs".into());
    record.event_source_arn = Some(queue_arn(queue));
    record.aws_region = Some(LOCAL_REGION.into());
    let attrs = &mut record.attributes;
    attrs.insert("ApproximateReceiveCount".into(), m.receive_count.to_string());
    attrs.insert("SentTimestamp".into(), m.sent_at_millis.to_string());
    if let Some(g) = &m.group_id {
        attrs.insert("MessageGroupId".into(), g.clone());
    }
    if let Some(d) = &m.dedup_id {
        attrs.insert("MessageDeduplicationId".into(), d.clone());
    }
    record
}

/// One mapping: `queue` → `handler`, with `concurrency` pollers (Lambda scales a FIFO mapping by
/// message group; the queue itself keeps each group in order).
pub struct Mapping {
    pub queue: String,
    pub handler: BatchHandler,
    pub concurrency: usize,
}

/// What the mappings of one stack have seen: records handed back for a retry, and messages
/// that arrived on a dead-letter queue.
#[derive(Clone, Default)]
pub struct PollStats {
    retries: Arc<AtomicU64>,
    dead_letter_arrivals: Arc<AtomicU64>,
    batches: Arc<AtomicU64>,
    /// Queue-name prefixes whose pollers wait (a measurement lets a backlog build up, so that
    /// batches are full as under load).
    held: Arc<std::sync::RwLock<Vec<String>>>,
}

impl PollStats {
    /// Records reported failed (retried later, with backoff).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Messages received for the first time on a dead-letter queue.
    pub fn dead_letter_arrivals(&self) -> u64 {
        self.dead_letter_arrivals.load(Ordering::Relaxed)
    }

    /// Holds the pollers of every queue whose name starts with one of `prefixes` (replacing
    /// what was held before; none: every poller runs).
    pub fn hold(&self, prefixes: &[&str]) {
        *self.held.write().unwrap_or_else(|e| e.into_inner()) = prefixes.iter().map(|p| (*p).to_owned()).collect();
    }

    fn is_held(&self, queue: &str) -> bool {
        self.held.read().unwrap_or_else(|e| e.into_inner()).iter().any(|p| queue.starts_with(p.as_str()))
    }

    /// Batches handed to handlers so far.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
}

pub fn spawn(mapping: Mapping, receiver: Arc<dyn QueueReceiver>, stats: PollStats, shutdown: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..mapping.concurrency.max(1))
        .map(|_| {
            let queue = mapping.queue.clone();
            let handler = mapping.handler.clone();
            let receiver = receiver.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(poll(queue, handler, receiver, stats.clone(), shutdown))
        })
        .collect()
}

async fn poll(queue: String, handler: BatchHandler, receiver: Arc<dyn QueueReceiver>, stats: PollStats, mut shutdown: watch::Receiver<bool>) {
    let dead_letter = shared::topology::is_dead_letter_queue(&queue);
    loop {
        if *shutdown.borrow() {
            return;
        }
        if stats.is_held(&queue) {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(20)) => continue,
            }
        }
        let received = tokio::select! {
            _ = shutdown.changed() => return,
            r = receiver.receive(&queue, 10, Duration::from_secs(1)) => r,
        };
        let messages = match received {
            Ok(m) if m.is_empty() => continue,
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(queue, error = %e, "receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut event = SqsEvent::default();
        event.records = messages.iter().map(|m| sqs_record(&queue, m)).collect();
        if dead_letter {
            let arrivals = messages.iter().filter(|m| m.receive_count == 1).count() as u64;
            stats.dead_letter_arrivals.fetch_add(arrivals, Ordering::Relaxed);
        }
        let response = handler(event).await;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.retries.fetch_add(response.batch_item_failures.len() as u64, Ordering::Relaxed);
        let failed: HashSet<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        // One DeleteMessageBatch for the batch's successes, as Lambda's mapping deletes them.
        let done: Vec<String> = messages.iter().filter(|m| !failed.contains(m.message_id.as_str())).map(|m| m.receipt_handle.clone()).collect();
        if !done.is_empty()
            && let Err(e) = receiver.delete_batch(&queue, &done).await
        {
            tracing::warn!(queue, error = %e, "delete failed; the messages will be seen again");
        }
    }
}
