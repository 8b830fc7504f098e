//! Every message a provider accepted, in order, whatever the backend: the record duplicates
//! would show in (one notification, two accepted messages), and what the chaos run reads.

use async_trait::async_trait;
use shared::domain::Channel;
use shared::ports::{ChannelSender, Delivery, ProviderReceipt, SendError};
use shared::adapters::memory::RecentLog;
use std::sync::Arc;

/// One message a provider accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMessage {
    pub notification_id: String,
    pub event_id: String,
    pub user_id: String,
    pub channel: Channel,
    /// The extra headers the message carried (an email's `List-Unsubscribe`), as (name, value).
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Default)]
pub struct SendLedger {
    sent: Arc<RecentLog<SentMessage>>,
}

impl SendLedger {
    /// Keeps only the newest `keep` entries (0: all; the chaos run, which checks every message,
    /// keeps all); [`len`](Self::len) still counts every message.
    pub fn keeping(keep: usize) -> Self {
        Self { sent: Arc::new(RecentLog::keeping(keep)) }
    }

    /// Records what `inner` accepts.
    pub fn wrap(&self, channel: Channel, inner: Arc<dyn ChannelSender>) -> Arc<dyn ChannelSender> {
        Arc::new(Recording { channel, inner, ledger: self.clone() })
    }

    /// The entries kept, oldest first.
    pub fn entries(&self) -> Vec<SentMessage> {
        self.sent.kept(|_| true)
    }

    /// How many messages were recorded, kept or not.
    pub fn len(&self) -> usize {
        self.sent.recorded()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Recording {
    channel: Channel,
    inner: Arc<dyn ChannelSender>,
    ledger: SendLedger,
}

#[async_trait]
impl ChannelSender for Recording {
    async fn send(&self, delivery: Delivery<'_>) -> Result<ProviderReceipt, SendError> {
        let entry = SentMessage {
            notification_id: delivery.notification_id.to_string(),
            event_id: delivery.event_id.to_string(),
            user_id: delivery.user_id.to_string(),
            channel: self.channel,
            headers: delivery.message.headers().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        };
        let id = self.inner.send(delivery).await?;
        self.ledger.sent.push(entry);
        Ok(id)
    }
}
