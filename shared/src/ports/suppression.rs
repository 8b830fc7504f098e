//! Addresses not to send to any more (hard bounces, complaints, opt-outs, unreachable chat
//! recipients): the router skips them with reason `suppressed`.

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Page, StoreError};
use crate::domain::{Channel, NotificationId};

/// Why an address is suppressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    /// SES: a permanent bounce.
    HardBounce,
    /// SES: the recipient marked a message as spam.
    Complaint,
    /// SNS SMS or Twilio: the number opted out (STOP).
    OptedOut,
    /// A chat API's permanent "cannot reach" (bot blocked, number not on WhatsApp).
    Unreachable,
}

impl SuppressionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::HardBounce => "hard_bounce",
            SuppressionReason::Complaint => "complaint",
            SuppressionReason::OptedOut => "opted_out",
            SuppressionReason::Unreachable => "unreachable",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    pub channel: Channel,
    /// As the channel's address is written on a profile; compared by [`suppression_key`].
    pub address: String,
    pub reason: SuppressionReason,
    pub created_at: Timestamp,
    /// The notification whose delivery revealed it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<NotificationId>,
}

/// The form an address is compared in: e-mail addresses case-insensitively, everything else as
/// written, trimmed; prefixed with the channel (`email:olena@example.com`).
pub fn suppression_key(channel: Channel, address: &str) -> String {
    let address = address.trim();
    match channel {
        Channel::Email => format!("{channel}:{}", address.to_lowercase()),
        _ => format!("{channel}:{address}"),
    }
}

#[async_trait]
pub trait SuppressionStore: Send + Sync {
    /// Records (or replaces) the suppression of its channel and address.
    async fn suppress(&self, suppression: &Suppression) -> Result<(), StoreError>;
    async fn is_suppressed(&self, channel: Channel, address: &str) -> Result<bool, StoreError>;
    /// Every suppression, newest first, paginated.
    async fn list_suppressions(&self, limit: usize, cursor: Option<&str>) -> Result<Page<Suppression>, StoreError>;
    /// Lifts it; answers whether there was one.
    async fn remove_suppression(&self, channel: Channel, address: &str) -> Result<bool, StoreError>;
}
