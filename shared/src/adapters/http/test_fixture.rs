//! What the tests of the HTTP senders (and of the provider wrappers) share: one delivery's owned
//! parts, and fakes (wiremock) for the two cases every sender tests the same way: a provider
//! that answers too late, and one that must not be called at all.

use std::time::Duration;

use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::domain::{Channel, EventId, NotificationId, Priority, UserId};
use crate::ports::{Address, ChannelSender, Delivery, ProviderReceipt, RenderedMessage, SendError};

/// A delivery's owned parts: event `evt-1` (`order.completed`) for user `u-1`, high priority,
/// rendered in `en` for `channel` and sent to `address` (which may belong to another channel,
/// to test that a sender refuses it).
pub(crate) struct DeliveryFixture {
    pub(crate) event: EventId,
    pub(crate) id: NotificationId,
    pub(crate) user: UserId,
    pub(crate) address: Address,
    pub(crate) message: RenderedMessage,
}

impl DeliveryFixture {
    pub(crate) fn new(channel: Channel, address: Address, parts: &[(&str, &str)]) -> Self {
        let event = EventId::parse("evt-1").unwrap();
        let id = NotificationId::derive(&event, channel);
        let parts = parts.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let message = RenderedMessage { channel, locale: "en".into(), parts };
        Self { event, id, user: UserId::parse("u-1").unwrap(), address, message }
    }

    /// A message whose only part is `text`.
    pub(crate) fn text(channel: Channel, address: Address, text: &str) -> Self {
        Self::new(channel, address, &[("text", text)])
    }

    pub(crate) fn delivery(&self) -> Delivery<'_> {
        Delivery {
            notification_id: &self.id,
            event_id: &self.event,
            event_type: "order.completed",
            user_id: &self.user,
            priority: Priority::High,
            address: &self.address,
            message: &self.message,
        }
    }
}

/// The client timeout of [`send_timing_out`]: far shorter than its fake's delay.
const SHORT_TIMEOUT: Duration = Duration::from_millis(200);

/// Sends `delivery` through the sender that `sender` builds against a fake provider, with a
/// short client timeout; the fake answers every POST with `late_answer` (whose delay is longer).
/// Answers the fake too, for what a test asks of it after.
pub(crate) async fn send_timing_out<S: ChannelSender>(
    sender: impl FnOnce(&MockServer, Duration) -> S,
    late_answer: ResponseTemplate,
    delivery: Delivery<'_>,
) -> (MockServer, Result<ProviderReceipt, SendError>) {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(late_answer).mount(&server).await;
    let result = sender(&server, SHORT_TIMEOUT).send(delivery).await;
    (server, result)
}

/// A fake provider that must not be called: any POST to it fails the test when it drops.
pub(crate) async fn fake_never_called() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).expect(0).mount(&server).await;
    server
}
