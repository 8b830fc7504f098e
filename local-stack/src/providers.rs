//! Each channel's provider in the local stack, composed the way a send function composes its own:
//! the first provider (the local outbox, or SES / SNS on the AWS backend, or a real HTTP API when
//! its settings are given), behind the injected faults; paced when a rate is set; failing over to
//! a second provider (SendGrid for email, Twilio for SMS) when one is configured; and recorded in
//! the send ledger whichever delivered.

use shared::adapters::http::client;
use shared::adapters::http::sendgrid::SendGridEmailSender;
use shared::adapters::http::telegram::TelegramSender;
use shared::adapters::http::twilio::{TwilioFrom, TwilioSmsSender};
use shared::adapters::http::webhook::{TargetPolicy, WebhookSender, WebhookSigner};
use shared::adapters::http::whatsapp::WhatsAppSender;
use shared::domain::Channel;
use shared::ports::{ChannelSender, Clock, RateLimiter};
use shared::providers::{ProviderLink, chain};
use std::collections::HashMap;
use std::sync::Arc;

use crate::config::HttpProviders;
use crate::faults::Faults;
use crate::ledger::SendLedger;

/// What every channel's composition needs.
pub struct Composition<'a> {
    pub http: &'a HttpProviders,
    pub faults: &'a Faults,
    pub ledger: &'a SendLedger,
    pub limiter: Arc<dyn RateLimiter>,
    /// Messages per second of each channel's first provider (none: unpaced).
    pub rates: &'a HashMap<Channel, u32>,
    pub clock: Arc<dyn Clock>,
}

/// A channel's first provider, replaced by its real HTTP API when configured; with its name.
fn first_provider(channel: Channel, default: Arc<dyn ChannelSender>, default_name: &str, http: &HttpProviders) -> anyhow::Result<(String, Arc<dyn ChannelSender>)> {
    let timeout = client::DEFAULT_TIMEOUT;
    Ok(match channel {
        Channel::Telegram if http.telegram.is_some() => {
            let t = http.telegram.as_ref().expect("checked");
            ("telegram".into(), Arc::new(TelegramSender::new(client::client(timeout), t.api_url.clone(), t.bot_token.clone())))
        }
        Channel::Whatsapp if http.whatsapp.is_some() => {
            let w = http.whatsapp.as_ref().expect("checked");
            let sender = WhatsAppSender::new(client::client(timeout), w.api_url.clone(), w.phone_number_id.clone(), w.access_token.clone());
            ("whatsapp".into(), Arc::new(sender))
        }
        Channel::Webhook if http.webhook_secret.is_some() => {
            let signer = WebhookSigner::from_stored(http.webhook_secret.as_deref().expect("checked"))
                .map_err(|e| anyhow::anyhow!("NOTIFY_WEBHOOK_SECRET: {e}"))?;
            // Locally, targets on loopback and plain http are fine (a fake receiver).
            ("webhook".into(), Arc::new(WebhookSender::new(signer, TargetPolicy::local(), timeout)))
        }
        _ => (default_name.to_owned(), default),
    })
}

/// The providers a channel fails over to, in order, after its first.
fn second_providers(channel: Channel, http: &HttpProviders) -> Vec<(String, Arc<dyn ChannelSender>)> {
    let timeout = client::DEFAULT_TIMEOUT;
    match channel {
        Channel::Email => http
            .sendgrid
            .iter()
            .map(|s| {
                let sender: Arc<dyn ChannelSender> = Arc::new(SendGridEmailSender::new(client::client(timeout), &s.api_url, s.api_key.clone(), s.from.clone()));
                ("sendgrid".to_owned(), sender)
            })
            .collect(),
        Channel::Sms => http
            .twilio
            .iter()
            .map(|t| {
                let sender: Arc<dyn ChannelSender> = Arc::new(TwilioSmsSender::new(
                    client::client(timeout),
                    &t.api_url,
                    t.account_sid.clone(),
                    t.auth_token.clone(),
                    TwilioFrom::Number(t.from.clone()),
                ));
                ("twilio".to_owned(), sender)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The sender a channel's send handler uses.
pub fn compose(channel: Channel, default: Arc<dyn ChannelSender>, default_name: &str, c: &Composition<'_>) -> anyhow::Result<Arc<dyn ChannelSender>> {
    let (name, first) = first_provider(channel, default, default_name, c.http)?;
    // Injected faults stand for the first provider's outage: a failover has somewhere to go.
    let first = ProviderLink { name, sender: c.faults.wrap(channel, first), rate_per_second: c.rates.get(&channel).copied() };
    let mut links = vec![first];
    links.extend(second_providers(channel, c.http).into_iter().map(|(name, sender)| ProviderLink { name, sender, rate_per_second: None }));
    Ok(c.ledger.wrap(channel, chain(links, c.limiter.clone(), c.clock.clone())))
}
