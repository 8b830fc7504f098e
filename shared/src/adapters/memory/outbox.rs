//! The local providers: every channel's "sent" message lands in an outbox that can be read
//! (`GET /v1/dev/outbox`) and, optionally, as one JSON file per message in a folder.

use async_trait::async_trait;
use jiff::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::RecentLog;

use crate::domain::{Channel, Priority};
use crate::ports::{Address, ChannelSender, Delivery, ProviderReceipt, SendError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutboxEntry {
    pub provider_message_id: String,
    pub notification_id: String,
    pub event_id: String,
    pub event_type: String,
    pub user_id: String,
    pub channel: Channel,
    pub priority: Priority,
    pub to: Address,
    pub locale: String,
    /// The template parts (`subject`, `text`, …).
    pub parts: BTreeMap<String, String>,
    /// The extra headers an email carries (`List-Unsubscribe`, `List-Unsubscribe-Post`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    pub sent_at: Timestamp,
}

/// What the local providers sent, in order, shared by all channels.
#[derive(Clone, Default)]
pub struct Outbox {
    entries: Arc<RecentLog<OutboxEntry>>,
    dir: Option<PathBuf>,
    notify: Arc<tokio::sync::Notify>,
}

impl Outbox {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir, ..Self::default() }
    }

    /// Lists only the newest `keep` messages (0: all of them), so that memory stays bounded
    /// under sustained load; [`len`](Self::len) still counts every message.
    pub fn keeping(self, keep: usize) -> Self {
        Self { entries: Arc::new(RecentLog::keeping(keep)), ..self }
    }

    /// The messages kept, oldest first.
    pub fn entries(&self, channel: Option<Channel>) -> Vec<OutboxEntry> {
        self.entries.kept(|e| channel.is_none_or(|c| e.channel == c))
    }

    /// How many messages were recorded, kept or not.
    pub fn len(&self) -> usize {
        self.entries.recorded()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the outbox holds at least `n` entries or `timeout` passes; returns the count.
    pub async fn wait_for(&self, n: usize, timeout: std::time::Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            let len = self.len();
            if len >= n {
                return len;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.len();
            }
        }
    }

    fn record(&self, entry: OutboxEntry) {
        if let Some(dir) = &self.dir {
            let folder = dir.join(entry.channel.as_str());
            let file = folder.join(format!("{}-{}.json", entry.sent_at.as_millisecond(), entry.notification_id));
            let written = std::fs::create_dir_all(&folder)
                .and_then(|_| std::fs::write(&file, serde_json::to_vec_pretty(&entry).unwrap_or_default()));
            if let Err(e) = written {
                tracing::warn!(error = %e, "could not write the outbox file");
            }
        }
        self.entries.push(entry);
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> OutboxEntry {
        OutboxEntry {
            provider_message_id: format!("local-{n}"),
            notification_id: format!("ntf-{n}"),
            event_id: format!("evt-{n}"),
            event_type: "user.registered".into(),
            user_id: "u-1".into(),
            channel: Channel::Email,
            priority: Priority::Normal,
            to: Address::Email { to: "u-1@example.com".into() },
            locale: "en".into(),
            parts: BTreeMap::new(),
            headers: BTreeMap::new(),
            sent_at: Timestamp::from_second(1_700_000_000).unwrap(),
        }
    }

    #[test]
    fn keeping_lists_the_newest_and_counts_all() {
        let outbox = Outbox::new(None).keeping(2);
        for n in 0..5 {
            outbox.record(entry(n));
        }
        assert_eq!(outbox.len(), 5, "every message counted");
        let ids: Vec<String> = outbox.entries(None).into_iter().map(|e| e.event_id).collect();
        assert_eq!(ids, ["evt-3", "evt-4"], "the newest two listed");
        let all = Outbox::new(None);
        for n in 0..5 {
            all.record(entry(n));
        }
        assert_eq!(all.entries(None).len(), 5);
    }
}

/// Every channel's local provider: records the message in the outbox.
#[derive(Clone)]
pub struct OutboxSender {
    outbox: Outbox,
}

impl OutboxSender {
    pub fn new(outbox: Outbox) -> Self {
        Self { outbox }
    }
}

/// The provider name recorded on what the local outbox "sent".
pub const PROVIDER: &str = "local-outbox";

#[async_trait]
impl ChannelSender for OutboxSender {
    async fn send(&self, d: Delivery<'_>) -> Result<ProviderReceipt, SendError> {
        let channel = d.message.channel;
        let id = format!("local-{}", ulid::Ulid::new());
        self.outbox.record(OutboxEntry {
            provider_message_id: id.clone(),
            notification_id: d.notification_id.to_string(),
            event_id: d.event_id.to_string(),
            event_type: d.event_type.to_owned(),
            user_id: d.user_id.to_string(),
            channel,
            priority: d.priority,
            to: d.address.clone(),
            locale: d.message.locale.clone(),
            parts: d.message.content_parts().map(|(k, v)| (k.clone(), v.clone())).collect(),
            headers: d.message.headers().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            sent_at: Timestamp::now(),
        });
        Ok(ProviderReceipt::new(PROVIDER, id))
    }
}
