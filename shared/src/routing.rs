//! Which channels an event goes out on, and why the others do not: a pure decision over the
//! event, its type and the recipient's profile and preferences.

use crate::catalog::EventType;
use crate::domain::notification::reason;
use crate::domain::profile::OptOut;
use crate::domain::{Channel, Event, Preferences, Profile};
use crate::ports::Address;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Deliver(Address),
    /// Not attempted, with the reason recorded on the notification.
    Skip(&'static str),
}

/// The channels asked for: the event's override, else the event type's defaults.
pub fn requested_channels(event: &Event, event_type: &EventType) -> Vec<Channel> {
    event.channels.clone().unwrap_or_else(|| event_type.channels.clone())
}

/// Where `channel` reaches the recipient, if anywhere.
pub fn address_for(channel: Channel, profile: &Profile) -> Option<Address> {
    match channel {
        Channel::Email => profile.email.clone().map(|to| Address::Email { to }),
        Channel::Sms => profile.phone.clone().map(|number| Address::Phone { number }),
        // Capped as profiles are checked, should an older profile hold more.
        Channel::Push => (!profile.push_tokens.is_empty())
            .then(|| Address::Push { tokens: profile.push_tokens.iter().take(crate::domain::profile::MAX_PUSH_TOKENS).cloned().collect() }),
        Channel::Whatsapp => profile.whatsapp.clone().map(|number| Address::Whatsapp { number }),
        Channel::Telegram => profile.telegram_chat_id.clone().map(|chat_id| Address::Telegram { chat_id }),
        Channel::Websocket => Some(Address::Connections),
        Channel::Webhook => profile.webhook_url.clone().map(|url| Address::Webhook { url }),
    }
}

/// One decision per channel: opted-out channels and channels without an address are skipped.
pub fn decide(channel: Channel, category: Option<&str>, profile: &Profile, preferences: &Preferences) -> Decision {
    match preferences.opt_out(channel, category) {
        Some(OptOut::Channel) => return Decision::Skip(reason::OPTED_OUT),
        Some(OptOut::Category) => return Decision::Skip(reason::OPTED_OUT_CATEGORY),
        None => {}
    }
    match address_for(channel, profile) {
        Some(address) => Decision::Deliver(address),
        None => Decision::Skip(reason::NO_ADDRESS),
    }
}

/// The locales to try for this recipient, most wanted first: the event's override, then the profile's.
pub fn wanted_locales<'a>(event: &'a Event, profile: &'a Profile) -> Vec<&'a str> {
    event.locale.as_deref().into_iter().chain(profile.locale.as_deref()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::profile::PushToken;
    use serde_json::json;

    fn profile() -> Profile {
        Profile {
            email: Some("a@example.com".into()),
            push_tokens: vec![PushToken { platform: "fcm".into(), token: "t".into() }],
            ..Profile::default()
        }
    }

    #[test]
    fn deliver_where_an_address_exists_skip_where_none() {
        let prefs = Preferences::default();
        assert!(matches!(decide(Channel::Email, None, &profile(), &prefs), Decision::Deliver(Address::Email { .. })));
        assert_eq!(decide(Channel::Sms, None, &profile(), &prefs), Decision::Skip(reason::NO_ADDRESS));
        assert_eq!(decide(Channel::Websocket, None, &Profile::default(), &prefs), Decision::Deliver(Address::Connections));
    }

    #[test]
    fn opt_outs_win_over_addresses() {
        let prefs: Preferences = serde_json::from_value(json!({
            "channels": {"email": false}, "categories": {"orders": {"push": false}}
        }))
        .unwrap();
        assert_eq!(decide(Channel::Email, None, &profile(), &prefs), Decision::Skip(reason::OPTED_OUT));
        assert_eq!(decide(Channel::Push, Some("orders"), &profile(), &prefs), Decision::Skip(reason::OPTED_OUT_CATEGORY));
        assert!(matches!(decide(Channel::Push, Some("account"), &profile(), &prefs), Decision::Deliver(_)));
    }
}
