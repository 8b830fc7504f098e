//! Fault injection for demos and tests: wraps a channel's provider so it answers with a
//! transient error while its channel is switched to fail (`NOTIFY_LOCAL_FAIL_CHANNELS`).

use async_trait::async_trait;
use shared::domain::Channel;
use shared::ports::{ChannelSender, Delivery, SendError};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Faults {
    failing: Arc<Mutex<HashSet<Channel>>>,
}

impl Faults {
    pub fn set_failing(&self, channel: Channel, failing: bool) {
        let mut set = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing {
            set.insert(channel);
        } else {
            set.remove(&channel);
        }
    }

    pub fn is_failing(&self, channel: Channel) -> bool {
        self.failing.lock().unwrap_or_else(|e| e.into_inner()).contains(&channel)
    }

    pub fn wrap(&self, channel: Channel, inner: Arc<dyn ChannelSender>) -> Arc<dyn ChannelSender> {
        Arc::new(FaultySender { channel, inner, faults: self.clone() })
    }
}

struct FaultySender {
    channel: Channel,
    inner: Arc<dyn ChannelSender>,
    faults: Faults,
}

#[async_trait]
impl ChannelSender for FaultySender {
    async fn send(&self, delivery: Delivery<'_>) -> Result<String, SendError> {
        if self.faults.is_failing(self.channel) {
            return Err(SendError::Transient(format!("local {} provider is set to fail", self.channel)));
        }
        self.inner.send(delivery).await
    }
}
