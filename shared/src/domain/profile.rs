//! The recipient: where they can be reached, in which language and time zone, and what they
//! want to hear about.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::channel::Channel;
use super::problem::FieldError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PushToken {
    /// `fcm` (Android) or `apns` (iOS).
    pub platform: String,
    pub token: String,
}

/// `PUT /v1/users/{user_id}`: every field optional; an absent address means the channel is
/// skipped with `no_address`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "email": "olena@example.com", "phone": "+380501234567", "locale": "uk", "timezone": "Europe/Kyiv",
    "push_tokens": [{"platform": "fcm", "token": "fcm-demo-token"}], "telegram_chat_id": "123456789",
    "whatsapp": "+380501234567", "webhook_url": "https://hooks.example.com/notify"
}))]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// E.164, e.g. `+380501234567`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// BCP 47 language tag, e.g. `uk` or `en-GB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// IANA time zone, e.g. `Europe/Kyiv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub push_tokens: Vec<PushToken>,
    /// WhatsApp number, E.164.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whatsapp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telegram_chat_id: Option<String>,
    /// Where the `webhook` channel POSTs (signed per Standard Webhooks): an `https://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else { return false };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// An absolute `http(s)` URL with a host, at most 2048 characters. Whether plain `http` and
/// private addresses are allowed is the webhook sender's decision at send time (refused on AWS).
pub fn is_webhook_url(s: &str) -> bool {
    s.len() <= 2048
        && reqwest::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some_and(|h| !h.is_empty()))
}

