//! The outside world a notification is delivered to: providers per channel, and live
//! WebSocket connections (API Gateway Management API on AWS).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{Channel, EventId, NotificationId, Priority, UserId};

/// Where one message goes, by channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Address {
    Email { to: String },
    Phone { number: String },
    Push { tokens: Vec<crate::domain::profile::PushToken> },
    Whatsapp { number: String },
    Telegram { chat_id: String },
    /// WebSocket messages go to the user's live connections, looked up at send time.
    Connections,
    Webhook { url: String },
}

/// A message rendered for its channel: `parts` holds the channel's template parts
/// (`subject`/`text`/`html` for email, `text` for SMS and chat, `title`/`body` for push and WebSocket).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RenderedMessage {
    pub channel: Channel,
    pub locale: String,
    pub parts: std::collections::BTreeMap<String, String>,
}

/// Extra email headers travel with the rendered message as parts named `header:<Name>` (e.g.
/// `header:List-Unsubscribe`): no template part has such a name, senders that know headers (SES,
/// SendGrid) send them, the others ignore them.
pub const HEADER_PART_PREFIX: &str = "header:";

impl RenderedMessage {
    pub fn part(&self, name: &str) -> &str {
        self.parts.get(name).map(String::as_str).unwrap_or("")
    }

    /// The extra headers to send, as (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.parts.iter().filter_map(|(k, v)| k.strip_prefix(HEADER_PART_PREFIX).map(|name| (name, v.as_str())))
    }

    /// The template parts alone, without the headers.
    pub fn content_parts(&self) -> impl Iterator<Item = (&String, &String)> {
        self.parts.iter().filter(|(k, _)| !k.starts_with(HEADER_PART_PREFIX))
    }

    /// Adds (or replaces) a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.parts.insert(format!("{HEADER_PART_PREFIX}{name}"), value.into());
        self
    }
}

/// One message handed to a provider.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery<'a> {
    pub notification_id: &'a NotificationId,
    pub event_id: &'a EventId,
    pub event_type: &'a str,
    pub user_id: &'a UserId,
    pub priority: Priority,
    pub address: &'a Address,
    pub message: &'a RenderedMessage,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth retrying: throttling, timeouts, provider 5xx.
    #[error("transient provider error: {}", crate::redact::redact(.0))]
    Transient(String),
    /// Retrying cannot help: bad address, rejected content, suppressed recipient.
    #[error("provider rejected the message: {}", crate::redact::redact(.0))]
    Permanent(String),
    /// The provider asks us to slow down (HTTP 429, SES `TooManyRequests`, SNS `Throttled`):
    /// wait `retry_after` when it says how long. Not a failed attempt.
    #[error("throttled by the provider")]
    Throttled { retry_after: Option<std::time::Duration> },
    /// Nobody to deliver to right now (a WebSocket user with no live connection): skipped, not failed.
    #[error("recipient unreachable: {}", crate::redact::redact(.0))]
    Unreachable(String),
}

/// A provider's acceptance of a message: which provider took it (with several providers per
/// channel, the one that delivered) and its id for the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderReceipt {
    pub provider: String,
    pub message_id: String,
}

impl ProviderReceipt {
    pub fn new(provider: impl Into<String>, message_id: impl Into<String>) -> Self {
        Self { provider: provider.into(), message_id: message_id.into() }
    }
}

#[async_trait]
pub trait ChannelSender: Send + Sync {
    /// Hands one message to the provider; answers which provider accepted it, and its id.
    async fn send(&self, delivery: Delivery<'_>) -> Result<ProviderReceipt, SendError>;
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PostError {
    /// The connection is closed (API Gateway's `GoneException`, HTTP 410).
    #[error("connection is gone")]
    Gone,
    #[error("posting to the connection failed: {0}")]
    Failed(String),
}

#[async_trait]
pub trait ConnectionPoster: Send + Sync {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError>;
}
