//! Amazon SNS: `SnsSmsSender` publishes SMS to E.164 numbers; `SnsPushSender` publishes mobile
//! push through platform endpoints (FCM and APNs platform applications).

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::error::ProvideErrorMetadata;
use aws_sdk_sns::types::MessageAttributeValue;
use serde_json::json;

use crate::domain::notification::reason;
use crate::ports::{Address, ChannelSender, Delivery, ProviderReceipt, SendError};

/// The provider names recorded on the notifications SNS delivers.
pub const SMS_PROVIDER: &str = "sns";
pub const PUSH_PROVIDER: &str = "sns-push";

fn classify(code: &str, message: &str) -> SendError {
    match code {
        // The number opted out of SMS (STOP): nobody to reach; the address is suppressed.
        "OptedOut" => SendError::Unreachable(reason::OPTED_OUT.to_owned()),
        "InvalidParameter" | "InvalidParameterValue" | "EndpointDisabled" | "NotFound" | "AuthorizationError" => {
            SendError::Permanent(format!("{code}: {message}"))
        }
        // SMS or push throughput exceeded: slow down, not a failed attempt.
        "Throttled" | "ThrottledException" | "Throttling" => SendError::Throttled { retry_after: None },
        _ => SendError::Transient(format!("{code}: {message}")),
    }
}

fn sdk_error<E: std::error::Error + ProvideErrorMetadata + 'static>(e: aws_sdk_sns::error::SdkError<E>) -> SendError {
    match e.code() {
        Some(code) => classify(code, e.message().unwrap_or_default()),
        None => SendError::Transient(aws_sdk_sns::error::DisplayErrorContext(&e).to_string()),
    }
}

fn attribute(value: &str) -> Result<MessageAttributeValue, SendError> {
    MessageAttributeValue::builder().data_type("String").string_value(value).build().map_err(|e| SendError::Permanent(e.to_string()))
}

#[derive(Clone, Debug)]
pub struct SnsSmsSender {
    client: Client,
    sender_id: Option<String>,
}

impl SnsSmsSender {
    /// `sender_id`: the alphanumeric sender id shown where carriers allow one.
    pub fn new(client: Client, sender_id: Option<String>) -> Self {
        Self { client, sender_id }
    }
}

#[async_trait]
impl ChannelSender for SnsSmsSender {
    async fn send(&self, d: Delivery<'_>) -> Result<ProviderReceipt, SendError> {
        let number = match d.address {
            Address::Phone { number } => number,
            _ => return Err(SendError::Permanent("not a phone number".into())),
        };
        let mut publish = self
            .client
            .publish()
            .phone_number(number)
            .message(d.message.part("text"))
            .message_attributes("AWS.SNS.SMS.SMSType", attribute("Transactional")?);
        // The tenant's own sender id when it set one (the router stamps it), else the function's.
        let tenant_id = Some(d.message.part(crate::ports::keys::SENDER_ID_PART)).filter(|id| !id.is_empty());
        if let Some(id) = tenant_id.or(self.sender_id.as_deref()) {
            publish = publish.message_attributes("AWS.SNS.SMS.SenderID", attribute(id)?);
        }
        let out = publish.send().await.map_err(sdk_error)?;
        Ok(ProviderReceipt::new(SMS_PROVIDER, out.message_id().unwrap_or_default()))
    }
}

/// Push through SNS mobile push: each device token gets (idempotently) a platform endpoint under
/// the platform application of its kind, and one publish per endpoint.
#[derive(Clone, Debug)]
pub struct SnsPushSender {
    client: Client,
    fcm_application_arn: Option<String>,
    apns_application_arn: Option<String>,
}

impl SnsPushSender {
    pub fn new(client: Client, fcm_application_arn: Option<String>, apns_application_arn: Option<String>) -> Self {
        Self { client, fcm_application_arn, apns_application_arn }
    }