pub fn is_locale_tag(s: &str) -> bool {
    let mut parts = s.split(['-', '_']);
    let Some(lang) = parts.next() else { return false };
    (2..=3).contains(&lang.len())
        && lang.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

pub fn is_timezone(s: &str) -> bool {
    jiff::tz::TimeZone::get(s).is_ok()
}

fn is_email(s: &str) -> bool {
    // The shape SES accepts: one @, a non-empty local part, a dotted domain, no spaces.
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    !local.is_empty()
        && local.len() <= 64
        && s.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
}

/// The most devices a profile holds: each costs provider calls on every push.
pub const MAX_PUSH_TOKENS: usize = 10;

impl Profile {
    /// Every failing field, as JSON Pointers into the request body.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(email) = &self.email
            && !is_email(email) {
                errors.push(FieldError::new("/email", "must be an email address"));
            }
        if let Some(phone) = &self.phone
            && !is_e164(phone) {
                errors.push(FieldError::new("/phone", "must be an E.164 number such as +380501234567"));
            }
        if let Some(whatsapp) = &self.whatsapp
            && !is_e164(whatsapp) {
                errors.push(FieldError::new("/whatsapp", "must be an E.164 number such as +380501234567"));
            }
        if let Some(locale) = &self.locale
            && !is_locale_tag(locale) {
                errors.push(FieldError::new("/locale", "must be a language tag such as en or uk-UA"));
            }
        if let Some(tz) = &self.timezone
            && !is_timezone(tz) {
                errors.push(FieldError::new("/timezone", "must be an IANA time zone such as Europe/Kyiv"));
            }
        if let Some(chat) = &self.telegram_chat_id
            && (chat.is_empty() || chat.len() > 64) {
                errors.push(FieldError::new("/telegram_chat_id", "must be 1..64 characters"));
            }
        if let Some(url) = &self.webhook_url
            && !is_webhook_url(url) {
                errors.push(FieldError::new("/webhook_url", "must be an http(s) URL of at most 2048 characters (https on AWS)"));
            }
        if self.push_tokens.len() > MAX_PUSH_TOKENS {
            errors.push(FieldError::new("/push_tokens", format!("at most {MAX_PUSH_TOKENS} devices")));
        }
        for (i, t) in self.push_tokens.iter().enumerate() {
            if !matches!(t.platform.as_str(), "fcm" | "apns") {
                errors.push(FieldError::new(format!("/push_tokens/{i}/platform"), "must be fcm or apns"));
            }
            if t.token.is_empty() || t.token.len() > 4096 {
                errors.push(FieldError::new(format!("/push_tokens/{i}/token"), "must be 1..4096 characters"));
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Whether the profile holds somewhere to send over `channel` (websocket needs none: it goes
    /// to whatever connections are live).
    pub fn has_address_for(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.email.is_some(),
            Channel::Sms => self.phone.is_some(),
            Channel::Push => !self.push_tokens.is_empty(),
            Channel::Whatsapp => self.whatsapp.is_some(),
            Channel::Telegram => self.telegram_chat_id.is_some(),
            Channel::Websocket => true,
            Channel::Webhook => self.webhook_url.is_some(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// Local wall-clock time `HH:MM` at which quiet hours begin.
    pub start: String,
    /// Local wall-clock time `HH:MM` at which they end (may be earlier than `start`: overnight).
    pub end: String,
    /// IANA time zone; when absent, the profile's time zone, else UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// `PUT /v1/users/{user_id}/preferences`. A channel or category that is not listed is opted in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "channels": {"sms": true}, "categories": {"orders": {"push": false}},
    "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Kyiv"}
}))]
pub struct Preferences {
    /// `{"sms": false}` opts out of SMS for everything.
    #[serde(default)]
    pub channels: BTreeMap<Channel, bool>,
    /// `{"marketing": {"email": false}}` opts out of email for event types of that category;
    /// `{"marketing": {"*": false}}` of every channel.
    #[serde(default)]
    pub categories: BTreeMap<String, BTreeMap<String, bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
}

/// Why a channel is opted out, if it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptOut {
    Channel,
    Category,
}

pub fn parse_hh_mm(s: &str) -> Option<jiff::civil::Time> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    jiff::civil::Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

impl Preferences {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        for (category, channels) in &self.categories {
            for key in channels.keys() {
                if key != "*" && key.parse::<Channel>().is_err() {
                    errors.push(FieldError::new(
                        format!("/categories/{category}/{key}"),
                        "must be a channel name or *",
                    ));
                }
            }
        }
        if let Some(q) = &self.quiet_hours {
            if parse_hh_mm(&q.start).is_none() {
                errors.push(FieldError::new("/quiet_hours/start", "must be a time HH:MM"));
            }
            if parse_hh_mm(&q.end).is_none() {
                errors.push(FieldError::new("/quiet_hours/end", "must be a time HH:MM"));
            }
            if q.start == q.end {
                errors.push(FieldError::new("/quiet_hours/end", "must differ from start"));
            }
            if let Some(tz) = &q.timezone
                && !is_timezone(tz) {
                    errors.push(FieldError::new("/quiet_hours/timezone", "must be an IANA time zone such as Europe/Kyiv"));
                }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    pub fn opt_out(&self, channel: Channel, category: Option<&str>) -> Option<OptOut> {
        if self.channels.get(&channel) == Some(&false) {
            return Some(OptOut::Channel);
        }
        let per_category = category.and_then(|c| self.categories.get(c))?;
        let said = per_category.get(channel.as_str()).or_else(|| per_category.get("*"));
        (said == Some(&false)).then_some(OptOut::Category)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_holds_at_most_ten_devices() {
        let device = |i: usize| PushToken { platform: "fcm".into(), token: format!("t{i}") };
        let ten = Profile { push_tokens: (0..MAX_PUSH_TOKENS).map(device).collect(), ..Profile::default() };
        assert!(ten.validate().is_ok());
        let eleven = Profile { push_tokens: (0..=MAX_PUSH_TOKENS).map(device).collect(), ..Profile::default() };
        let errors = eleven.validate().unwrap_err();
        assert_eq!(errors.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), ["/push_tokens"]);
    }

    #[test]
    fn e164_numbers() {
        assert!(is_e164("+380501234567"));
        assert!(is_e164("+14155550100"));
        assert!(!is_e164("380501234567"));
        assert!(!is_e164("+0123"));
        assert!(!is_e164("+1234567890123456"));
        assert!(!is_e164("+38 050"));
    }

    #[test]
    fn profile_validation_names_every_bad_field() {
        let p = Profile {
            email: Some("not-an-email".into()),
            phone: Some("12345".into()),
            locale: Some("ukrainian!".into()),
            timezone: Some("Mars/Olympus".into()),
            push_tokens: vec![PushToken { platform: "blackberry".into(), token: "t".into() }],
            ..Profile::default()
        };
        let paths: Vec<_> = p.validate().unwrap_err().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["/email", "/phone", "/locale", "/timezone", "/push_tokens/0/platform"]);
    }

    #[test]
    fn a_good_profile_validates() {
        let p = Profile {
            email: Some("olena@example.com".into()),
            phone: Some("+380501234567".into()),
            locale: Some("uk-UA".into()),
            timezone: Some("Europe/Kyiv".into()),
            ..Profile::default()
        };
        assert_eq!(p.validate(), Ok(()));
        assert!(p.has_address_for(Channel::Email));
        assert!(!p.has_address_for(Channel::Push));
        assert!(p.has_address_for(Channel::Websocket));
    }

    #[test]
    fn opt_outs_by_channel_and_category() {
        let prefs: Preferences = serde_json::from_value(serde_json::json!({
            "channels": {"sms": false, "email": true},
            "categories": {"marketing": {"*": false}, "billing": {"push": false}}
        }))
        .unwrap();
        assert_eq!(prefs.opt_out(Channel::Sms, None), Some(OptOut::Channel));
        assert_eq!(prefs.opt_out(Channel::Email, None), None);
        assert_eq!(prefs.opt_out(Channel::Email, Some("marketing")), Some(OptOut::Category));
        assert_eq!(prefs.opt_out(Channel::Push, Some("billing")), Some(OptOut::Category));
        assert_eq!(prefs.opt_out(Channel::Email, Some("billing")), None);
    }

    #[test]
    fn unknown_preference_fields_are_rejected() {
        let r: Result<Preferences, _> = serde_json::from_value(serde_json::json!({"chanels": {}}));
        assert!(r.is_err());
    }
}
