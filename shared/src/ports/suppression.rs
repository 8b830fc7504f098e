//! Addresses not to send to any more (hard bounces, complaints, opt-outs, unreachable chat
//! recipients): the router skips them with reason `suppressed`.

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Page, StoreError};
use super::Address;
use crate::domain::{Channel, NotificationId, Tenant};

/// Why an address is suppressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Suppression {
    /// Whose list it is on: a suppression holds for its tenant's users only.
    #[serde(default = "Tenant::default_tenant", skip_serializing_if = "Tenant::is_default")]
    pub tenant: Tenant,
    pub channel: Channel,
    /// As the channel's address is written on a profile; compared by [`suppression_key`].
    pub address: String,
    pub reason: SuppressionReason,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// The notification whose delivery revealed it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<NotificationId>,
}

/// The form an address is compared in: e-mail addresses case-insensitively, everything else as
/// written, trimmed; prefixed with the channel (`email:olena@example.com`), and with the tenant
/// but for the default one (`acme#email:olena@example.com`).
pub fn suppression_key(tenant: &Tenant, channel: Channel, address: &str) -> String {
    let address = address.trim();
    let key = match channel {
        Channel::Email => format!("{channel}:{}", address.to_lowercase()),
        _ => format!("{channel}:{address}"),
    };
    if tenant.is_default() { key } else { format!("{tenant}#{key}") }
}

/// The address a delivery would go to, as suppressions name it: e-mail, SMS, WhatsApp,
/// Telegram and webhook addresses; `None` for deliveries without one address to suppress (push
/// tokens, live WebSocket connections). The senders suppress these addresses and the router
/// checks these same addresses: one list for both.
pub fn suppressible_address(address: &Address) -> Option<&str> {
    match address {
        Address::Email { to } => Some(to),
        Address::Phone { number } | Address::Whatsapp { number } => Some(number),
        Address::Telegram { chat_id } => Some(chat_id),
        Address::Webhook { url } => Some(url),
        Address::Push { .. } | Address::Connections => None,
    }
}

#[async_trait]
pub trait SuppressionStore: Send + Sync {
    /// Records (or replaces) the suppression of its channel and address.
    async fn suppress(&self, suppression: &Suppression) -> Result<(), StoreError>;
    async fn is_suppressed(&self, tenant: &Tenant, channel: Channel, address: &str) -> Result<bool, StoreError>;
    /// Every suppression of the tenant, newest first, paginated.
    async fn list_suppressions(&self, tenant: &Tenant, limit: usize, cursor: Option<&str>) -> Result<Page<Suppression>, StoreError>;
    /// Lifts it; answers whether there was one.
    async fn remove_suppression(&self, tenant: &Tenant, channel: Channel, address: &str) -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_case_for_email_only() {
        let default = Tenant::default_tenant();
        assert_eq!(suppression_key(&default, Channel::Email, " Olena@Example.COM "), "email:olena@example.com");
        assert_eq!(suppression_key(&default, Channel::Telegram, "Chat-1"), "telegram:Chat-1");
        assert_eq!(suppression_key(&default, Channel::Sms, "+380501234567 "), "sms:+380501234567");
        assert_eq!(suppression_key(&Tenant::parse("acme").unwrap(), Channel::Email, "A@x.io"), "acme#email:a@x.io");
    }

    #[test]
    fn push_and_websocket_have_no_address_to_suppress() {
        assert_eq!(suppressible_address(&Address::Email { to: "a@example.com".into() }), Some("a@example.com"));
        assert_eq!(suppressible_address(&Address::Whatsapp { number: "+1".into() }), Some("+1"));
        assert_eq!(suppressible_address(&Address::Telegram { chat_id: "42".into() }), Some("42"));
        assert_eq!(suppressible_address(&Address::Webhook { url: "https://h.example/x".into() }), Some("https://h.example/x"));
        assert_eq!(suppressible_address(&Address::Push { tokens: vec![] }), None);
        assert_eq!(suppressible_address(&Address::Connections), None);
    }
}