    /// The JSON message SNS fans out per platform.
    pub fn payload(title: &str, body: &str, notification_id: &str) -> String {
        let gcm = json!({"notification": {"title": title, "body": body}, "data": {"notification_id": notification_id}});
        let apns = json!({"aps": {"alert": {"title": title, "body": body}}, "notification_id": notification_id});
        json!({"default": body, "GCM": gcm.to_string(), "APNS": apns.to_string(), "APNS_SANDBOX": apns.to_string()}).to_string()
    }
}

impl SnsPushSender {
    /// One device: its platform endpoint (idempotent), then the message.
    async fn push_to(&self, token: &crate::domain::profile::PushToken, message: &str) -> Result<String, SendError> {
        let application = match token.platform.as_str() {
            "fcm" => self.fcm_application_arn.as_deref(),
            "apns" => self.apns_application_arn.as_deref(),
            _ => None,
        };
        let Some(application) = application else {
            return Err(SendError::Permanent(format!("no platform application configured for {}", token.platform)));
        };
        let out = self.client.create_platform_endpoint().platform_application_arn(application).token(&token.token).send().await.map_err(sdk_error)?;
        let endpoint = out.endpoint_arn().unwrap_or_default().to_owned();
        let out = self.client.publish().target_arn(&endpoint).message_structure("json").message(message).send().await.map_err(sdk_error)?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }
}

/// Devices of one push pushed to at once.
pub const PUSH_CONCURRENCY: usize = 4;

#[async_trait]
impl ChannelSender for SnsPushSender {
    async fn send(&self, d: Delivery<'_>) -> Result<ProviderReceipt, SendError> {
        let Address::Push { tokens } = d.address else {
            return Err(SendError::Permanent("not a push address".into()));
        };
        let message = Self::payload(d.message.part("title"), d.message.part("body"), d.notification_id.as_str());
        // The devices at once, [`PUSH_CONCURRENCY`] at a time (two SNS calls each): ten devices
        // take about two round trips, well within the job's lease.
        use futures::StreamExt;
        let message = message.as_str();
        let outcomes: Vec<Result<String, SendError>> = futures::stream::iter(tokens.iter().take(crate::domain::profile::MAX_PUSH_TOKENS).cloned())
            .map(|token| async move { self.push_to(&token, message).await })
            .buffer_unordered(PUSH_CONCURRENCY)
            .collect()
            .await;
        let mut sent = Vec::new();
        let mut last_error = None;
        for outcome in outcomes {
            match outcome {
                Ok(id) => sent.push(id),
                Err(e) => last_error = Some(e),
            }
        }
        match (sent.is_empty(), last_error) {
            (false, _) => Ok(ProviderReceipt::new(PUSH_PROVIDER, sent.join(","))),
            (true, Some(e)) => Err(e),
            (true, None) => Err(SendError::Permanent("no device tokens".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::profile::PushToken;
    use crate::domain::{Channel, EventId, NotificationId, Priority, UserId};
    use crate::ports::delivery::RenderedMessage;

    /// A deployment without platform applications: every push fails permanently (so the
    /// fallback channel is tried) without calling SNS.
    #[tokio::test]
    async fn push_without_a_platform_application_fails_permanently() {
        let config = aws_sdk_sns::Config::builder().behavior_version(aws_sdk_sns::config::BehaviorVersion::latest()).build();
        let sender = SnsPushSender::new(aws_sdk_sns::Client::from_conf(config), None, None);
        let event = EventId::parse("evt-1").unwrap();
        let id = NotificationId::derive(&event, Channel::Push);
        let user = UserId::parse("u-1").unwrap();
        let address = Address::Push { tokens: vec![PushToken { platform: "fcm".into(), token: "t".into() }] };
        let message = RenderedMessage {
            channel: Channel::Push,
            locale: "en".into(),
            parts: [("title".to_owned(), "T".to_owned()), ("body".to_owned(), "B".to_owned())].into(),
        };
        let delivery = Delivery {
            notification_id: &id,
            event_id: &event,
            event_type: "order.completed",
            user_id: &user,
            priority: Priority::High,
            address: &address,
            message: &message,
        };
        assert_eq!(
            sender.send(delivery).await,
            Err(SendError::Permanent("no platform application configured for fcm".into()))
        );
    }
}
