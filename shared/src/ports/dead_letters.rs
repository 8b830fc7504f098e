//! Dead letters: the jobs the pipeline gave up on, recorded when it gives up, so an operator can
//! list them and replay them through the API (`GET /v1/dead-letters`,
//! `POST /v1/dead-letters/replay`). SQS cannot list what it holds out of sight, so the record,
//! not the dead-letter queue, is what the API reads; it keeps the job's body to replay it.

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Page, StoreError};

/// Why a job was given up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// A send job came back from its dead-letter queue more often than its redrive budget: its
    /// notification was failed as `retries_exhausted`.
    RetriesExhausted,
    /// The body is not the job its queue carries.
    Unreadable,
    /// The job names a notification that does not exist.
    UnknownNotification,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::RetriesExhausted => "retries_exhausted",
            DeadLetterReason::Unreadable => "unreadable",
            DeadLetterReason::UnknownNotification => "unknown_notification",
        }
    }
}

/// One job given up on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// [`dead_letter_id`] of the queue and the job: the same job given up on twice is one record.
    pub id: String,
    /// The dead-letter queue it was taken from (`send-push-fast-dlq.fifo`).
    pub queue: String,
    /// What the job names, when it could be read. Plain strings, as stored: never re-parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub reason: DeadLetterReason,
    /// When it was first given up on (kept when the same job is recorded again).
    pub first_failure_at: Timestamp,
    pub last_failure_at: Timestamp,
    /// How many times the job reached a dead-letter queue.
    pub attempts: u32,
    /// The message group it had (FIFO queues), to replay it into the same group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// The message body, as received: what a replay sends again. Never logged, never listed.
    pub body: String,
}

/// The id of the dead letter of a job on `queue`: `dl_` and 32 hex digits of SHA-256 over the
/// queue and the job's identity (its notification, its event, else its whole body), so
/// redelivering or recording it again names the same record.
pub fn dead_letter_id(queue: &str, identity: &str) -> String {
    let digest = Sha256::digest(format!("{queue}\n{identity}").as_bytes());
    format!("dl_{}", &hex::encode(digest)[..32])
}

#[async_trait]
pub trait DeadLetterStore: Send + Sync {
    /// Records it; a record of the same id is replaced, keeping its `first_failure_at`.
    async fn record_dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError>;
    async fn get_dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError>;
    /// Every dead letter, or those of one dead-letter queue, newest first (by first failure),
    /// paginated like the other lists (`limit` clamped to 1..=100, an unreadable cursor answers
    /// an empty last page).
    async fn list_dead_letters(&self, queue: Option<&str>, limit: usize, cursor: Option<&str>) -> Result<Page<DeadLetter>, StoreError>;
    /// Removes it if it is still the one recorded at `last_failure_at` (a replayed job that was
    /// given up on again meanwhile is a new dead letter, kept); answers whether it removed one.
    async fn remove_dead_letter(&self, id: &str, last_failure_at: Timestamp) -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_per_queue_and_job() {
        let a = dead_letter_id("send-push-fast-dlq.fifo", "ntf_1");
        assert_eq!(a, dead_letter_id("send-push-fast-dlq.fifo", "ntf_1"));
        assert_ne!(a, dead_letter_id("send-push-bulk-dlq.fifo", "ntf_1"));
        assert_ne!(a, dead_letter_id("send-push-fast-dlq.fifo", "ntf_2"));
        assert!(a.starts_with("dl_") && a.len() == 35, "{a}");
        assert_eq!(serde_json::to_value(DeadLetterReason::UnknownNotification).unwrap(), "unknown_notification");
    }
}
