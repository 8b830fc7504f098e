//! Delivery channels and priorities.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
    Push,
    Whatsapp,
    Telegram,
    Websocket,
    /// A signed HTTP POST (Standard Webhooks) to the recipient's `webhook_url`.
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Channel::Email,
        Channel::Sms,
        Channel::Push,
        Channel::Whatsapp,
        Channel::Telegram,
        Channel::Websocket,
        Channel::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
            Channel::Whatsapp => "whatsapp",
            Channel::Telegram => "telegram",
            Channel::Websocket => "websocket",
            Channel::Webhook => "webhook",
        }
    }

    /// The template parts a channel's message is made of, in the order they are rendered.
    pub fn template_parts(self) -> &'static [&'static str] {
        match self {
            Channel::Email => &["subject", "text", "html"],
            Channel::Sms | Channel::Whatsapp | Channel::Telegram => &["text"],
            Channel::Push | Channel::Websocket => &["title", "body"],
            // The event itself, as JSON: no template (see `catalog::WEBHOOK_PAYLOAD_PART`).
            Channel::Webhook => &[],
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                "unknown channel; expected one of email, sms, push, whatsapp, telegram, websocket, webhook".to_owned()
            })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
    Critical,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }

    pub fn lane(self) -> Lane {
        match self {
            Priority::Critical | Priority::High => Lane::Fast,
            Priority::Normal | Priority::Low => Lane::Bulk,
        }
    }

    /// Critical notifications (password resets, fraud alerts) are not held back by quiet hours.
    pub fn bypasses_quiet_hours(self) -> bool {
        self == Priority::Critical
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "low" => Ok(Priority::Low),
            "normal" => Ok(Priority::Normal),
            "high" => Ok(Priority::High),
            "critical" => Ok(Priority::Critical),
            _ => Err("unknown priority; expected one of critical, high, normal, low".to_owned()),
        }
    }
}

/// A priority lane is a separate set of queues with its own consumers, so a flood of
/// `normal`/`low` work never delays `critical`/`high` work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    Fast,
    Bulk,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Fast, Lane::Bulk];

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Fast => "fast",
            Lane::Bulk => "bulk",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip_through_their_names() {
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>().unwrap(), c);
        }
        assert!("fax".parse::<Channel>().is_err());
    }

    #[test]
    fn critical_and_high_share_the_fast_lane() {
        assert_eq!(Priority::Critical.lane(), Lane::Fast);
        assert_eq!(Priority::High.lane(), Lane::Fast);
        assert_eq!(Priority::Normal.lane(), Lane::Bulk);
        assert_eq!(Priority::Low.lane(), Lane::Bulk);
        assert!(Priority::Critical > Priority::High && Priority::Normal > Priority::Low);
    }
}
