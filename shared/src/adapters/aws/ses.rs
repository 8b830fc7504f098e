//! Amazon SES v2: `SesEmailSender` sends a notification's email (subject, text and HTML parts,
//! and the message's extra headers, such as `List-Unsubscribe`).

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::error::ProvideErrorMetadata;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageHeader};

use crate::ports::{Address, ChannelSender, Delivery, ProviderReceipt, SendError};

#[derive(Clone, Debug)]
pub struct SesEmailSender {
    client: Client,
    from: String,
    configuration_set: Option<String>,
}

impl SesEmailSender {
    /// `from` must be a verified identity; `configuration_set` routes bounces and metrics.
    pub fn new(client: Client, from: String, configuration_set: Option<String>) -> Self {
        Self { client, from, configuration_set }
    }
}

fn content(text: &str) -> Result<Content, SendError> {
    Content::builder().data(text).charset("UTF-8").build().map_err(|e| SendError::Permanent(e.to_string()))
}

/// The SES message tag that carries the notification id into bounce and complaint events.
pub const NOTIFICATION_TAG: &str = "notification_id";

fn notification_tag(id: &str) -> Result<aws_sdk_sesv2::types::MessageTag, SendError> {
    aws_sdk_sesv2::types::MessageTag::builder().name(NOTIFICATION_TAG).value(id).build().map_err(|e| SendError::Permanent(e.to_string()))
}

/// The provider name recorded on the notifications SES delivers.
pub const PROVIDER: &str = "ses";

/// SES error codes that retrying cannot fix; everything else (throttling, 5xx, network) is retried.
fn classify(code: &str, message: &str) -> SendError {
    match code {
        "MessageRejected" | "MailFromDomainNotVerifiedException" | "AccountSuspendedException" | "SendingPausedException"
        | "BadRequestException" | "NotFoundException" => SendError::Permanent(format!("{code}: {message}")),
        // The account's sending rate or daily quota: slow down, not a failed attempt.
        "TooManyRequestsException" | "LimitExceededException" | "Throttling" | "ThrottlingException" => SendError::Throttled { retry_after: None },
        _ => SendError::Transient(format!("{code}: {message}")),
    }
}

#[async_trait]
impl ChannelSender for SesEmailSender {
    async fn send(&self, d: Delivery<'_>) -> Result<ProviderReceipt, SendError> {
        let Address::Email { to } = d.address else {
            return Err(SendError::Permanent("not an email address".into()));
        };
        let m = d.message;
        let mut body = Body::builder().text(content(m.part("text"))?);
        if !m.part("html").is_empty() {
            body = body.html(content(m.part("html"))?);
        }
        let mut message = Message::builder().subject(content(m.part("subject"))?).body(body.build());
        // Extra headers (RFC 8058 one-click unsubscribe) as SES v2 `Message.Headers`.
        for (name, value) in m.headers() {
            message = message.headers(MessageHeader::builder().name(name).value(value).build().map_err(|e| SendError::Permanent(e.to_string()))?);
        }
        let message = message.build();
        let result = self
            .client
            .send_email()
            // The tenant's own `From` when it set one (the router stamps it), else the function's.
            .from_email_address(match m.part(crate::ports::keys::FROM_PART) {
                "" => self.from.as_str(),
                tenant_from => tenant_from,
            })
            .destination(Destination::builder().to_addresses(to).build())
            .content(EmailContent::builder().simple(message).build())
            .set_configuration_set_name(self.configuration_set.clone())
            // SES hands the tags back with bounce and complaint events: the feedback function
            // finds the notification a hard bounce came from.
            .email_tags(notification_tag(d.notification_id.as_str())?)
            .send()
            .await;
        match result {
            Ok(out) => Ok(ProviderReceipt::new(PROVIDER, out.message_id().unwrap_or_default())),
            Err(e) => match e.code() {
                Some(code) => Err(classify(code, e.message().unwrap_or_default())),
                None => Err(SendError::Transient(aws_sdk_sesv2::error::DisplayErrorContext(&e).to_string())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::http::test_fixture::DeliveryFixture;
    use crate::domain::Channel;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    /// The SES v2 client against a fake endpoint that records the SendEmail request.
    async fn send(parts: &[(&str, &str)]) -> serde_json::Value {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v2/email/outbound-emails"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"MessageId": "ses-1"})))
            .expect(1)
            .mount(&server)
            .await;
        let config = aws_sdk_sesv2::Config::builder()
            .behavior_version(aws_sdk_sesv2::config::BehaviorVersion::latest())
            .region(aws_sdk_sesv2::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sesv2::config::Credentials::new("test", "test", None, None, "static"))
            .endpoint_url(server.uri())
            .build();
        let sender = SesEmailSender::new(Client::from_conf(config), "notifications@example.com".into(), None);
        let f = DeliveryFixture::new(Channel::Email, Address::Email { to: "olena@example.com".into() }, parts);
        assert_eq!(sender.send(f.delivery()).await, Ok(ProviderReceipt::new(PROVIDER, "ses-1")));
        let requests = server.received_requests().await.unwrap_or_default();
        serde_json::from_slice(&requests[0].body).expect("a JSON request")
    }

    #[tokio::test]
    async fn extra_headers_go_out_as_simple_message_headers() {
        let request = send(&[
            ("subject", "News"),
            ("text", "Hi"),
            ("header:List-Unsubscribe", "<https://api.example.com/v1/unsubscribe/t>"),
            ("header:List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ])
        .await;
        let simple = &request["Content"]["Simple"];
        assert_eq!(simple["Subject"]["Data"], "News");
        assert_eq!(
            simple["Headers"],
            serde_json::json!([
                {"Name": "List-Unsubscribe", "Value": "<https://api.example.com/v1/unsubscribe/t>"},
                {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"}
            ])
        );
        assert!(simple["Body"]["Text"]["Data"] == "Hi" && simple["Body"].get("Html").is_none(), "headers are not content: {simple}");
    }

    #[tokio::test]
    async fn a_message_without_extra_headers_sends_none() {
        let request = send(&[("subject", "Receipt"), ("text", "Thanks")]).await;
        assert!(request["Content"]["Simple"].get("Headers").is_none(), "{request}");
    }
}
